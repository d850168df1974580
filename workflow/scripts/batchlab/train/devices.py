"""Which device a training job uses."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from batchlab import BatchlabError

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(BatchlabError):
    pass


def resolve_device(requested: str, cuda_available: bool) -> str:
    """'auto' -> 'cuda' when CUDA is present, else 'cpu'; 'cuda' without CUDA is an error."""
    if requested not in DEVICES:
        raise DeviceError(f"config key train.device: {requested!r} is not one of {', '.join(DEVICES)}")
    if requested == "auto":
        return "cuda" if cuda_available else "cpu"
    if requested == "cuda" and not cuda_available:
        raise DeviceError(
            "config key train.device is 'cuda' but this machine has no CUDA device "
            "(torch.cuda.is_available() is False); use 'auto' or 'cpu'"
        )
    return requested


def cuda_available() -> bool:
    """Ask torch, importing it (a second or more) only where an NVIDIA device exists at all."""
    if not nvidia_device_present():
        return False
    import torch

    return torch.cuda.is_available()


def nvidia_device_present() -> bool:
    """An NVIDIA device node or driver entry exists: CUDA is possible (torch decides)."""
    return any(Path("/dev").glob("nvidia[0-9]*")) or Path("/proc/driver/nvidia/gpus").is_dir()


def jobs_per_gpu(environ: dict) -> int:
    """How many training jobs share one GPU: BATCHLAB_JOBS_PER_GPU (default 1), a runtime knob
    (the study's models use a few percent of a large GPU)."""
    text = environ.get("BATCHLAB_JOBS_PER_GPU", "1").strip()
    if not text.isdigit() or int(text) < 1:
        raise DeviceError(f"BATCHLAB_JOBS_PER_GPU={text!r} must be a whole number of at least 1 (training jobs per GPU)")
    return int(text)


def cuda_graphs(environ: dict) -> bool:
    """BATCHLAB_CUDA_GRAPHS: 1 (default) replays each training step from a CUDA graph where it
    can be (batchlab.train.graphs), 0 trains eagerly; a runtime knob, ignored on the CPU."""
    text = environ.get("BATCHLAB_CUDA_GRAPHS", "1").strip()
    if text not in ("0", "1"):
        raise DeviceError(f"BATCHLAB_CUDA_GRAPHS={text!r} must be 1 (replay steps from CUDA graphs) or 0 (eager)")
    return text == "1"


def strict_fp32() -> None:
    """fp32 arithmetic throughout on CUDA, no TF32 in matrix products or convolutions: a CUDA
    cell and a CPU cell of the same seed then agree to float tolerance."""
    import torch

    # the API of PyTorch 2.9 and later, op by op (cuDNN's own default is tf32 for both)
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    torch.backends.cudnn.rnn.fp32_precision = "ieee"


def claim_gpu(gpu_count: int, lock_dir: str | Path, per_gpu: int = 1, wait_s: float = 3600.0, poll_s: float = 0.5):
    """Pin this job to a free slot of a GPU: hold an exclusive lock on
    lock_dir/gpu{i}.slot{j}.lock for the first free one and return (i, lock handle). Slots are
    taken slot by slot across the GPUs, so jobs spread over the GPUs before they share one. Keep
    the handle open for the job's lifetime; the kernel releases the lock when the process ends,
    even on kill -9.

    Snakemake counts GPU slots (--resources gpu=N, N = GPUs x per_gpu) but does not say which
    one a job gets, so N concurrent jobs each take a different slot this way.
    """
    if gpu_count < 1:
        raise DeviceError("no CUDA device to claim")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        for slot in range(per_gpu):
            for index in range(gpu_count):
                handle = open(lock_dir / f"gpu{index}.slot{slot}.lock", "a+")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    continue
                handle.seek(0)
                handle.truncate()
                handle.write(f"{os.getpid()}\n")
                handle.flush()
                return index, handle
        if time.monotonic() > deadline:
            raise DeviceError(
                f"all {gpu_count} GPUs x {per_gpu} job(s) each stayed busy for {wait_s:g} s (locks in {lock_dir});"
                " run with --resources gpu=N where N is the number of GPUs times BATCHLAB_JOBS_PER_GPU"
            )
        time.sleep(poll_s)


def pinned_by_scheduler(environ: dict) -> bool:
    """Slurm (or the user) already chose the GPUs: CUDA_VISIBLE_DEVICES is set for this job."""
    return bool(environ.get("SLURM_JOB_ID")) and "CUDA_VISIBLE_DEVICES" in environ
