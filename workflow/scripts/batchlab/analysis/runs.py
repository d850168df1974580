"""Reading a finished cell's outputs back (what batchlab.train.job writes), seed by seed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from batchlab import BatchlabError


def read_cell(metrics_path, epochs_path, losses_path, probes_path) -> tuple[dict, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One cell's four outputs; one that cannot be read is named, with what to do."""
    try:
        metrics = json.loads(Path(metrics_path).read_text())
        return (
            metrics,
            pd.read_parquet(epochs_path),
            pd.read_parquet(losses_path, columns=["seed", "loss"]),
            pd.read_parquet(probes_path),
        )
    except (OSError, ValueError, KeyError) as exc:
        folder = Path(metrics_path).parent
        raise BatchlabError(
            f"the outputs of cell {folder} cannot be read ({type(exc).__name__}: {exc}); "
            f"delete {folder} and run the study again to retrain that cell"
        ) from None


def per_seed(
    metrics: dict, epochs: pd.DataFrame, losses: pd.DataFrame, probes: pd.DataFrame
) -> Iterator[tuple[dict, pd.DataFrame, np.ndarray, pd.DataFrame]]:
    """(metrics, epochs, losses, probes) of each seed of the cell; its metrics hold the cell's
    fields and the seed's own."""
    cell = {k: v for k, v in metrics.items() if k != "seeds"}
    for entry in metrics["seeds"]:
        seed = entry["seed"]
        yield (
            {**cell, **entry},
            epochs[epochs["seed"] == seed].drop(columns="seed").reset_index(drop=True),
            losses.loc[losses["seed"] == seed, "loss"].to_numpy(),
            probes[probes["seed"] == seed].drop(columns="seed").reset_index(drop=True),
        )
