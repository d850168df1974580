import pytest

from batchlab.devices import DeviceError, resolve_device


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
