"""Epoch-end checkpoints as plain tensors and primitives, loadable with weights_only=True."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from batchlab.io import atomic_path
from batchlab.train import CellConfig, TrainState

FORMAT = 2


def save_checkpoint(path: str | Path, cfg: CellConfig, state: TrainState) -> None:
    record = {
        "format": FORMAT,
        "config": asdict(cfg),
        "epoch": state.epoch,
        "model": state.model,
        "optimizer": state.optimizer,
        "generator": state.generator,
        "losses": torch.from_numpy(np.ascontiguousarray(state.losses, dtype=np.float32)),
        "epochs": state.epochs,
        "probes": state.probes,
        "probe_generator": state.probe_generator,
    }
    with atomic_path(path) as tmp:
        torch.save(record, tmp)


def load_checkpoint(path: str | Path, cfg: CellConfig) -> TrainState | None:
    """The saved state when path holds a checkpoint of this very cell, else None."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        record = torch.load(path, weights_only=True)
    except Exception:  # an unreadable checkpoint is retrained from scratch, never trusted
        return None
    if record.get("format") != FORMAT or record.get("config") != asdict(cfg):
        return None
    return TrainState(
        epoch=int(record["epoch"]),
        model=record["model"],
        optimizer=record["optimizer"],
        generator=record["generator"],
        losses=record["losses"].numpy(),
        epochs=record["epochs"],
        probes=record["probes"],
        probe_generator=record["probe_generator"],
    )
