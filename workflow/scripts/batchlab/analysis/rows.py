"""Which rows: the cells of the grid, the seeds and settings that failed, the rows of one
(batch size, lr, recipe) and the seeds a fit can pair. Helpers of the tables, fits, verdicts and
the report; they build no table of their own."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

# the columns that name one seed run of one cell
CELL_KEYS = ["batch_size", "lr", "seed", "recipe"]


def grid_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells of the (batch size, lr, seed) grid (column in_grid; else all plain cells)."""
    if "in_grid" in cells:
        return cells[cells["in_grid"].astype(bool)]
    if "recipe" in cells:
        return cells[cells["recipe"].fillna("") == ""]
    return cells


def rows_of(frame: pd.DataFrame, batch_size: int, lr: float, recipe: str | None = "") -> pd.DataFrame:
    """The rows of one (batch size, lr, recipe), the lr compared with np.isclose; recipe None
    keeps every recipe (a frame already narrowed to one, such as the grid's cells)."""
    at = frame[(frame["batch_size"] == batch_size) & np.isclose(frame["lr"], lr)]
    return at if recipe is None else at[at["recipe"].fillna("") == recipe]


def at_lr(frame: pd.DataFrame, lr: float) -> pd.DataFrame:
    """The rows of every batch size at one lr, compared with np.isclose."""
    return frame[np.isclose(frame["lr"], lr)]


def at_best_lr(frame: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """The rows of frame at each batch size's best learning rate."""
    keys = best[["batch_size", "best_lr"]].rename(columns={"best_lr": "lr"})
    return frame.merge(keys, on=["batch_size", "lr"])


def nearest(values, target: float) -> float:
    """The value closest to target on a log scale."""
    values = sorted(set(float(v) for v in values))
    return min(values, key=lambda v: abs(math.log(v) - math.log(target)))


def failed_seeds(cells: pd.DataFrame) -> pd.Series:
    """Per row: the seed diverged, collapsed or failed to learn."""
    bad = cells["status"].isin(["diverged", "collapsed"])
    if "failed_to_learn" in cells:
        bad |= cells["failed_to_learn"].astype(bool)
    return bad


def failed_settings(cells: pd.DataFrame) -> set[tuple[int, float]]:
    """The (batch size, lr) settings in which some seed failed."""
    bad = cells[failed_seeds(cells)]
    return {(int(b), float(lr)) for b, lr in zip(bad["batch_size"], bad["lr"], strict=True)}


def steps_by_seed(targets: pd.DataFrame, grid: pd.DataFrame) -> dict[int, pd.Series]:
    """Per batch size that reached the target: each seed's steps to it at the lr of `targets`
    (the one that reached it in the fewest): the points of the B_crit fit."""
    reached = targets[targets["reached"].astype(bool)]
    return {int(r.batch_size): rows_of(grid, r.batch_size, r.lr, None).set_index("seed")["steps_to_acc"] for r in reached.itertuples()}


def shared_seeds(series) -> list:
    """The seeds every one of the per-seed series has."""
    series = list(series)
    return sorted(set.intersection(*(set(s.index) for s in series))) if series else []
