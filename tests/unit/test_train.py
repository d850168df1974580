"""The ensemble trainer on small synthetic data: faithfulness to lone runs, determinism, resume,
per-seed fates, logging."""

import inspect
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import batchlab.train.ensemble as ensemble_module
import batchlab.train.loop as train_module
from batchlab.data.tensors import DeviceData, to_device
from batchlab.train.cell_config import CellConfig, CellError, make_config, seed_groups
from batchlab.train.checkpoint import load_checkpoint, save_checkpoint
from batchlab.train.fates import first_bad_step, is_collapsed
from batchlab.train.loop import train_cell
from batchlab.train.models import build_model, input_shape
from batchlab.train.plan import iterations_per_epoch

CPU = torch.device("cpu")
QUIET = {"probe_every_samples": 0, "sharpness_iterations": 0}


def synthetic(n_train=600, n_test=200, seed=0, model="mlp") -> DeviceData:
    """Ten well-separated Gaussian blobs in 784 dimensions (learnable in a few steps)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(10, 784, generator=g) * 3

    def make(n):
        y = torch.randint(0, 10, (n,), generator=g)
        return (centers[y] + torch.randn(n, 784, generator=g)).reshape(n, *input_shape(model)), y

    (tx, ty), (vx, vy) = make(n_train), make(n_test)
    return DeviceData(tx, ty, vx, vy)


def run(cfg, data=None, **kw):
    return train_cell(cfg, data or synthetic(model=cfg.model), CPU, log=lambda m: None, **kw)


def losses(result):
    return {s.seed: s.losses for s in result.seeds}


def test_iterations_per_epoch_is_ceil_n_over_b():
    assert iterations_per_epoch(60000, 1) == 60000
    assert iterations_per_epoch(60000, 64) == 938
    assert iterations_per_epoch(60000, 1024) == 59
    assert iterations_per_epoch(60000, 60000) == 1


def test_every_seed_logs_every_iteration_and_learns():
    result = run(CellConfig(batch_size=32, lr=0.05, seeds=(0, 1, 2), epochs=3, check_every=7))
    assert [s.seed for s in result.seeds] == [0, 1, 2]
    for seed in result.seeds:
        assert seed.status == "ok"
        assert len(seed.losses) == 3 * iterations_per_epoch(600, 32)
        assert [row["epoch"] for row in seed.epochs] == [1, 2, 3]
        assert seed.epochs[-1]["test_acc"] > 0.9
        assert seed.losses[-20:].mean() < seed.losses[:20].mean()
        for row in seed.epochs:
            assert row["seed"] == seed.seed and row["iterations"] == 19 and row["samples_per_s"] > 0
            # an epoch's time is the ensemble's, shared by its seeds
            assert row["seconds"] == pytest.approx(row["ensemble_seconds"] / 3)
    assert not np.array_equal(result.seeds[0].losses, result.seeds[1].losses)


def lone_reference(cfg: CellConfig, seed: int, data: DeviceData, steps: int) -> np.ndarray:
    """One seed trained the textbook way, independent of the package's training code: its
    model built after torch.manual_seed(seed), its order from randperm with its own generator,
    F.cross_entropy, backward and torch.optim.SGD."""
    torch.manual_seed(seed)
    model = build_model(cfg.model)
    opt = TEXTBOOK[cfg.optimizer.name](model.parameters(), cfg.lr, cfg.optimizer)
    gen = torch.Generator().manual_seed(seed)
    out = []
    while len(out) < steps:
        out += textbook_epoch(model, opt, data, torch.randperm(data.n_train, generator=gen), cfg.batch_size, steps - len(out))
    return np.array(out, dtype=np.float32)


def textbook_epoch(model, opt, data: DeviceData, perm: torch.Tensor, b: int, limit: int | None = None) -> list[float]:
    """One epoch's steps over `perm` in batches of b (at most `limit`): F.cross_entropy,
    backward, the optimizer's step; each step's loss."""
    out = []
    for i in range(iterations_per_epoch(data.n_train, b)):
        idx = perm[i * b : (i + 1) * b]
        loss = torch.nn.functional.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(loss.item())
        if len(out) == limit:
            break
    return out


TEXTBOOK = {  # torch.optim for the optimizers it has (LARS and LAMB: tests/unit/test_optimizers.py)
    "sgd": lambda ps, lr, o: torch.optim.SGD(ps, lr=lr, weight_decay=o.weight_decay),
    "momentum": lambda ps, lr, o: torch.optim.SGD(ps, lr=lr, momentum=o.momentum),
    "nesterov": lambda ps, lr, o: torch.optim.SGD(ps, lr=lr, momentum=o.momentum, nesterov=True),
    "adam": lambda ps, lr, o: torch.optim.Adam(ps, lr=lr, betas=(o.beta1, o.beta2), eps=o.eps),
    "adamw": lambda ps, lr, o: torch.optim.AdamW(ps, lr=lr, weight_decay=o.weight_decay),
}


@pytest.fixture
def stacked_calls(monkeypatch):
    """The seed-axis size of the batches every training step received."""
    sizes = []
    for name in ("fused_mlp_sgd", "autograd_step"):
        real = getattr(train_module, name)

        def wrapped(*args, _real=real, **kw):
            step = _real(*args, **kw)

            def counted(x, y, lr):
                sizes.append(x.shape[0])
                return step(x, y, lr)

            counted.flush, counted.settled, counted.masked = step.flush, step.settled, step.masked
            return counted

        monkeypatch.setattr(train_module, name, wrapped)
    return sizes


RECIPES = {
    "fused": {"model": "mlp"},
    "momentum": {"model": "mlp", "optimizer": "momentum", "momentum": 0.9},  # the eager step
    "nesterov": {"model": "mlp", "optimizer": "nesterov", "momentum": 0.9},
    "adam": {"model": "mlp", "optimizer": "adam"},
    "adamw": {"model": "mlp", "optimizer": "adamw", "weight_decay": 0.01},
    "lars": {"model": "mlp", "optimizer": "lars", "momentum": 0.9, "trust_coefficient": 0.02},
    "lamb": {"model": "mlp", "optimizer": "lamb", "weight_decay": 0.01},
    "solution2": {"model": "mlp", "splits": 4},
    "cnn": {"model": "cnn"},
    "cnn_adam": {"model": "cnn", "optimizer": "adam"},  # per-seed gradients, stacked for the update
}
ONLY_AT_64 = {"solution2", "cnn_adam"}


@pytest.mark.parametrize(
    "recipe, batch_size",
    [(RECIPES[name], b) for name in RECIPES for b in (1, 64) if b == 64 or name not in ONLY_AT_64],
    ids=[f"{name}-{b}" for name in RECIPES for b in (1, 64) if b == 64 or name not in ONLY_AT_64],
)
def test_each_seed_of_an_ensemble_follows_its_lone_run(recipe, batch_size, stacked_calls):
    """S = 3 trained together vs each seed alone (S = 1), over the first few hundred steps;
    rounding differs between summation orders and grows chaotically later, so the tolerance is
    a float one. The mlp's steps ran stacked: one call per step, with all three seeds in it."""
    model = recipe["model"]
    n = 300 * batch_size if model == "mlp" else 200 * batch_size
    data = synthetic(n_train=min(n, 6400), n_test=100, model=model)
    cfg = make_config(batch_size=batch_size, lr=0.002, seeds=(0, 1, 2), epochs=1, **QUIET, **recipe)
    together = run(cfg, data)
    assert [s.status for s in together.seeds] == ["ok"] * 3
    steps = len(together.seeds[0].losses)
    if model == "cnn":  # one seed after another, epoch by epoch: stacking does not pay there
        assert stacked_calls == [1] * 3 * steps and "one after another" in together.step_implementation
    else:
        assert stacked_calls == [3] * steps and "3 seed(s) stacked" in together.step_implementation
    for seed in (0, 1, 2):
        alone = run(replace(cfg, seeds=(seed,)), data)
        np.testing.assert_allclose(together.seeds[seed].losses, alone.seeds[0].losses, rtol=1e-4, atol=1e-5)
    if model == "mlp" and cfg.splits == 1 and cfg.optimizer.name in TEXTBOOK:  # and the textbook run of that seed
        reference = lone_reference(cfg, 1, data, min(steps, 200))
        np.testing.assert_allclose(together.seeds[1].losses[:200], reference, rtol=1e-4, atol=1e-5)


