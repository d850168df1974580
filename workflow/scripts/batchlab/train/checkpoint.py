"""Epoch-end checkpoints of a cell: every group of its seeds, as plain tensors and primitives
(loadable with weights_only=True)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from batchlab.io import atomic_path
from batchlab.train.cell_config import CellConfig
from batchlab.train.records import TrainState

FORMAT = 3


def _saved(state: TrainState) -> dict:
    seeds = [{**s, "losses": torch.from_numpy(np.ascontiguousarray(s["losses"], np.float32))} for s in state.seeds]
    return {**asdict(state), "seeds": seeds}


def _loaded(group: dict) -> TrainState:
    seeds = [{**s, "losses": s["losses"].numpy()} for s in group["seeds"]]
    return TrainState(**{**{k: group[k] for k in TrainState.__dataclass_fields__}, "seeds": seeds})


def save_checkpoint(path: str | Path, cfg: CellConfig, states: list[TrainState]) -> None:
    record = {"format": FORMAT, "config": _plain(asdict(cfg)), "groups": [_saved(s) for s in states]}
    with atomic_path(path) as tmp:
        torch.save(record, tmp)


def _plain(record: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in record.items()}


def load_checkpoint(
    path: str | Path, cfg: CellConfig, log: Callable[[str], None] = print
) -> list[TrainState] | None:
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
    return [_loaded(group) for group in record["groups"]]
