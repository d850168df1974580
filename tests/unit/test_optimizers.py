"""Each optimizer over stacked seeds against a reference run seed by seed: torch.optim where it
has the optimizer, the papers' updates written out plainly (one seed, one layer at a time) for
LARS and LAMB; frozen seeds stay exactly where they were; the lr schedules."""

import math

import pytest
import torch

from batchlab.train.cell_config import CellConfig, make_config
from batchlab.train.optimizers import build_optimizer
from batchlab.train.plan import lr_schedule
from batchlab.train.settings import OPTIMIZERS
from batchlab.train.settings import OptimizerSettings as Settings

SHAPES = [(6, 5), (6,), (3, 6), (3,)]  # a seed's weight, bias, weight, bias
SEEDS, STEPS = 3, 6


def problem(seed=0):
    """Stacked parameters [S, ...] and a gradient per step and parameter."""
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(SEEDS, *s, generator=g) for s in SHAPES]
    grads = [[torch.randn(SEEDS, *s, generator=g) * (1 + t) for s in SHAPES] for t in range(STEPS)]
    return params, grads


TORCH = {
    "sgd": lambda ps, s: torch.optim.SGD(ps, lr=0.1, weight_decay=s.weight_decay),
    "momentum": lambda ps, s: torch.optim.SGD(ps, lr=0.1, momentum=s.momentum, weight_decay=s.weight_decay),
    "nesterov": lambda ps, s: torch.optim.SGD(ps, lr=0.1, momentum=s.momentum, nesterov=True, weight_decay=s.weight_decay),
    "adam": lambda ps, s: torch.optim.Adam(ps, lr=0.1, betas=(s.beta1, s.beta2), eps=s.eps, weight_decay=s.weight_decay),
    "adamw": lambda ps, s: torch.optim.AdamW(ps, lr=0.1, betas=(s.beta1, s.beta2), eps=s.eps, weight_decay=s.weight_decay),
}


def lars_reference(ws, gs_by_step, lr, s: Settings):
    """One seed's LARS (You et al. 2017, algorithm 1), layer by layer; biases plain momentum SGD."""
    v = [torch.zeros_like(w) for w in ws]
    for gs in gs_by_step:
        for i, (w, g) in enumerate(zip(ws, gs, strict=False)):
            if w.dim() >= 2:
                wn, gn = w.norm().item(), g.norm().item()
                local = s.trust_coefficient * wn / (gn + s.weight_decay * wn) if wn > 0 and gn > 0 else 1.0
                g = local * (g + s.weight_decay * w)
            v[i] = s.momentum * v[i] + lr * g
            ws[i] = w - v[i]
    return ws


def lamb_reference(ws, gs_by_step, lr, s: Settings):
    """One seed's LAMB (You et al. 2019, algorithm 2, phi the identity), layer by layer."""
    m = [torch.zeros_like(w) for w in ws]
    v = [torch.zeros_like(w) for w in ws]
    for t, gs in enumerate(gs_by_step, start=1):
        for i, (w, g) in enumerate(zip(ws, gs, strict=False)):
            m[i] = s.beta1 * m[i] + (1 - s.beta1) * g
            v[i] = s.beta2 * v[i] + (1 - s.beta2) * g * g
            r = (m[i] / (1 - s.beta1**t)) / ((v[i] / (1 - s.beta2**t)).sqrt() + s.eps)
            ratio = 1.0
            if w.dim() >= 2:
                r = r + s.weight_decay * w
                wn, rn = w.norm().item(), r.norm().item()
                ratio = wn / rn if wn > 0 and rn > 0 else 1.0
            ws[i] = w - lr * ratio * r
    return ws


