"""What a cell does over its run, step by step: each epoch's batch size and iterations (the same
every epoch but on a batch-size ramp) and the lr at each step (warm-up, then the schedule)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from batchlab import BatchlabError


def iterations_per_epoch(n_train: int, batch_size: int) -> int:
    """ceil(N / b): every image is seen once per epoch, the last batch may be smaller."""
    return -(-n_train // batch_size)


def batch_at(batch_size: int, epoch: int, ramp_from: int = 0, ramp_every: int = 1) -> int:
    """The batch size of epoch `epoch` (1-based): batch_size, or on a ramp (ramp_from > 0)
    ramp_from doubled every ramp_every epochs, at most batch_size."""
    if not ramp_from:
        return batch_size
    return min(batch_size, ramp_from * 2 ** ((epoch - 1) // ramp_every))


@dataclass(frozen=True)
class EpochPlan:
    """Each epoch's batch size and iterations (the same every epoch but on a ramp), and where
    a step of the run falls in them."""

    batch_sizes: tuple[int, ...]
    iters: tuple[int, ...]

    @classmethod
    def of(cls, n_train: int, epochs: int, batch_size: int, ramp_from: int = 0, ramp_every: int = 1) -> EpochPlan:
        sizes = tuple(batch_at(batch_size, e, ramp_from, ramp_every) for e in range(1, epochs + 1))
        return cls(sizes, tuple(iterations_per_epoch(n_train, b) for b in sizes))

    @property
    def total(self) -> int:
        return sum(self.iters)

    def steps_before(self, epoch: int) -> int:
        """Steps taken before epoch `epoch` (1-based) begins."""
        return sum(self.iters[: epoch - 1])

    def epoch_of(self, step: int) -> int:
        """The epoch (1-based) that step `step` (1-based) belongs to."""
        return next((e for e in range(1, len(self.iters) + 1) if step <= self.steps_before(e + 1)), len(self.iters))

    def epochs_at(self, step: int) -> float:
        """Epochs done after `step` steps, fractional."""
        if len(set(self.iters)) == 1:
            return step / self.iters[0]
        e = self.epoch_of(max(step, 1))
        return e - 1 + (step - self.steps_before(e)) / self.iters[e - 1]

    def samples_at(self, step: int) -> int:
        """Samples drawn after `step` steps (every batch counted full)."""
        if len(set(self.batch_sizes)) == 1:
            return step * self.batch_sizes[0]
        e = self.epoch_of(max(step, 1))
        done = sum(b * i for b, i in zip(self.batch_sizes[: e - 1], self.iters[: e - 1], strict=True))
        return done + (step - self.steps_before(e)) * self.batch_sizes[e - 1]


def warmup_steps(warmup_epochs: float, iters_per_epoch: int) -> int:
    return round(warmup_epochs * iters_per_epoch)


SCHEDULES = ("constant", "linear", "cosine")


def lr_schedule(lr: float, warmup: int, total: int = 0, kind: str = "constant") -> Callable[[int], float]:
    """lr at 0-based iteration t of `total`: a linear warm-up lr*(t+1)/warmup over the first
    `warmup` iterations, then lr held (constant), decayed linearly to zero at the end (linear,
    as Shallue et al. 2018), or along half a cosine to zero (cosine)."""
    if kind not in SCHEDULES:
        raise BatchlabError(f"unknown lr schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")
    decay = max(total - warmup, 1)

    def at(t: int) -> float:
        if t < warmup:
            return lr * (t + 1) / warmup
        if kind == "constant":
            return lr
        done = min((t - warmup) / decay, 1.0)
        return lr * (1.0 - done if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * done)))

    return at
