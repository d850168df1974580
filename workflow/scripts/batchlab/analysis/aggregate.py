"""Turn every cell's logs into tidy tables and the study's headline numbers (pandas)."""

from __future__ import annotations

import math

import pandas as pd

from batchlab.analysis.rows import CELL_KEYS, grid_cells
from batchlab.analysis.selection import best_lr as select_lr
from batchlab.analysis.stats import mean_ci, series_difference
from batchlab.study import design, equal_updates_cells


def cells_table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for col in ("stopped_step", "stopped_epoch", "steps_to_target", "samples_to_target"):
        df[col] = pd.array(df[col], dtype="Int64")
    for col in ("seconds_to_target", "steps_to_acc", "samples_to_acc", "seconds_to_acc"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df.sort_values(CELL_KEYS).reset_index(drop=True)


def roles_columns(cells: pd.DataFrame, config: dict, chosen: dict | None = None) -> pd.DataFrame:
    """Per row of cells: the cell's primary role (group, variant) in the study's design and
    whether it is a cell of the (batch size, lr) grid (in_grid), from batchlab.study; `chosen`:
    the lrs the checkpoint picked for the equal-updates runs."""
    by_name = {c.name(): c for c in design(config) + equal_updates_cells(config, chosen or {})}
    seeds = set(config["grid"]["seeds"])
    out = pd.DataFrame(index=cells.index)
    out["group"] = cells["cell"].map(lambda n: by_name[n].group if n in by_name else "none")
    out["variant"] = cells["cell"].map(lambda n: by_name[n].variant if n in by_name else "")
    out["in_grid"] = cells["cell"].map(lambda n: n in by_name and by_name[n].in_group("grid")) & cells[
        "seed"
    ].isin(seeds)
    return out


# the measures given 95% intervals over seeds, with the range each can take
CI_COLUMNS = {
    "final_val_acc": (0.0, 1.0),
    "final_test_acc": (0.0, 1.0),
    "oscillation": (0.0, math.inf),
    "model_oscillation": (0.0, math.inf),
    "epoch_seconds": (0.0, math.inf),
    "final_sharpness": None,
    "generalization_gap": (-1.0, 1.0),
}


def by_setting(cells: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per (batch size, lr) of the grid, with the number of seeds and of failed
    seeds, and 95% intervals (columns *_lo, *_hi) of the main measures."""
    cells = grid_cells(cells)
    numeric = [
        "final_val_acc",
        "final_test_acc",
        "final_train_acc",
        "final_test_loss",
        "oscillation",
        "model_oscillation",
        "epoch_seconds",
        "samples_per_s",
        "steps_to_target",
        "seconds_to_target",
    ]
    grouped = cells.groupby(["batch_size", "lr"], sort=True)
    out = grouped[numeric].agg(lambda s: pd.to_numeric(s, errors="coerce").astype(float).mean())
    out["seeds"] = grouped.size()
    out["diverged"] = grouped["status"].agg(lambda s: int((s == "diverged").sum()))
    out["collapsed"] = grouped["status"].agg(lambda s: int((s == "collapsed").sum()))
    if "failed_to_learn" in cells:
        out["failed_to_learn"] = grouped["failed_to_learn"].agg(lambda s: int(s.astype(bool).sum()))
    out["first_stop_step"] = grouped["stopped_step"].min()
    out["first_stop_epoch"] = grouped["stopped_epoch"].min()
    for col, bounds in CI_COLUMNS.items():
        ci = grouped[col].agg(lambda s, b=bounds: mean_ci(pd.to_numeric(s, errors="coerce").astype(float), b))
        out[f"{col}_lo"] = ci.map(lambda c: c["lo"])
        out[f"{col}_hi"] = ci.map(lambda c: c["hi"])
    return out.reset_index()


def steps_to_target_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Per batch size of the grid, the lr that reaches the target validation accuracy in the fewest
    steps (mean over seeds; only lrs where every seed reached it), with 95% intervals of its
    steps, samples and seconds. Batch sizes where no lr reached it get reached=False."""
    grid = grid_cells(cells)
    rows = []
    for b, at_b in grid.groupby("batch_size", sort=True):
        best = None
        for lr, at in at_b.groupby("lr"):
            if at["steps_to_acc"].notna().all():
                mean = float(at["steps_to_acc"].mean())
                if best is None or mean < best[1]:
                    best = (lr, mean, at)
        row = {"batch_size": int(b), "reached": best is not None}
        if best is not None:
            lr, _, at = best
            row["lr"] = float(lr)
            row["seeds"] = int(len(at))
            for what in ("steps", "samples", "seconds"):
                ci = mean_ci(at[f"{what}_to_acc"], (0.0, math.inf))
                row[what], row[f"{what}_lo"], row[f"{what}_hi"] = ci["mean"], ci["lo"], ci["hi"]
        else:
            row["best_acc"] = float(at_b["best_val_acc"].max())
        rows.append(row)
    cols = ["batch_size", "reached", "lr", "seeds", "best_acc"] + [
        f"{w}{s}" for w in ("steps", "samples", "seconds") for s in ("", "_lo", "_hi")
    ]
    return pd.DataFrame(rows).reindex(columns=cols)


def best_learning_rates(settings: pd.DataFrame) -> pd.DataFrame:
    """The lr with the best mean final validation accuracy at each batch size (selection never
    reads the test set), its test accuracy beside it; flags the edge of the batch size's own
    window of lrs."""
    rows = []
    for b, group in settings.groupby("batch_size", sort=True):
        lrs = sorted(group["lr"].unique())  # this batch size's window
        failed = (group["diverged"] > 0) | (group["collapsed"] > 0) | (group.get("failed_to_learn", 0) > 0)
        lr = select_lr(zip(group["lr"], group["final_val_acc"], failed, strict=True))
        best = group[group["lr"] == lr].iloc[0]
        edge = None
        if best["lr"] == lrs[0] and len(lrs) > 1:
            edge = "lowest"
        elif best["lr"] == lrs[-1] and len(lrs) > 1:
            edge = "highest"
        rows.append(
            {
                "batch_size": int(b),
                "best_lr": float(best["lr"]),
                "best_val_acc": float(best["final_val_acc"]),
                "best_test_acc": float(best["final_test_acc"]),
                "at_grid_edge": edge,
            }
        )
    return pd.DataFrame(rows)


def solution2_equivalence(losses: dict, pairs: list[tuple[str, str, float]]) -> list[dict]:
    """For each (Solution 2 cell, plain cell at k x lr) pair and each seed both have, how far
    their per-iteration losses agree. losses: {(cell, seed): losses}."""
    out = []
    for split_cell, plain_cell, momentum in pairs:
        for seed in sorted({s for c, s in losses if c == split_cell}):
            if (plain_cell, seed) in losses:
                diff = series_difference(losses[split_cell, seed], losses[plain_cell, seed])
                out.append({"solution2": split_cell, "plain": plain_cell, "seed": seed, "momentum": momentum, **diff})
    return out


def headline_metrics(cells: pd.DataFrame, best: pd.DataFrame, critical: dict | None = None) -> dict:
    """The numbers DVC tracks (metrics.json): flat, JSON-safe."""
    out: dict = {
        "cells": int(cells["cell"].nunique()),
        "seed_runs": int(len(cells)),
        "diverged_runs": int((cells["status"] == "diverged").sum()),
        "collapsed_runs": int((cells["status"] == "collapsed").sum()),
        "selection_set": str(cells["selection_set"].iloc[0]) if len(cells) else "validation",
    }
    if critical is not None:
        out["critical_batch_fit"] = _json_num(critical["b_crit"])
    for row in best.itertuples():
        out[f"bs{row.batch_size}"] = {
            "best_lr": row.best_lr,
            "val_acc": _json_num(row.best_val_acc),
            "test_acc": _json_num(row.best_test_acc),
        }
    return out


def _json_num(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
