"""The trainer on small synthetic data: determinism, resume, divergence, collapse, logging."""

import inspect
import math

import numpy as np
import pytest
import torch

import batchlab.train as train_module
from batchlab.checkpoint import load_checkpoint, save_checkpoint
from batchlab.data import DeviceData, to_device
from batchlab.models import build_model, input_shape
from batchlab.train import (
    CellConfig,
    first_bad_step,
    is_collapsed,
    iterations_per_epoch,
    train_cell,
)

CPU = torch.device("cpu")


def synthetic(n_train=600, n_test=200, seed=0) -> DeviceData:
    """Ten well-separated Gaussian blobs in 784 dimensions (learnable in a few steps)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(10, 784, generator=g) * 3

    def make(n):
        y = torch.randint(0, 10, (n,), generator=g)
        return centers[y] + torch.randn(n, 784, generator=g), y

    (tx, ty), (vx, vy) = make(n_train), make(n_test)
    return DeviceData(tx, ty, vx, vy)


def run(cfg, data=None, **kw):
    return train_cell(cfg, data or synthetic(), CPU, log=lambda m: None, **kw)


def test_iterations_per_epoch_is_ceil_n_over_b():
    assert iterations_per_epoch(60000, 1) == 60000
    assert iterations_per_epoch(60000, 64) == 938
    assert iterations_per_epoch(60000, 1024) == 59
    assert iterations_per_epoch(60000, 60000) == 1


def test_logs_every_iteration_and_learns():
    result = run(CellConfig(batch_size=32, lr=0.05, seed=0, epochs=3, check_every=7))
    assert result.status == "ok"
    assert len(result.losses) == 3 * iterations_per_epoch(600, 32)
    assert result.epoch_of_step.tolist() == sorted(result.epoch_of_step.tolist())
    assert set(result.epoch_of_step.tolist()) == {1, 2, 3}
    assert [row["epoch"] for row in result.epochs] == [1, 2, 3]
    assert result.epochs[-1]["test_acc"] > 0.9
    assert result.losses[-20:].mean() < result.losses[:20].mean()
    for row in result.epochs:
        assert row["iterations"] == 19 and row["samples_per_s"] > 0 and row["seconds"] > 0


def test_same_cell_twice_gives_identical_losses():
    cfg = CellConfig(batch_size=8, lr=0.02, seed=3, epochs=2)
    a, b = run(cfg), run(cfg)
    assert np.array_equal(a.losses, b.losses)
    c = run(CellConfig(batch_size=8, lr=0.02, seed=4, epochs=2))
    assert not np.array_equal(a.losses, c.losses)


def test_resume_from_checkpoint_is_bit_identical(tmp_path):
    cfg = CellConfig(batch_size=16, lr=0.05, seed=1, epochs=3, momentum=0.9)
    full = run(cfg)
    ckpt = tmp_path / "cell.pt"
    states = []

    def stop_after_first(state):
        save_checkpoint(ckpt, cfg, state)
        states.append(state.epoch)
        raise KeyboardInterrupt  # the job is killed after epoch 1's checkpoint

    with pytest.raises(KeyboardInterrupt):
        run(cfg, on_epoch_end=stop_after_first)
    resume = load_checkpoint(ckpt, cfg)
    assert resume is not None and resume.epoch == 1
    resumed = run(cfg, resume=resume)
    assert np.array_equal(full.losses, resumed.losses)
    assert [r["test_acc"] for r in full.epochs] == [r["test_acc"] for r in resumed.epochs]
    # the first step is timed apart (a job's start-up); a resumed run has none to time
    assert 0 < full.first_step_seconds < full.epochs[0]["seconds"] and resumed.first_step_seconds is None
    # a checkpoint of another cell is never used
    assert load_checkpoint(ckpt, CellConfig(batch_size=16, lr=0.1, seed=1, epochs=3, momentum=0.9)) is None


def test_divergence_at_the_first_step_is_recorded():
    result = run(CellConfig(batch_size=16, lr=1e4, seed=0, epochs=2))
    assert result.status == "diverged"
    assert result.stopped_step is not None and result.stopped_step <= 3
    assert len(result.losses) == result.stopped_step
    assert not math.isfinite(result.losses[-1]) or result.losses[-1] > 1000
    assert result.epochs == []
    assert "iteration" in result.stop_reason
    assert result.summary()["final_train_loss"] is None  # JSON-safe


def test_late_divergence_is_found_at_its_step(monkeypatch):
    """A loss that turns non-finite deep into training is found at that exact iteration."""
    real = train_module.F.cross_entropy
    calls = {"n": 0}

    def poisoned(out, target, **kw):
        loss = real(out, target, **kw)
        if kw.get("reduction") == "sum":  # evaluation, not a training step
            return loss
        calls["n"] += 1
        return loss * float("nan") if calls["n"] == 50 else loss

    monkeypatch.setattr(train_module.F, "cross_entropy", poisoned)
    # noise_micro_batches=1: no gradient-noise probe, whose cross-entropy calls would count too
    cfg = CellConfig(batch_size=16, lr=0.01, seed=0, epochs=3, fused=False, noise_micro_batches=1)
    result = run(cfg)
    assert result.status == "diverged" and result.stopped_step == 50
    assert len(result.epochs) == 1  # epoch 1 (38 iterations) finished, epoch 2 stopped
    assert np.isnan(result.losses[49]) and np.isfinite(result.losses[:49]).all()


def test_fused_step_equals_eager_sgd_within_float_tolerance():
    for b in (1, 7, 32):
        fused = run(CellConfig(batch_size=b, lr=0.02, seed=5, epochs=2))
        eager = run(CellConfig(batch_size=b, lr=0.02, seed=5, epochs=2, fused=False))
        assert fused.summary()["step_implementation"] == "fused plain SGD"
        assert eager.summary()["step_implementation"] == "eager autograd + torch.optim"
        assert len(fused.losses) == len(eager.losses) == 2 * iterations_per_epoch(600, b)
        np.testing.assert_allclose(fused.losses, eager.losses, rtol=1e-4, atol=1e-5)
        assert [r["test_acc"] for r in fused.epochs] == pytest.approx(
            [r["test_acc"] for r in eager.epochs], abs=0.01
        )


def test_fused_step_only_where_it_is_plain_sgd():
    from batchlab.train import uses_fused_step

    assert uses_fused_step(CellConfig(batch_size=1, lr=0.1, seed=0))
    assert not uses_fused_step(CellConfig(batch_size=1, lr=0.1, seed=0, momentum=0.9))
    assert not uses_fused_step(CellConfig(batch_size=1, lr=0.1, seed=0, weight_decay=1e-4))
    assert not uses_fused_step(CellConfig(batch_size=1, lr=0.1, seed=0, model="cnn"))


def test_a_cell_with_a_zero_learning_rate_is_an_error():
    from batchlab.train import CellError

    with pytest.raises(CellError, match="learning rate must be a positive number, got 0"):
        run(CellConfig(batch_size=4, lr=0.0, seed=0))


def test_first_bad_step():
    assert first_bad_step(np.array([1.0, 2.0, 3.0]), 10) is None
    assert first_bad_step(np.array([1.0, np.inf, np.nan]), 10) == 1
    assert first_bad_step(np.array([1.0, 11.0]), 10) == 1


def test_collapse_rule():
    ln10 = math.log(10)
    assert is_collapsed(ln10 + 0.002, 0.113, 0.99)
    assert not is_collapsed(2.18, 0.30, 0.4)  # a slow start: loss falling, varied answers
    assert not is_collapsed(ln10, 0.11, 0.2)  # near chance but answering varied classes
    assert not is_collapsed(float("nan"), 0.1, 1.0)


def test_dead_network_is_collapsed():
    """A network whose hidden ReLUs are all dead answers one class: the cell stops as collapsed."""
    data = synthetic()
    cfg = CellConfig(batch_size=32, lr=1e-6, seed=0, epochs=3)
    torch.manual_seed(cfg.seed)
    model = build_model("mlp")
    with torch.no_grad():
        model[0].bias.fill_(-1e4)  # every hidden unit dead from the start
    state = train_module.TrainState(
        epoch=0,
        model=model.state_dict(),
        optimizer=train_module.make_optimizer(cfg, model.parameters()).state_dict(),
        generator=torch.Generator().manual_seed(0).get_state(),
        losses=np.zeros(0, np.float32),
        epochs=[],
    )
    result = run(cfg, data, resume=state)
    assert result.status == "collapsed"
    assert result.stopped_step == iterations_per_epoch(600, 32)
    assert "same class" in result.stop_reason


def test_host_copies_are_rare_not_per_step(monkeypatch):
    """Losses stay on the device: copies to the host happen per check window, not per step."""
    counts = {"n": 0}
    for name in ("item", "cpu", "tolist", "numpy", "__float__", "__bool__"):
        real = getattr(torch.Tensor, name)

        def counting(self, *a, _real=real, **kw):
            counts["n"] += 1
            return _real(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, counting)
    # probes (a few host copies each, tested apart) and the final sharpness are left out here
    cfg = CellConfig(
        batch_size=1,
        lr=0.001,
        seed=0,
        epochs=1,
        check_every=200,
        sharpness_iterations=0,
        probe_every_samples=0,
    )
    result = run(cfg)
    steps = len(result.losses)
    assert steps == 600
    assert counts["n"] <= 20, f"{counts['n']} host copies for {steps} steps"
    assert "DataLoader" not in inspect.getsource(train_module).replace("No DataLoader", "")


def test_mnist_normalisation_and_shapes():
    tensors = {
        "train_images": torch.full((4, 28, 28), 255, dtype=torch.uint8),
        "train_labels": torch.arange(4),
        "test_images": torch.zeros((2, 28, 28), dtype=torch.uint8),
        "test_labels": torch.arange(2),
    }
    d = to_device(tensors, input_shape("mlp"), CPU)
    assert d.train_x.shape == (4, 784) and d.test_x.shape == (2, 784)
    assert torch.allclose(d.train_x, torch.full_like(d.train_x, (1 - 0.1307) / 0.3081))
    c = to_device(tensors, input_shape("cnn"), CPU)
    assert c.train_x.shape == (4, 1, 28, 28)
    assert build_model("cnn")(c.train_x).shape == (4, 10)


def test_solution2_equals_one_step_at_k_times_the_lr_for_plain_sgd():
    """One forward pass, k updates from k slices, all gradients at the same weights: for plain
    SGD the k updates sum to one full-batch step with k x lr."""
    data = synthetic(n_train=640)
    k = 4
    split = run(CellConfig(batch_size=64, lr=0.01, seed=2, epochs=2, splits=k), data)
    plain_k = run(CellConfig(batch_size=64, lr=0.01 * k, seed=2, epochs=2, fused=False), data)
    plain = run(CellConfig(batch_size=64, lr=0.01, seed=2, epochs=2, fused=False), data)
    assert split.summary()["step_implementation"].startswith("Solution 2")
    assert split.summary()["updates"] == k * len(split.losses)
    assert len(split.losses) == len(plain_k.losses) == 20
    np.testing.assert_allclose(split.losses, plain_k.losses, rtol=1e-4, atol=1e-6)
    assert not np.allclose(split.losses, plain.losses, rtol=1e-3)


def test_solution2_with_momentum_is_not_the_same_as_k_times_the_lr():
    data = synthetic(n_train=640)
    split = run(CellConfig(batch_size=64, lr=0.01, seed=2, epochs=2, splits=4, momentum=0.9), data)
    plain_k = run(CellConfig(batch_size=64, lr=0.04, seed=2, epochs=2, momentum=0.9), data)
    assert split.losses[0] == pytest.approx(plain_k.losses[0])  # same weights before any update
    assert np.abs(split.losses[1:] - plain_k.losses[1:]).max() > 1e-3


def test_the_naive_solution2_fails_in_pytorch():
    """What the report says: stepping the optimizer between backward passes of one graph fails,
    because the weights saved in the graph were changed in place."""
    torch.manual_seed(0)
    model = build_model("mlp")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 784), torch.randint(0, 10, (8,))
    per_sample = torch.nn.functional.cross_entropy(model(x), y, reduction="none")
    per_sample[:4].mean().backward(retain_graph=True)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        per_sample[4:].mean().backward()


def test_linear_warmup_schedule():
    from batchlab.train import lr_schedule, warmup_steps

    lr_at = lr_schedule(0.8, 4)
    assert [lr_at(t) for t in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8, 0.8])
    assert lr_schedule(0.8, 0)(0) == 0.8
    assert warmup_steps(CellConfig(batch_size=64, lr=1, seed=0, warmup_epochs=0.5), 938) == 469


def test_warmup_changes_early_steps_only_through_the_lr():
    data = synthetic()
    warm = run(CellConfig(batch_size=60, lr=0.5, seed=1, epochs=2, warmup_epochs=1), data)
    cold = run(CellConfig(batch_size=60, lr=0.5, seed=1, epochs=2), data)
    fused_warm = run(CellConfig(batch_size=60, lr=0.5, seed=1, epochs=2, warmup_epochs=1, fused=False), data)
    assert warm.losses[0] == cold.losses[0]  # same initial weights and first batch
    assert warm.losses[1] != cold.losses[1]  # the first update was 1/10 as large
    np.testing.assert_allclose(warm.losses, fused_warm.losses, rtol=1e-4, atol=1e-5)


def test_probes_measure_without_changing_the_trajectory():
    data = synthetic()
    probed = run(CellConfig(batch_size=10, lr=0.05, seed=0, epochs=2, probe_every_samples=150), data)
    quiet = run(CellConfig(batch_size=10, lr=0.05, seed=0, epochs=2, probe_every_samples=0), data)
    assert np.array_equal(probed.losses, quiet.losses)
    steps = [p["step"] for p in probed.probes]
    # test accuracy alone at 150/2^k samples (1, 2, 4, 8 iterations), then every 15 iterations
    # with the gradient noise too; the epochs end at 60 and 120
    assert steps == [1, 2, 4, 8, 15, 30, 45, 60, 75, 90, 105, 120]
    assert [math.isnan(p["g_big_sq"]) for p in probed.probes[:5]] == [True] * 4 + [False]
    assert [p["step"] for p in quiet.probes] == [60, 120]  # epoch ends only
    last = probed.probes[-1]
    assert last["test_acc"] == probed.epochs[-1]["test_acc"]
    assert last["b_small"] * 4 == last["b_big"] == 512 and last["g_small_sq"] > last["g_big_sq"] > 0
    assert probed.final["sharpness"] > 0
    times = probed.measure_seconds
    assert times["noise"] > 0 and times["sharpness"] > 0 and times["training"] > 0


def test_resume_keeps_the_probes_and_their_random_stream(tmp_path):
    cfg = CellConfig(batch_size=16, lr=0.05, seed=1, epochs=3, probe_every_samples=200)
    full = run(cfg)
    ckpt = tmp_path / "cell.pt"

    def stop_after_first(state):
        save_checkpoint(ckpt, cfg, state)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cfg, on_epoch_end=stop_after_first)
    resumed = run(cfg, resume=load_checkpoint(ckpt, cfg))
    assert np.array_equal(full.losses, resumed.losses)
    np.testing.assert_array_equal(
        [p["g_small_sq"] for p in full.probes], [p["g_small_sq"] for p in resumed.probes]
    )


def test_solution2_cells_check_their_slices():
    from batchlab.train import CellError

    with pytest.raises(CellError, match="cannot split a batch of 4 into 8 parts"):
        run(CellConfig(batch_size=4, lr=0.1, seed=0, splits=8))
    with pytest.raises(CellError, match="warm-up must last 0 to 3 epochs"):
        run(CellConfig(batch_size=4, lr=0.1, seed=0, warmup_epochs=5))
