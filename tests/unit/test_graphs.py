"""What a CUDA graph of the training step needs that the CPU can check: a step that reads its lr
from a device tensor (as a captured step does at each replay) computes what it does from a float,
the steps that hold Python state or take a host lr say they cannot be captured, and the knob.
The capture itself runs only on CUDA (tests/unit/test_gpu.py)."""

import pytest
import torch

from batchlab.train.devices import DeviceError, cuda_graphs
from batchlab.train.ensemble import Ensemble
from batchlab.train.graphs import graphed, step_note
from batchlab.train.optimizers import build_optimizer
from batchlab.train.settings import OPTIMIZERS
from batchlab.train.settings import OptimizerSettings as Settings
from batchlab.train.steps import autograd_step, fused_mlp_sgd

SEEDS, B, STEPS = 3, 16, 12
GRAPHABLE = {"sgd", "lars", "lamb"}  # written out here; torch.optim's take the lr as a host number


def batches():
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(SEEDS, B, 784, generator=g), torch.randint(0, 10, (SEEDS, B), generator=g))
        for _ in range(STEPS)
    ]


def train(make_step, lr_as_tensor: bool):
    """STEPS steps of a fresh 3-seed mlp ensemble, the lr given as a float or, like a replayed
    graph, as a 0-dim tensor filled before each step; the weights and losses after them."""
    ens = Ensemble.initialize("mlp", list(range(SEEDS)), torch.device("cpu"))
    alive = torch.ones(SEEDS, dtype=torch.bool)
    step, lr = make_step(ens, alive), torch.zeros(())
    losses = []
    for t, (x, y) in enumerate(batches()):
        value = 0.05 * (t + 1) / STEPS  # a warm-up: the lr changes at every step
        losses.append(step(x, y, lr.fill_(value) if lr_as_tensor else value))
    step.flush()
    return [p.clone() for p in ens.tensors()], torch.stack(losses)


def autograd(name):
    def make(ens, alive):
        return autograd_step(ens, build_optimizer(ens.tensors(), Settings(name, momentum=0.9)), alive, 1000.0)

    return make


STEPS_UNDER_TEST = {
    "fused": lambda ens, alive: fused_mlp_sgd(ens, alive, 1000.0, B, masked=True, defer=False),
    "fused unmasked": lambda ens, alive: fused_mlp_sgd(ens, alive, 1000.0, B, masked=False, defer=False),
    **{f"autograd {name}": autograd(name) for name in sorted(GRAPHABLE)},
}


@pytest.mark.parametrize("name", sorted(STEPS_UNDER_TEST))
def test_a_step_reading_its_lr_from_a_tensor_computes_what_it_does_from_a_float(name):
    (w_float, loss_float), (w_tensor, loss_tensor) = (train(STEPS_UNDER_TEST[name], t) for t in (False, True))
    torch.testing.assert_close(loss_tensor, loss_float, rtol=1e-5, atol=1e-6)
    for a, b in zip(w_tensor, w_float, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    start = Ensemble.initialize("mlp", list(range(SEEDS)), torch.device("cpu")).tensors()
    assert all(not torch.equal(a, b) for a, b in zip(w_float, start, strict=True))  # every tensor trained


def test_only_steps_without_python_state_or_a_host_lr_may_be_captured():
    ens = Ensemble.initialize("mlp", [0, 1], torch.device("cpu"))
    alive = torch.ones(2, dtype=torch.bool)
    # batch 1 defers first-layer updates in Python (a counter): capturable only without deferring
    assert not fused_mlp_sgd(ens, alive, 1000.0, 1).graphable
    assert fused_mlp_sgd(ens, alive, 1000.0, 1, defer=False).graphable
    assert fused_mlp_sgd(ens, alive, 1000.0, 64).graphable  # batch 64 never defers
    for name in OPTIMIZERS:
        step = autograd_step(ens, build_optimizer(ens.tensors(), Settings(name, momentum=0.9)), alive, 1000.0)
        assert step.graphable == (name in GRAPHABLE), name


def test_on_the_cpu_the_step_is_left_as_it_is_and_the_record_says_nothing_of_graphs():
    ens = Ensemble.initialize("mlp", [0], torch.device("cpu"))
    step = fused_mlp_sgd(ens, torch.ones(1, dtype=torch.bool), 1000.0, 64)
    logged = []
    assert graphed(step, torch.device("cpu"), True, logged.append) is step
    assert step_note(step) == "" and logged == []


def test_the_graphs_knob_is_on_by_default_and_refuses_anything_but_0_or_1():
    assert cuda_graphs({}) is True
    assert cuda_graphs({"BATCHLAB_CUDA_GRAPHS": "0"}) is False
    assert cuda_graphs({"BATCHLAB_CUDA_GRAPHS": " 1 "}) is True
    with pytest.raises(DeviceError, match="BATCHLAB_CUDA_GRAPHS='yes' must be 1"):
        cuda_graphs({"BATCHLAB_CUDA_GRAPHS": "yes"})