def test_seeds_in_groups_train_to_the_same_bits_as_all_at_once():
    """train.seeds_together is how fast, not what: each seed's run is bitwise that of the whole
    stack, so the group size is left out of a seed's record and key."""
    data = synthetic()
    cfg = CellConfig(batch_size=4, lr=0.05, seeds=(0, 1, 2, 3, 4), epochs=2, track_subset=100, track_every_samples=200, **QUIET)
    together, grouped = run(cfg, data), run(replace(cfg, group_size=2), data)  # groups of 2 and 3
    assert seed_groups(replace(cfg, group_size=2)) == [(0, 1), (2, 3, 4)]
    assert seed_groups(replace(cfg, group_size=4)) == [(0, 1, 2, 3, 4)]
    assert "5 seed(s) stacked in 2 groups" in grouped.step_implementation
    assert [s.seed for s in grouped.seeds] == [0, 1, 2, 3, 4]
    for a, b in zip(together.seeds, grouped.seeds, strict=True):
        assert np.array_equal(a.losses, b.losses) and a.track == b.track
        np.testing.assert_equal(a.final, b.final)
    assert cfg.of_seed(1) == replace(cfg, group_size=2).of_seed(1)
    with pytest.raises(CellError, match="groups of 2 or more"):  # a stack of one: other kernels
        run(replace(cfg, group_size=1), data)


