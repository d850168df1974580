"""CUDA checks; skipped where there is no CUDA device."""

import numpy as np
import pytest
import torch

from batchlab.data import DeviceData
from batchlab.train import CellConfig, train_cell

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]


def blobs(device):
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(10, 784, generator=g) * 3
    y = torch.randint(0, 10, (800,), generator=g)
    x = centers[y] + torch.randn(800, 784, generator=g)
    return DeviceData(x[:600].to(device), y[:600].to(device), x[600:].to(device), y[600:].to(device))


@pytest.mark.parametrize("fused", [True, False])
def test_cuda_and_cpu_runs_of_a_cell_agree(fused):
    cfg = CellConfig(batch_size=16, lr=0.05, seeds=(0, 1, 2), epochs=2, fused=fused)
    cpu = train_cell(cfg, blobs("cpu"), torch.device("cpu"), log=lambda m: None)
    gpu = train_cell(cfg, blobs("cuda"), torch.device("cuda"), log=lambda m: None)
    for c, g in zip(cpu.seeds, gpu.seeds, strict=True):
        assert len(c.losses) == len(g.losses)
        np.testing.assert_allclose(g.losses, c.losses, rtol=2e-3, atol=2e-4)
        assert abs(g.epochs[-1]["test_acc"] - c.epochs[-1]["test_acc"]) <= 0.01
