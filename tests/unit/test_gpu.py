"""CUDA checks; skipped where there is no CUDA device.

A CUDA cell and a CPU cell of the same seeds (fp32, no TF32) agree to float tolerance over their
first 300 steps, with the step replayed from a CUDA graph and without, and their final losses
and accuracies lie within the seed-to-seed interval of the CPU's seeds; a replayed window of
steps never synchronizes with the host; a step that cannot be captured trains eagerly and says so.
"""


import numpy as np
import pytest
import torch

from batchlab.analysis.stats import seed_interval
from batchlab.data.tensors import read_mnist_folder, to_device
from batchlab.train.cell_config import make_config
from batchlab.train.ensemble import Ensemble
from batchlab.train.graphs import GraphedStep, graphed
from batchlab.train.loop import train_cell
from batchlab.train.steps import fused_mlp_sgd

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]

N_TRAIN, SEEDS = 6000, (0, 1, 2, 3, 4)


@pytest.fixture(scope="module")
def mnist(mnist_mirror):
    """6,000 training images of the local MNIST mirror (conftest; $BATCHLAB_TEST_MNIST)."""
    tensors = read_mnist_folder(mnist_mirror)
    tensors["train_images"], tensors["train_labels"] = (
        tensors["train_images"][:N_TRAIN],
        tensors["train_labels"][:N_TRAIN],
    )
    return {
        device: to_device(tensors, (784,), torch.device(device), validation_size=1000)
        for device in ("cpu", "cuda")
    }


def within_seed_interval(value: float, cpu: np.ndarray) -> bool:
    lo, hi = seed_interval(cpu)
    return lo - 1e-6 <= value <= hi + 1e-6


CELLS = {  # no sharpness: the probes' power iterations would take most of the minute
    "fused sgd": dict(batch_size=16, lr=0.05),
    "autograd sgd": dict(batch_size=16, lr=0.05, fused=False),
    "lars": dict(batch_size=16, lr=2.0, optimizer="lars", momentum=0.9),
    "momentum (eager: torch.optim)": dict(batch_size=16, lr=0.02, optimizer="momentum", momentum=0.9),
}


@pytest.fixture(scope="module")
def cpu_runs(mnist):
    """Each cell trained on the CPU once, for both of its CUDA runs."""
    runs = {}

    def run(cfg):
        if cfg not in runs:
            runs[cfg] = train_cell(cfg, mnist["cpu"], torch.device("cpu"), log=lambda m: None)
        return runs[cfg]

    return run


@pytest.mark.parametrize("graphs", [True, False], ids=["graphs", "eager"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_cuda_and_cpu_runs_of_a_cell_agree(mnist, cpu_runs, cell, graphs):
    cfg = make_config(seeds=SEEDS, epochs=1, sharpness_iterations=0, **CELLS[cell])
    logged = []
    cpu = cpu_runs(cfg)
    gpu = train_cell(cfg, mnist["cuda"], torch.device("cuda"), log=logged.append, cuda_graphs=graphs)
    captured = graphs and not cell.startswith("momentum")
    assert ("CUDA graph" in gpu.step_implementation.split(", ")) == captured, gpu.step_implementation
    if not captured:
        assert any("CUDA graph: off" in line for line in logged), logged
    for c, g in zip(cpu.seeds, gpu.seeds, strict=True):
        assert len(c.losses) == len(g.losses) >= 300
        np.testing.assert_allclose(g.losses[:300], c.losses[:300], rtol=2e-3, atol=2e-4)
    for key in ("val_loss", "val_acc", "test_acc"):
        cpu_values = np.array([s.epochs[-1][key] for s in cpu.seeds])
        for s in gpu.seeds:
            assert within_seed_interval(s.epochs[-1][key], cpu_values), (key, s.epochs[-1][key], cpu_values)


@pytest.mark.parametrize("graphs", [True, False], ids=["graphs", "eager"])
def test_a_window_of_steps_never_synchronizes_with_the_host(mnist, graphs):
    data = mnist["cuda"]
    ens = Ensemble.initialize("mlp", list(SEEDS), torch.device("cuda"))
    alive = torch.ones(len(SEEDS), dtype=torch.bool, device="cuda")
    step = graphed(
        fused_mlp_sgd(ens, alive, 1000.0, 1, defer=not graphs), torch.device("cuda"), graphs, print
    )
    assert isinstance(step, GraphedStep) == graphs
    x, y = data.train_x[:5].view(5, 1, 784), data.train_y[:5].view(5, 1)
    for _ in range(5):  # warm-up and capture
        step(x, y, 0.01)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        window = [step(x, y, 0.01 * (1 + t / 100)) for t in range(100)]
        values = torch.stack(window)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(values.cpu()).all()