def test_init_jitter_changes_the_rounding_of_a_run_and_nothing_else():
    """One part in 10^7 on the initial weights: the runs differ in their bits (another float
    rounding), stay within float noise of each other early on, and each jittered run is itself
    reproducible; the jitter is part of a seed's record."""
    data = synthetic()
    cfg = CellConfig(batch_size=10, lr=0.05, seeds=(0, 1), epochs=1, **QUIET)
    plain, jittered = run(cfg, data), run(replace(cfg, init_jitter=1e-7), data)
    again = run(replace(cfg, init_jitter=1e-7), data)
    for p, j, a in zip(plain.seeds, jittered.seeds, again.seeds, strict=True):
        assert not np.array_equal(p.losses, j.losses) and np.array_equal(j.losses, a.losses)
        np.testing.assert_allclose(p.losses[:10], j.losses[:10], rtol=1e-5)
    start = ensemble_module.Ensemble.initialize("mlp", [0], CPU, 1e-7).params["0.weight"]
    base = ensemble_module.Ensemble.initialize("mlp", [0], CPU).params["0.weight"]
    rel = ((start - base).abs() / base.abs().clamp_min(1e-30)).max()
    assert 0 < rel < 1e-6
    assert cfg.of_seed(0)["init_jitter"] == 0.0 and replace(cfg, init_jitter=1e-7).of_seed(0)["init_jitter"] == 1e-7
    with pytest.raises(CellError, match="init_jitter"):
        run(replace(cfg, init_jitter=0.5), data)


def test_same_cell_twice_gives_identical_bits():
    cfg = CellConfig(batch_size=8, lr=0.02, seeds=(3, 4), epochs=2)
    a, b = run(cfg), run(cfg)
    for x, y in zip(a.seeds, b.seeds, strict=True):
        assert np.array_equal(x.losses, y.losses) and x.epochs[-1]["test_acc"] == y.epochs[-1]["test_acc"]
        np.testing.assert_equal(x.probes, y.probes)  # NaN where no noise was measured, alike


def test_windows_end_where_they_like_without_changing_any_result():
    """A window per step (window_seconds=0) and the usual windows: the same bits."""
    cfg = CellConfig(batch_size=16, lr=2.0, seeds=(0, 1), epochs=2, probe_every_samples=100)
    usual, tiny = run(cfg), run(cfg, window_seconds=0.0)
    for a, b in zip(usual.seeds, tiny.seeds, strict=True):
        assert np.array_equal(a.losses, b.losses) and (a.status, a.stopped_step) == (b.status, b.stopped_step)
        np.testing.assert_equal((a.final, a.probes), (b.final, b.probes))


def test_resume_from_checkpoint_is_bit_identical(tmp_path):
    cfg = make_config(batch_size=16, lr=0.05, seeds=(1, 2), epochs=3, optimizer="momentum", momentum=0.9, probe_every_samples=200)
    full = run(cfg)
    ckpt = tmp_path / "cell.pt"

    def stop_after_first(state):
        save_checkpoint(ckpt, cfg, state)
        raise KeyboardInterrupt  # the job is killed after epoch 1's checkpoint

    with pytest.raises(KeyboardInterrupt):
        run(cfg, on_epoch_end=stop_after_first)
    resume = load_checkpoint(ckpt, cfg)
    assert resume is not None and [state.epoch for state in resume] == [1]
    resumed = run(cfg, resume=resume)
    for a, b in zip(full.seeds, resumed.seeds, strict=True):
        assert np.array_equal(a.losses, b.losses)
        assert [r["test_acc"] for r in a.epochs] == [r["test_acc"] for r in b.epochs]
        np.testing.assert_array_equal([p["g_small_sq"] for p in a.probes], [p["g_small_sq"] for p in b.probes])
    # the first step is timed apart (a job's start-up); a resumed run has none to time
    assert 0 < full.first_step_seconds and resumed.first_step_seconds is None
    assert resumed.resumed_from_epoch == 1


