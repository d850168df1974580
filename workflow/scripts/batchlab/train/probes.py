"""Measurements taken during and after training, per seed, kept out of the training time.

Every `probe_every_samples` training samples each training seed is probed: validation accuracy
(for steps to a target; on the first `probe_val_size` validation images, or test images where
the study holds out none) and gradient norms at two batch sizes (for the gradient noise scale),
these also at the first probe where a seed reaches `noise_at_val_acc` (B_simple at the moment the
target is reached, the stage B_crit is measured at).
Before the first such probe, validation accuracy alone at 1/2,
1/4, ... 1/256 of that. Each seed's noise samples come from its own random generator, so probing
never changes a trajectory. The final model's sharpness is measured once, after training.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from batchlab.data.tensors import DeviceData
from batchlab.train.ensemble import Ensemble, evaluate
from batchlab.train.measure import gradient_cosine, gradient_norms, power_iteration
from batchlab.train.plan import EpochPlan

PROBE_COLUMNS = [
    "seed",
    "step",
    "epoch",
    "samples",
    "recent_train_loss",
    "val_loss",
    "val_acc",
    "b_small",
    "b_big",
    "g_small_sq",
    "g_big_sq",
    "grad_cos",
]
EARLY_PROBES = 8  # validation-accuracy probes at 1/2, 1/4, ... 1/256 of the probe interval
PROBE_SEED_OFFSET = 7919


def probe_interval(probe_every_samples: int, batch_size: int) -> int:
    """Iterations between regular probes (0: probe at epoch ends only)."""
    if probe_every_samples <= 0:
        return 0
    return max(1, round(probe_every_samples / batch_size))


def early_probe_steps(probe_every_samples: int, batch_size: int) -> list[int]:
    """Iterations of the early probes: validation accuracy only, at probe_every_samples / 2^k samples
    (k = 1..8), so that steps to a target reached before the first regular probe are resolved
    on a log scale rather than read as the first probe's step."""
    every = probe_interval(probe_every_samples, batch_size)
    if not every:
        return []
    steps = {round(probe_every_samples / 2**k / batch_size) for k in range(1, EARLY_PROBES + 1)}
    return sorted(s for s in steps if 0 < s < every)


class Probes:
    """Validation accuracy of every seed at once and each seed's gradient norms, on current weights."""

    def __init__(self, cfg, data: DeviceData, ens: Ensemble, states: list | None = None):
        self.cfg, self.data, self.ens = cfg, data, ens
        self.generators = [torch.Generator().manual_seed(s + PROBE_SEED_OFFSET) for s in ens.seeds]
        for gen, state in zip(self.generators, states or [], strict=False):
            gen.set_state(state)
        self.big = min(cfg.noise_batch, data.n_train)
        self.micro = cfg.noise_micro_batches if self.big % cfg.noise_micro_batches == 0 else 1
        n_val = data.select_x.shape[0]
        self.val_n = min(cfg.probe_val_size, n_val) if cfg.probe_val_size > 0 else n_val
        # val_eval and noise: the probes; epoch_eval: the epoch-end evaluations (batchlab.train.loop)
        self.seconds = {"val_eval": 0.0, "noise": 0.0, "epoch_eval": 0.0, "track": 0.0}
        self.track_n = min(cfg.track_subset, data.n_train)

    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    def states(self) -> list[torch.Tensor]:
        return [g.get_state() for g in self.generators]

    def _sync(self):
        if self.data.train_x.device.type == "cuda":
            torch.cuda.synchronize(self.data.train_x.device)

    def noise(self, i: int) -> dict:
        """Seed i's gradient noise: squared gradient norms at B_big and B_small averaged over
        noise_draws draws, and the cosine between two independent mini-batches of the cell's own
        batch size. Drawn from the seed's own generator: the trajectory never sees it."""
        model, x_all, y_all = self.ens.module(i), self.data.train_x, self.data.train_y
        small = big = 0.0
        draws = max(1, self.cfg.noise_draws)
        for _ in range(draws):
            idx = torch.randperm(self.data.n_train, generator=self.generators[i])[: self.big].to(x_all.device)
            s, b = gradient_norms(model, x_all[idx], y_all[idx], self.micro)
            small, big = small + s / draws, big + b / draws
        b, pairs = self.cfg.batch_size, cosine_pairs(self.cfg.batch_size)
        n = min(2 * b * pairs, self.data.n_train - self.data.n_train % (2 * pairs))
        idx = torch.randperm(self.data.n_train, generator=self.generators[i])[:n].to(x_all.device)
        return {"g_small_sq": small, "g_big_sq": big, "grad_cos": gradient_cosine(model, x_all[idx], y_all[idx], pairs)}

    def subset(self) -> list[dict]:
        """Every seed's loss, accuracy and top class share on the fixed training subset: the
        model's own oscillation, free of the mini-batch's sampling noise, and its fate."""
        t0 = time.perf_counter()
        n = self.track_n
        out = evaluate(self.ens, self.data.train_x[:n], self.data.train_y[:n])
        self._sync()
        self.seconds["track"] += time.perf_counter() - t0
        return out

    def __call__(self, step: int, plan: EpochPlan, recent: dict, val: list | None = None, noise=True, reached=()) -> list:
        """One row per seed in `recent` ({seed index: recent training loss}); `val`: the
        validation evaluation when the caller has it (epoch ends evaluate the whole set). The
        noise is measured where `noise` says, and for a seed not in `reached` (the indexes that
        reached cfg.noise_at_val_acc at an earlier probe) whose accuracy reaches it now."""
        t0 = time.perf_counter()
        if val is None:
            n = self.val_n
            val = evaluate(self.ens, self.data.select_x[:n], self.data.select_y[:n])
        t1 = time.perf_counter()
        self.seconds["val_eval"] += t1 - t0
        rows = []
        for i, loss in recent.items():
            row = {
                "seed": self.ens.seeds[i],
                "step": step,
                "epoch": plan.epochs_at(step),
                "samples": plan.samples_at(step),
                "recent_train_loss": loss,
                "val_loss": val[i]["loss"],
                "val_acc": val[i]["acc"],
                "b_small": self.big // self.micro,
                "b_big": self.big,
                "g_small_sq": float("nan"),
                "g_big_sq": float("nan"),
                "grad_cos": float("nan"),
            }
            target = self.cfg.noise_at_val_acc
            first = bool(target) and i not in reached and val[i]["acc"] >= target
            if (noise or first) and self.micro > 1 and math.isfinite(loss):
                row.update(self.noise(i))
            rows.append(row)
        self._sync()
        self.seconds["noise"] += time.perf_counter() - t1
        return rows


def cosine_pairs(batch_size: int) -> int:
    """Pairs of mini-batches per gradient-cosine probe: enough that a small batch's figure is not
    one coin toss (8 at batch 1 to 4), one from batch 64 up."""
    return max(1, min(8, 64 // batch_size))


def final_sharpness(cfg, data: DeviceData, model: torch.nn.Module, seed: int) -> tuple[float, float]:
    """(top Hessian eigenvalue of the training loss on the first `sharpness_subset` images, the
    power iteration's last relative change)."""
    if cfg.sharpness_iterations <= 0 or cfg.sharpness_subset <= 0:
        return float("nan"), float("nan")
    n = min(cfg.sharpness_subset, data.n_train)
    x, y = data.train_x[:n], data.train_y[:n]
    params = [p for p in model.parameters() if p.requires_grad]
    return power_iteration(lambda: F.cross_entropy(model(x), y), params, cfg.sharpness_iterations, seed=seed)