CASES = {
    "sgd": Settings("sgd", weight_decay=0.01),
    "momentum": Settings("momentum", momentum=0.9, weight_decay=0.01),
    "nesterov": Settings("nesterov", momentum=0.9),
    "adam": Settings("adam", beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01),
    "adamw": Settings("adamw", weight_decay=0.1),
    "lars": Settings("lars", momentum=0.9, trust_coefficient=0.02, weight_decay=0.001),
    "lamb": Settings("lamb", weight_decay=0.01, eps=1e-6),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_stacked_step_is_each_seeds_own_reference_step(case):
    s = CASES[case]
    params, grads = problem()
    opt = build_optimizer(params, s)
    for gs in grads:
        opt.step_all([g.clone() for g in gs], 0.1)
    for seed in range(SEEDS):
        ws = [p0[seed].clone() for p0 in problem()[0]]
        by_step = [[g[seed] for g in gs] for gs in grads]
        if s.name in TORCH:
            ref = TORCH[s.name](ws, s)
            for gs in by_step:
                for w, g in zip(ws, gs, strict=False):
                    w.grad = g.clone()
                ref.step()
        else:
            ws = (lars_reference if s.name == "lars" else lamb_reference)(ws, by_step, 0.1, s)
        for mine, theirs in zip(params, ws, strict=False):
            torch.testing.assert_close(mine[seed], theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_frozen_seed_does_not_move_and_the_others_step_as_if_alone(name):
    s = Settings(name, momentum=0.9)
    params, grads = problem(1)
    both = build_optimizer(params, s)
    free_params = [p.clone() for p in params]
    free = build_optimizer(free_params, s)
    frozen_at = [p[1].clone() for p in params]
    alive = torch.tensor([True, False, True])
    for gs in grads:
        gs = [g.clone() for g in gs]
        gs[0][1] = math.nan  # a diverged seed's gradient
        both.step([g.clone() for g in gs], 0.05, alive)
        free.step_all([g.nan_to_num(0.0) for g in gs], 0.05)
    for p, f, still in zip(params, free_params, frozen_at, strict=False):
        assert torch.equal(p[1], still)
        torch.testing.assert_close(p[[0, 2]], f[[0, 2]])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_saved_and_loaded_continues_the_same_steps(name):
    s = Settings(name, momentum=0.9)
    params, grads = problem(2)
    a = build_optimizer(params, s)
    for gs in grads[:3]:
        a.step_all([g.clone() for g in gs], 0.1)
    copy = [p.clone() for p in params]
    b = build_optimizer(copy, s)
    b.load(a.state())
    for gs in grads[3:]:
        a.step_all([g.clone() for g in gs], 0.1)
        b.step_all([g.clone() for g in gs], 0.1)
    for x, y in zip(params, copy, strict=False):
        assert torch.equal(x, y)


def test_the_cell_config_gives_each_optimizer_only_its_own_settings():
    cfg = make_config(batch_size=4, lr=0.1, optimizer="adam", momentum=0.9, beta1=0.8, weight_decay=0.1)
    assert cfg.optimizer == Settings("adam", beta1=0.8, weight_decay=0.1)  # momentum unread
    assert make_config(batch_size=4, lr=0.1, momentum=0.9).optimizer == Settings("sgd")


def test_schedules_warm_up_then_hold_or_decay_to_zero():
    warm, total = 4, 20
    const = lr_schedule(1.0, warm, total, "constant")
    linear = lr_schedule(1.0, warm, total, "linear")
    cosine = lr_schedule(1.0, warm, total, "cosine")
    for f in (const, linear, cosine):
        assert [f(t) for t in range(warm)] == [0.25, 0.5, 0.75, 1.0]
    assert const(19) == 1.0
    assert linear(4) == 1.0 and linear(12) == pytest.approx(0.5) and linear(20) == 0.0
    assert cosine(12) == pytest.approx(0.5) and cosine(8) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert all(linear(t) >= linear(t + 1) >= 0 for t in range(warm, total))
    with pytest.raises(Exception, match="unknown lr schedule 'step'"):
        lr_schedule(1.0, 0, 10, "step")


@pytest.mark.parametrize("kind", ["constant", "linear", "cosine"])
def test_the_trainer_follows_the_cells_schedule_over_all_its_steps(kind):
    """The trainer's lr at each step comes from train.schedule over the cell's whole run (epochs
    x ceil(N / b) steps), after the warm-up."""
    import batchlab.train.loop as train_module
    from batchlab.data.tensors import DeviceData

    g = torch.Generator().manual_seed(0)
    data = DeviceData(torch.randn(100, 784, generator=g), torch.randint(0, 10, (100,), generator=g),
                      torch.randn(20, 784, generator=g), torch.randint(0, 10, (20,), generator=g))  # fmt: skip
    cfg = CellConfig(batch_size=10, lr=0.5, epochs=2, warmup_epochs=1, schedule=kind, probe_every_samples=0, sharpness_iterations=0)
    run = train_module.setup(cfg, data, torch.device("cpu"), None, lambda m: None)
    lrs = [run.lr_at(t) for t in range(20)]  # 2 epochs of 10 steps; warm-up over the first 10
    assert lrs[:10] == pytest.approx([0.05 * (t + 1) for t in range(10)])
    assert lrs[10] == pytest.approx(0.5)
    assert lrs[19] == pytest.approx({"constant": 0.5, "linear": 0.05, "cosine": 0.25 * (1 + math.cos(math.pi * 0.9))}[kind])