def test_a_checkpoint_of_another_cell_or_an_unreadable_one_is_not_used_and_says_so(tmp_path):
    cfg = CellConfig(batch_size=16, lr=0.05, seeds=(1,), epochs=2)
    ckpt = tmp_path / "cell.pt"
    run(cfg, on_epoch_end=lambda state: save_checkpoint(ckpt, cfg, state))
    said = []
    other = CellConfig(batch_size=16, lr=0.1, seeds=(1,), epochs=2)
    assert load_checkpoint(ckpt, other, said.append) is None
    assert "another version or config" in said[-1]
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    assert load_checkpoint(ckpt, cfg, said.append) is None
    assert "unreadable" in said[-1] and "from scratch" in said[-1]


def test_divergence_at_the_first_step_is_recorded_and_the_cell_ends():
    result = run(CellConfig(batch_size=16, lr=1e4, seeds=(0, 1), epochs=2))
    for seed in result.seeds:
        assert seed.status == "diverged"
        assert seed.stopped_step is not None and seed.stopped_step <= 3
        assert len(seed.losses) == seed.stopped_step
        assert not math.isfinite(seed.losses[-1]) or seed.losses[-1] > 1000
        assert seed.epochs == [] and "iteration" in seed.stop_reason
        assert seed.summary(1)["final_train_loss"] is None  # JSON-safe


def poisoned_cross_entropy(monkeypatch, seed_index: int, call: int, seeds: int):
    """F.cross_entropy of training steps, with one seed's losses made NaN at one call."""
    real = ensemble_module.F.cross_entropy
    calls = {"n": 0}

    def poisoned(out, target, **kw):
        loss = real(out, target, **kw)
        if torch.is_inference_mode_enabled():  # evaluation, not a training step
            return loss
        calls["n"] += 1
        if calls["n"] == call:
            block = loss.shape[0] // seeds
            mask = torch.ones_like(loss)
            mask[seed_index * block : (seed_index + 1) * block] = float("nan")
            loss = loss * mask
        return loss

    monkeypatch.setattr(ensemble_module.F, "cross_entropy", poisoned)


def test_a_seed_that_diverges_late_is_frozen_at_its_step_while_the_others_train_on(monkeypatch):
    cfg = make_config(batch_size=16, lr=0.01, seeds=(0, 1, 2), epochs=3, optimizer="momentum", momentum=0.5, noise_micro_batches=1)
    clean = run(cfg)
    poisoned_cross_entropy(monkeypatch, seed_index=1, call=50, seeds=3)
    result = run(cfg)
    hit = result.seeds[1]
    assert hit.status == "diverged" and hit.stopped_step == 50
    assert len(hit.epochs) == 1  # epoch 1 (38 iterations) finished, epoch 2 stopped
    assert np.isnan(hit.losses[49]) and len(hit.losses) == 50
    np.testing.assert_array_equal(hit.losses[:49], clean.seeds[1].losses[:49])
    for i in (0, 2):  # the others never noticed
        assert result.seeds[i].status == "ok"
        assert np.array_equal(result.seeds[i].losses, clean.seeds[i].losses)
        np.testing.assert_equal(result.seeds[i].final, clean.seeds[i].final)


def test_fused_step_equals_eager_sgd_within_float_tolerance():
    for b in (1, 7, 32):
        fused = run(CellConfig(batch_size=b, lr=0.02, seeds=(5, 6), epochs=2))
        eager = run(CellConfig(batch_size=b, lr=0.02, seeds=(5, 6), epochs=2, fused=False))
        assert fused.step_implementation == "fused plain SGD, 2 seed(s) stacked"
        assert eager.step_implementation == "eager autograd + SGD, 2 seed(s) stacked"
        for f, e in zip(fused.seeds, eager.seeds, strict=True):
            assert len(f.losses) == len(e.losses) == 2 * iterations_per_epoch(600, b)
            np.testing.assert_allclose(f.losses, e.losses, rtol=1e-4, atol=1e-5)
            assert f.epochs[-1]["test_acc"] == pytest.approx(e.epochs[-1]["test_acc"], abs=0.01)


def test_fused_step_only_where_it_is_plain_sgd():
    from batchlab.train.cell_config import uses_fused_step

    assert uses_fused_step(CellConfig(batch_size=1, lr=0.1))
    assert not uses_fused_step(make_config(batch_size=1, lr=0.1, optimizer="momentum", momentum=0.9))
    assert not uses_fused_step(make_config(batch_size=1, lr=0.1, weight_decay=1e-4))
    assert not uses_fused_step(CellConfig(batch_size=1, lr=0.1, model="cnn"))


