from pathlib import Path

import pytest

from batchlab.train.devices import DeviceError, resolve_device


def test_auto_uses_cuda_when_present():
    assert resolve_device("auto", cuda_available=True) == "cuda"
    assert resolve_device("auto", cuda_available=False) == "cpu"
    assert resolve_device("cpu", cuda_available=True) == "cpu"
    assert resolve_device("cuda", cuda_available=True) == "cuda"


def test_cuda_without_cuda_names_the_key():
    with pytest.raises(DeviceError, match=r"config key train\.device is 'cuda' but this machine has no CUDA"):
        resolve_device("cuda", cuda_available=False)
    with pytest.raises(DeviceError, match="'tpu' is not one of auto, cpu, cuda"):
        resolve_device("tpu", cuda_available=False)


HOLDER = """
import sys
from batchlab.train.devices import claim_gpu
index, handle = claim_gpu(int(sys.argv[2]), sys.argv[1], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
print(index, flush=True)
sys.stdin.read()  # hold the GPU until stdin closes
"""


def test_concurrent_jobs_get_distinct_gpus_and_a_dead_job_frees_its_gpu(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from batchlab.train.devices import claim_gpu

    scripts = str(Path(__file__).resolve().parents[2] / "workflow/scripts")
    env = {**os.environ, "PYTHONPATH": scripts}
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(tmp_path), "3"],
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    try:
        taken = [int(job.stdout.readline()) for job in jobs]
        assert sorted(taken) == [0, 1, 2]
        with pytest.raises(DeviceError, match="all 3 GPUs x 1 job"):
            claim_gpu(3, tmp_path, wait_s=0.2, poll_s=0.05)
        jobs[1].kill()  # kill -9: the kernel drops its lock
        jobs[1].wait()
        index, handle = claim_gpu(3, tmp_path, wait_s=10, poll_s=0.05)
        assert index == taken[1]
        handle.close()
    finally:
        for job in jobs:
            job.kill()
            job.wait()


def test_jobs_share_a_gpu_slot_by_slot_spread_over_the_gpus(tmp_path):
    """2 simulated GPUs, 3 jobs per GPU: 6 jobs run, 3 on each; a seventh waits; a dead job's
    slot is the next job's."""
    import os
    import subprocess
    import sys

    from batchlab.train.devices import claim_gpu, jobs_per_gpu

    scripts = str(Path(__file__).resolve().parents[2] / "workflow/scripts")
    env = {**os.environ, "PYTHONPATH": scripts}
    jobs = []
    try:
        for _ in range(6):  # one after another: each takes the next free slot
            job = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), "2", "3"], env=env, text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
            jobs.append((job, int(job.stdout.readline())))
        assert [index for _, index in jobs] == [0, 1, 0, 1, 0, 1]  # spread before shared
        with pytest.raises(DeviceError, match="all 2 GPUs x 3 job"):
            claim_gpu(2, tmp_path, 3, wait_s=0.2, poll_s=0.05)
        jobs[3][0].kill()
        jobs[3][0].wait()
        index, handle = claim_gpu(2, tmp_path, 3, wait_s=10, poll_s=0.05)
        assert index == 1
        handle.close()
    finally:
        for job, _ in jobs:
            job.kill()
            job.wait()
    assert jobs_per_gpu({}) == 1 and jobs_per_gpu({"BATCHLAB_JOBS_PER_GPU": "4"}) == 4
    with pytest.raises(DeviceError, match="BATCHLAB_JOBS_PER_GPU='0' must be a whole number of at least 1"):
        jobs_per_gpu({"BATCHLAB_JOBS_PER_GPU": "0"})


def test_slurm_pinned_jobs_are_left_alone():
    from batchlab.train.devices import pinned_by_scheduler

    assert pinned_by_scheduler({"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "2"})
    assert not pinned_by_scheduler({"CUDA_VISIBLE_DEVICES": "0,1"})
    assert not pinned_by_scheduler({"SLURM_JOB_ID": "7"})


def test_resolving_auto_imports_no_pytorch_where_there_is_no_nvidia_device():
    """`snakemake -n` resolves train.device at parse time: on a machine without an NVIDIA
    device that must not cost PyTorch's import (seconds)."""
    import subprocess
    import sys

    from batchlab.train.devices import nvidia_device_present

    if nvidia_device_present():
        pytest.skip("this machine has an NVIDIA device")
    code = "import sys\nfrom batchlab.train.devices import cuda_available\nprint(cuda_available(), 'torch' in sys.modules)"
    scripts = Path(__file__).resolve().parents[2] / "workflow/scripts"
    done = subprocess.run([sys.executable, "-c", code], cwd=scripts, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
