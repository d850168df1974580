"""Epoch-end checkpoints of a whole ensemble, as plain tensors and primitives (weights_only)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from batchlab.io import atomic_path
from batchlab.train import CellConfig, TrainState

FORMAT = 3


def save_checkpoint(path: str | Path, cfg: CellConfig, state: TrainState) -> None:
    seeds = [{**s, "losses": torch.from_numpy(np.ascontiguousarray(s["losses"], np.float32))} for s in state.seeds]
    record = {"format": FORMAT, "config": _plain(asdict(cfg)), **asdict(state), "seeds": seeds}
    with atomic_path(path) as tmp:
        torch.save(record, tmp)


def _plain(record: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in record.items()}


def load_checkpoint(path: str | Path, cfg: CellConfig, log: Callable[[str], None] = print) -> TrainState | None:
    """The saved state when path holds a checkpoint of this very cell, else None (and why)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        record = torch.load(path, weights_only=True)
    except Exception as exc:  # an unreadable checkpoint is retrained from scratch, never trusted
        log(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); training this cell from scratch")
        return None
    if record.get("format") != FORMAT or record.get("config") != _plain(asdict(cfg)):
        log(f"checkpoint {path} belongs to another version or config of this cell; training from scratch")
        return None
    seeds = [{**s, "losses": s["losses"].numpy()} for s in record["seeds"]]
    fields = {k: record[k] for k in TrainState.__dataclass_fields__}
    return TrainState(**{**fields, "seeds": seeds})