def test_weight_decay_and_momentum_follow_torch_optim():
    data = synthetic()
    cfg = make_config(batch_size=10, lr=0.05, seeds=(0,), epochs=1, optimizer="momentum", momentum=0.9, weight_decay=0.01, **QUIET)
    ours = run(cfg, data).seeds[0].losses
    torch.manual_seed(0)
    model = build_model("mlp")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
    perm = torch.randperm(600, generator=torch.Generator().manual_seed(0))
    ref = []
    for i in range(60):
        idx = perm[i * 10 : (i + 1) * 10]
        loss = torch.nn.functional.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        ref.append(loss.item())
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_cells_with_bad_values_are_errors():
    with pytest.raises(CellError, match="learning rate must be a positive number, got 0"):
        run(CellConfig(batch_size=4, lr=0.0))
    with pytest.raises(CellError, match="distinct seeds"):
        run(CellConfig(batch_size=4, lr=0.1, seeds=(1, 1)))
    with pytest.raises(CellError, match="cannot split a batch of 4 into 8 parts"):
        run(CellConfig(batch_size=4, lr=0.1, splits=8))
    with pytest.raises(CellError, match="warm-up must last 0 to 3 epochs"):
        run(CellConfig(batch_size=4, lr=0.1, warmup_epochs=5))
    with pytest.raises(CellError, match="Nesterov momentum needs a momentum above 0"):
        run(make_config(batch_size=4, lr=0.1, optimizer="nesterov", momentum=0.0))


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


def seed_1_dead_after_epoch_1(cfg):
    """The checkpoint after epoch 1 with every hidden unit of seed 1 dead (a huge negative bias)."""
    states = []

    def keep_first(state):
        states.append(state)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cfg, on_epoch_end=keep_first)
    states[0][0].params["0.bias"][1].fill_(-1e4)
    return states[0]


def test_a_dead_seed_is_collapsed_and_frozen_while_the_others_train_on(tmp_path):
    """Seed 1's hidden ReLUs all die after epoch 1: it stops as collapsed at the end of epoch
    2; seeds 0 and 2 finish and are unchanged by it."""
    cfg = CellConfig(batch_size=32, lr=0.01, seeds=(0, 1, 2), epochs=3, **QUIET)
    clean = run(cfg)
    result = run(cfg, resume=seed_1_dead_after_epoch_1(cfg))
    dead = result.seeds[1]
    assert dead.status == "collapsed" and dead.stopped_step == 2 * iterations_per_epoch(600, 32)
    assert "same class" in dead.stop_reason and len(dead.epochs) == 2
    for i in (0, 2):
        assert result.seeds[i].status == "ok" and np.array_equal(result.seeds[i].losses, clean.seeds[i].losses)


def test_host_copies_are_rare_not_per_step(monkeypatch):
    """Losses stay on the device: copies to the host happen per window, not per step."""
    counts = {"n": 0}
    for name in ("item", "cpu", "tolist", "numpy", "__float__", "__bool__"):
        real = getattr(torch.Tensor, name)

        def counting(self, *a, _real=real, **kw):
            counts["n"] += 1
            return _real(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, counting)
    # probes (a few host copies each, tested apart) and the final sharpness are left out here
    cfg = CellConfig(batch_size=1, lr=0.001, seeds=(0, 1), epochs=1, check_every=200, **QUIET)
    result = run(cfg)
    steps = len(result.seeds[0].losses)
    assert steps == 600
    # 4 windows, 2 epoch-end evaluations of 2 seeds, the final one and a snapshot: about 40
    assert counts["n"] <= 40, f"{counts['n']} host copies for {steps} steps"
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


def test_stacked_forward_and_evaluation_equal_each_seed_alone():
    from batchlab.train.ensemble import Ensemble, evaluate

    for model in ("mlp", "cnn"):
        data = synthetic(n_train=20, n_test=450, model=model)
        ens = Ensemble.initialize(model, [3, 4], CPU)
        stacked = evaluate(ens, data.test_x, data.test_y)
        for i, seed in enumerate([3, 4]):
            torch.manual_seed(seed)
            net = build_model(model)
            with torch.no_grad():
                out = net(data.test_x)
            loss = torch.nn.functional.cross_entropy(out, data.test_y).item()
            acc = (out.argmax(1) == data.test_y).float().mean().item()
            assert stacked[i]["loss"] == pytest.approx(loss, rel=1e-5)
            assert stacked[i]["acc"] == pytest.approx(acc)


