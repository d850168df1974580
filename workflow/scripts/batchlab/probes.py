"""Measurements taken during and after training, per seed, kept out of the training time.

Every `probe_every_samples` training samples each training seed is probed: validation accuracy
(for steps to a target; on the first `probe_val_size` validation images, or test images where
the study holds out none) and gradient norms at two batch sizes (for the gradient noise scale).
Before the first such probe, validation accuracy alone at 1/2,
1/4, ... 1/256 of that. Each seed's noise samples come from its own random generator, so probing
never changes a trajectory. The final model's sharpness is measured once, after training.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from batchlab.data import DeviceData
from batchlab.ensemble import Ensemble, evaluate
from batchlab.measure import gradient_norms, hessian_top_eigenvalue

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
        # val_eval and noise: the probes; epoch_eval: the epoch-end evaluations (batchlab.train)
        self.seconds = {"val_eval": 0.0, "noise": 0.0, "epoch_eval": 0.0, "track": 0.0}
        self.track_n = min(cfg.track_subset, data.n_train)

    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    def states(self) -> list[torch.Tensor]:
        return [g.get_state() for g in self.generators]

    def _sync(self):
        if self.data.train_x.device.type == "cuda":
            torch.cuda.synchronize(self.data.train_x.device)

    def track(self, seeds: list[int]) -> list[float]:
        """The loss of each seed in `seeds` (indexes) on the fixed training subset: the model's
        own oscillation, free of the mini-batch's sampling noise."""
        t0 = time.perf_counter()
        n = self.track_n
        out = evaluate(self.ens, self.data.train_x[:n], self.data.train_y[:n])
        self._sync()
        self.seconds["track"] += time.perf_counter() - t0
        return [out[i]["loss"] for i in seeds]

    def __call__(self, step, iters_per_epoch, recent: dict, val: list | None = None, noise=True) -> list:
        """One row per seed in `recent` ({seed index: recent training loss}); `val`: the
        validation evaluation when the caller has it (epoch ends evaluate the whole set)."""
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
                "epoch": step / iters_per_epoch,
                "samples": step * self.cfg.batch_size,
                "recent_train_loss": loss,
                "val_loss": val[i]["loss"],
                "val_acc": val[i]["acc"],
                "b_small": self.big // self.micro,
                "b_big": self.big,
                "g_small_sq": float("nan"),
                "g_big_sq": float("nan"),
            }
            if noise and self.micro > 1 and math.isfinite(loss):
                idx = torch.randperm(self.data.n_train, generator=self.generators[i])[: self.big]
                idx = idx.to(self.data.train_x.device)
                row["g_small_sq"], row["g_big_sq"] = gradient_norms(
                    self.ens.module(i), self.data.train_x[idx], self.data.train_y[idx], self.micro
                )
            rows.append(row)
        self._sync()
        self.seconds["noise"] += time.perf_counter() - t1
        return rows


def final_sharpness(cfg, data: DeviceData, model: torch.nn.Module, seed: int) -> float:
    """Top Hessian eigenvalue of the training loss on the first `sharpness_subset` images."""
    if cfg.sharpness_iterations <= 0 or cfg.sharpness_subset <= 0:
        return float("nan")
    n = min(cfg.sharpness_subset, data.n_train)
    x, y = data.train_x[:n], data.train_y[:n]
    params = [p for p in model.parameters() if p.requires_grad]
    return hessian_top_eigenvalue(
        lambda: F.cross_entropy(model(x), y), params, cfg.sharpness_iterations, seed=seed
    )
