"""Which device a training job uses."""

from __future__ import annotations

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
    """Ask torch, importing it only when a config needs the answer."""
    import torch

    return torch.cuda.is_available()