def test_solution2_equals_one_step_at_k_times_the_lr_for_plain_sgd():
    """One forward pass, k updates from k slices, all gradients at the same weights: for plain
    SGD the k updates sum to one full-batch step with k x lr."""
    data = synthetic(n_train=640)
    k = 4
    split = run(CellConfig(batch_size=64, lr=0.01, seeds=(2, 3), epochs=2, splits=k), data)
    plain_k = run(CellConfig(batch_size=64, lr=0.01 * k, seeds=(2, 3), epochs=2, fused=False), data)
    plain = run(CellConfig(batch_size=64, lr=0.01, seeds=(2, 3), epochs=2, fused=False), data)
    assert split.step_implementation.startswith("Solution 2")
    for s, pk, p in zip(split.seeds, plain_k.seeds, plain.seeds, strict=True):
        assert s.summary(k)["updates"] == k * len(s.losses)
        assert len(s.losses) == len(pk.losses) == 20
        np.testing.assert_allclose(s.losses, pk.losses, rtol=1e-4, atol=1e-6)
        assert not np.allclose(s.losses, p.losses, rtol=1e-3)


def test_solution2_with_momentum_is_not_the_same_as_k_times_the_lr():
    data = synthetic(n_train=640)
    split = run(make_config(batch_size=64, lr=0.01, seeds=(2,), epochs=2, splits=4, optimizer="momentum", momentum=0.9), data)
    plain_k = run(make_config(batch_size=64, lr=0.04, seeds=(2,), epochs=2, optimizer="momentum", momentum=0.9), data)
    a, b = split.seeds[0].losses, plain_k.seeds[0].losses
    assert a[0] == pytest.approx(b[0])  # same weights before any update
    assert np.abs(a[1:] - b[1:]).max() > 1e-3


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
    from batchlab.train.plan import lr_schedule, warmup_steps

    lr_at = lr_schedule(0.8, 4)
    assert [lr_at(t) for t in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8, 0.8])
    assert lr_schedule(0.8, 0)(0) == 0.8
    assert warmup_steps(0.5, 938) == 469


def test_warmup_changes_early_steps_only_through_the_lr():
    data = synthetic()
    warm = run(CellConfig(batch_size=60, lr=0.5, seeds=(1,), epochs=2, warmup_epochs=1), data).seeds[0]
    cold = run(CellConfig(batch_size=60, lr=0.5, seeds=(1,), epochs=2), data).seeds[0]
    eager_warm = run(CellConfig(batch_size=60, lr=0.5, seeds=(1,), epochs=2, warmup_epochs=1, fused=False), data)
    assert warm.losses[0] == cold.losses[0]  # same initial weights and first batch
    assert warm.losses[1] != cold.losses[1]  # the first update was 1/10 as large
    np.testing.assert_allclose(warm.losses, eager_warm.seeds[0].losses, rtol=1e-4, atol=1e-5)


def test_probes_measure_without_changing_the_trajectory():
    data = synthetic()
    probed = run(CellConfig(batch_size=10, lr=0.05, seeds=(0, 1), epochs=2, probe_every_samples=150), data)
    quiet = run(CellConfig(batch_size=10, lr=0.05, seeds=(0, 1), epochs=2, probe_every_samples=0), data)
    for p, q in zip(probed.seeds, quiet.seeds, strict=True):
        assert np.array_equal(p.losses, q.losses)
        steps = [row["step"] for row in p.probes]
        # validation accuracy alone at 150/2^k samples (1, 2, 4, 8 iterations), then every 15
        # iterations with the gradient noise too; the epochs end at 60 and 120
        assert steps == [1, 2, 4, 8, 15, 30, 45, 60, 75, 90, 105, 120]
        assert {row["seed"] for row in p.probes} == {p.seed}
        assert [math.isnan(row["g_big_sq"]) for row in p.probes[:5]] == [True] * 4 + [False]
        assert [row["step"] for row in q.probes] == [60, 120]  # epoch ends only
        last = p.probes[-1]
        assert last["val_acc"] == p.epochs[-1]["val_acc"]
        assert last["b_small"] * 4 == last["b_big"] == 512 and last["g_small_sq"] > last["g_big_sq"] > 0
        assert p.final["sharpness"] > 0
    assert probed.seeds[0].probes[5]["g_small_sq"] != probed.seeds[1].probes[5]["g_small_sq"]
    times = probed.measure_seconds
    assert times["noise"] > 0 and times["sharpness"] > 0 and times["training"] > 0


