"""What a cell's training produces and keeps: each seed's record, the cell's result, and the
state an epoch-end checkpoint holds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from batchlab.train.cell_config import CellConfig

EPOCH_COLUMNS = [
    "seed",
    "epoch",
    "epoch_batch_size",  # the cell's batch size, but on a batch-size ramp
    "iterations",
    "samples",
    "seconds",
    "samples_per_s",
    "ms_per_step",
    "ensemble_seconds",
    "running_loss",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "top_class_share",  # on the validation set
    "test_loss",
    "test_acc",
]


@dataclass
class SeedResult:
    seed: int
    losses: np.ndarray  # training loss of every iteration, float32
    epochs: list[dict]  # one row per completed epoch
    probes: list[dict]
    status: str = "ok"  # "ok", "diverged" or "collapsed"
    stopped_step: int | None = None
    stop_reason: str | None = None
    final: dict = field(default_factory=dict)  # evaluation of the final weights
    # the model's loss on a fixed training subset through the run: [step, loss] pairs
    track: list = field(default_factory=list)

    def summary(self, splits: int) -> dict:
        return {
            "seed": self.seed,
            "status": self.status,
            "stopped_step": self.stopped_step,
            "stop_reason": self.stop_reason,
            "steps": int(len(self.losses)),
            "updates": int(len(self.losses)) * max(1, splits),
            "epochs_completed": len(self.epochs),
            "track": [[int(step), float(loss)] for step, loss in self.track],
            **{f"final_{k}": _finite_or_none(v) for k, v in self.final.items()},
        }


@dataclass
class CellResult:
    config: CellConfig
    seeds: list[SeedResult]
    step_implementation: str
    measure_seconds: dict  # time spent measuring, not training
    first_step_seconds: float | None  # epoch start to the first step's loss (None: resumed)
    resumed_from_epoch: int | None = None


@dataclass
class TrainState:
    """What an epoch-end checkpoint holds: enough to resume the whole ensemble bit-for-bit."""

    epoch: int  # completed epochs
    step: int  # ensemble steps done
    params: dict
    momentum: list
    alive: list
    generators: list
    probe_generators: list
    seeds: list  # SeedResult as dicts


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