def test_probes_between_epoch_ends_use_the_validation_subset():
    data = synthetic(n_test=200)
    full = run(CellConfig(batch_size=10, lr=0.05, seeds=(0,), epochs=1, probe_every_samples=150), data).seeds[0]
    part = run(
        CellConfig(batch_size=10, lr=0.05, seeds=(0,), epochs=1, probe_every_samples=150, probe_val_size=50), data
    ).seeds[0]
    assert np.array_equal(full.losses, part.losses)
    # accuracy on 50 images comes in steps of 1/50; the epoch end uses all 200
    assert all(round(row["val_acc"] * 50, 6) % 1 == 0 for row in part.probes[:-1])
    assert part.probes[-1]["val_acc"] == full.probes[-1]["val_acc"] == part.epochs[-1]["val_acc"]


def test_selection_reads_the_validation_set_and_the_test_set_is_only_reported():
    base = synthetic(n_train=800, n_test=200)
    # the first 200 training images become the validation set; the test labels are shuffled, so
    # a probe or a fate that read the test set would see chance accuracy
    shuffled = base.test_y[torch.randperm(200, generator=torch.Generator().manual_seed(1))]
    data = DeviceData(base.train_x[200:], base.train_y[200:], base.test_x, shuffled, base.train_x[:200], base.train_y[:200])
    assert data.selection_set == "validation" and base.selection_set == "test"
    seed = run(CellConfig(batch_size=20, lr=0.05, seeds=(0,), epochs=2, probe_every_samples=300), data).seeds[0]
    assert seed.status == "ok" and len(seed.losses) == 2 * 30  # 600 training images, not 800
    assert all(row["val_acc"] > 0.9 for row in seed.probes[-3:])
    assert seed.epochs[-1]["val_acc"] > 0.9 and seed.epochs[-1]["test_acc"] < 0.4
    assert seed.final["val_acc"] == seed.epochs[-1]["val_acc"] and seed.final["test_acc"] < 0.4


def test_the_validation_split_is_fixed_disjoint_and_holds_out_what_it_says():
    from batchlab.data.tensors import validation_split

    train, val = validation_split(1000, 200)
    again = validation_split(1000, 200)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])  # the same for every cell and seed
    assert len(val) == 200 and len(train) == 800
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(1000))
    assert torch.all(train[1:] > train[:-1]) and val.min() < 100 and val.max() > 900  # sorted, drawn at random
    none_train, none_val = validation_split(1000, 0)
    assert torch.equal(none_train, torch.arange(1000)) and len(none_val) == 0
    with pytest.raises(ValueError, match="validation size 1000"):
        validation_split(1000, 1000)
    images = torch.arange(1000, dtype=torch.uint8).repeat_interleave(784).reshape(1000, 28, 28)
    tensors = {
        "train_images": images,
        "train_labels": torch.arange(1000) % 10,
        "test_images": images[:50],
        "test_labels": torch.arange(50) % 10,
    }
    held = to_device(tensors, input_shape("mlp"), CPU, validation_size=200)
    assert held.n_train == 800 and held.val_x.shape == (200, 784) and held.selection_set == "validation"
    assert torch.equal(held.val_y, (val % 10)) and torch.equal(held.train_y, train % 10)
    assert to_device(tensors, input_shape("mlp"), CPU).selection_set == "test"


def test_a_lone_cnn_seed_that_diverges_mid_window_is_rewound_to_its_step(monkeypatch):
    """The cnn's seeds train one after another, unmasked; a seed whose loss goes bad inside a
    window is rewound to the window's start and replayed up to that step. Its weights then
    do not depend on where the windows ended (one step each, or a whole epoch), and the other
    seed never notices."""
    data = synthetic(n_train=320, n_test=100, model="cnn")
    cfg = CellConfig(batch_size=16, lr=0.002, seeds=(0, 1), epochs=2, model="cnn", noise_micro_batches=1, **QUIET)
    clean = run(cfg, data)
    results = []
    for windows in (10.0, 0.0):
        # one training call poisoned: a step of epoch 2 of one of the seeds (they take turns)
        poisoned_cross_entropy(monkeypatch, seed_index=0, call=50, seeds=1)
        results.append(run(cfg, data, window_seconds=windows))
        monkeypatch.undo()
    for result in results:
        hit = [s for s in result.seeds if s.status == "diverged"]
        assert len(hit) == 1 and 20 < hit[0].stopped_step < 40 and len(hit[0].losses) == hit[0].stopped_step
        i = result.seeds.index(hit[0])
        np.testing.assert_array_equal(hit[0].losses[:-1], clean.seeds[i].losses[: len(hit[0].losses) - 1])
        other = result.seeds[1 - i]
        assert np.array_equal(other.losses, clean.seeds[1 - i].losses)
        np.testing.assert_equal(other.final, clean.seeds[1 - i].final)
    a, b = (next(s for s in r.seeds if s.status == "diverged") for r in results)
    assert a.stopped_step == b.stopped_step
    np.testing.assert_equal(a.final, b.final)  # the same frozen weights
    assert math.isfinite(a.final["test_loss"])  # those before the bad step


def test_the_fixed_subset_is_tracked_through_the_run_without_changing_the_trajectory():
    data = synthetic()
    cfg = CellConfig(batch_size=10, lr=0.05, seeds=(0, 1), epochs=2, track_subset=100, track_every_samples=150, **QUIET)
    tracked = run(cfg, data)
    off = run(replace(cfg, track_every_samples=0), data)
    for t, o in zip(tracked.seeds, off.seeds, strict=True):
        assert np.array_equal(t.losses, o.losses)  # measuring never moves a trajectory
        # 60 iterations per epoch; every 15 (150 samples / batch 10), in every epoch
        assert [step for step, _ in t.track] == [15, 30, 45, 60, 75, 90, 105, 120] and o.track == []
        assert all(0 < loss < 2.3 for _, loss in t.track)
        assert t.summary(1)["track"] == [[s, pytest.approx(v)] for s, v in t.track]
    assert tracked.seeds[0].track != tracked.seeds[1].track
    assert tracked.measure_seconds["track"] > 0 and off.measure_seconds["track"] == 0


def test_the_noise_is_measured_at_every_nth_probe_or_at_epoch_ends_only():
    data = synthetic()

    def noisy_steps(every):
        cfg = CellConfig(batch_size=10, lr=0.05, seeds=(0,), epochs=1, probe_every_samples=150, noise_every_probes=every)
        probes = run(cfg, data).seeds[0].probes
        return [row["step"] for row in probes if not math.isnan(row["g_big_sq"])]

    # regular probes at 15, 30, 45 and the epoch end at 60 (early probes never measure noise)
    assert noisy_steps(1) == [15, 30, 45, 60]
    assert noisy_steps(2) == [30, 60]
    assert noisy_steps(0) == [60]


def test_a_collapse_is_caught_on_the_fixed_subset_within_the_epoch():
    """With a fate check every 64 samples (2 steps at batch 32), seed 1, whose hidden units all
    die after epoch 1, is frozen at the first check of epoch 2, not at its end."""
    cfg = CellConfig(batch_size=32, lr=0.01, seeds=(0, 1), epochs=3, fate_every_samples=64, **QUIET)
    result = run(cfg, resume=seed_1_dead_after_epoch_1(cfg))
    dead, alive = result.seeds[1], result.seeds[0]
    ipe = iterations_per_epoch(600, 32)
    assert dead.status == "collapsed" and dead.stopped_step == ipe + 2
    assert "fixed 600-image training subset" in dead.stop_reason
    assert alive.status == "ok" and len(alive.epochs) == 3
    # its final record is its frozen weights', not epoch 1's (when it still worked)
    assert len(dead.epochs) == 1 and dead.final["val_acc"] < 0.2 < dead.epochs[-1]["val_acc"]
    assert dead.final["train_loss"] > 2.0 > dead.epochs[-1]["train_loss"]


def test_the_noise_is_measured_where_a_seed_first_reaches_the_target():
    """Noise at epoch ends only, plus the first probe at which each seed's validation accuracy
    reaches noise_at_val_acc: that probe and no other between epoch ends."""
    cfg = CellConfig(
        batch_size=8, lr=0.002, seeds=(0, 1), epochs=2, probe_every_samples=96, noise_every_probes=0,
        noise_batch=64, noise_micro_batches=4, noise_at_val_acc=0.6, sharpness_iterations=0,
    )  # fmt: skip
    result = run(cfg)
    ipe = iterations_per_epoch(600, 8)
    for seed in result.seeds:
        rows = seed.probes
        within = [r for r in rows if r["step"] % ipe and math.isfinite(r["g_small_sq"])]
        first = next(i for i, r in enumerate(rows) if r["val_acc"] >= 0.6)
        assert 0 < rows[first]["step"] < ipe  # reached between probes of epoch 1: the case tested
        assert within == [rows[first]]
