"""Turn every cell's logs into tidy tables and the study's headline numbers (pandas)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

CELL_KEYS = ["batch_size", "lr", "seed"]


def smoothing_window(batch_size: int, smooth_samples: int) -> int:
    """Iterations that together hold smooth_samples samples (at least one)."""
    return max(1, math.ceil(smooth_samples / batch_size))


def trailing_mean(losses: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` losses at every iteration (fewer at the start)."""
    x = np.asarray(losses, dtype=np.float64)
    if x.size == 0:
        return x
    csum = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.arange(1, x.size + 1)
    lo = np.maximum(0, idx - window)
    return (csum[idx] - csum[lo]) / (idx - lo)


def loss_oscillation(losses: np.ndarray, iterations_per_epoch: int) -> float:
    """Mean |loss(t) - loss(t-1)| over the last epoch: how much the loss jumps per iteration.

    NaN when the last epoch holds fewer than two finite losses (a cell that diverged at once).
    """
    tail = np.asarray(losses, dtype=np.float64)[-iterations_per_epoch:]
    diffs = np.abs(np.diff(tail))
    diffs = diffs[np.isfinite(diffs)]
    return float(diffs.mean()) if diffs.size else float("nan")


def first_crossing(smoothed: np.ndarray, target: float) -> int | None:
    """1-based iteration at which the smoothed loss first reaches target, else None."""
    hits = np.flatnonzero(np.asarray(smoothed) <= target)
    return int(hits[0]) + 1 if hits.size else None


def summarize_cell(
    metrics: dict, epochs: pd.DataFrame, losses: np.ndarray, smooth_samples: int, loss_target: float
) -> dict:
    """One summary row per cell: speed, oscillation, convergence, outcome."""
    b = int(metrics["batch_size"])
    ipe = int(metrics["iterations_per_epoch"])
    smoothed = trailing_mean(losses, smoothing_window(b, smooth_samples))
    to_target = first_crossing(smoothed, loss_target)
    ms_per_step = float(epochs["ms_per_step"].mean()) if len(epochs) else float("nan")
    row = {
        "cell": metrics["cell"],
        "batch_size": b,
        "lr": float(metrics["lr"]),
        "seed": int(metrics["seed"]),
        "status": metrics["status"],
        "stopped_step": metrics.get("stopped_step"),
        "stopped_epoch": (math.ceil(metrics["stopped_step"] / ipe) if metrics.get("stopped_step") else None),
        "iterations_per_epoch": ipe,
        "steps": int(len(losses)),
        "epochs_completed": int(len(epochs)),
        "epoch_seconds": float(epochs["seconds"].mean()) if len(epochs) else float("nan"),
        "samples_per_s": float(epochs["samples_per_s"].mean()) if len(epochs) else float("nan"),
        "ms_per_step": ms_per_step,
        # a diverged cell's last epoch is the explosion itself, not oscillation
        "oscillation": loss_oscillation(losses, ipe) if metrics["status"] != "diverged" else float("nan"),
        "final_train_loss": _num(metrics.get("final_train_loss")),
        "final_train_acc": _num(metrics.get("final_train_acc")),
        "final_test_loss": _num(metrics.get("final_test_loss")),
        "final_test_acc": _num(metrics.get("final_test_acc")),
        "best_test_acc": float(epochs["test_acc"].max()) if len(epochs) else float("nan"),
        "steps_to_target": to_target,
        "samples_to_target": to_target * b if to_target else None,
        "seconds_to_target": to_target * ms_per_step / 1000.0 if to_target else None,
        "device": metrics.get("device"),
    }
    return row


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def cells_table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for col in ("stopped_step", "stopped_epoch", "steps_to_target", "samples_to_target"):
        df[col] = pd.array(df[col], dtype="Int64")
    df["seconds_to_target"] = pd.to_numeric(df["seconds_to_target"], errors="coerce").astype(float)
    return df.sort_values(CELL_KEYS).reset_index(drop=True)


def by_setting(cells: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per (batch size, lr), with the number of seeds and of failed seeds."""
    numeric = [
        "final_test_acc",
        "final_train_acc",
        "final_test_loss",
        "oscillation",
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
    out["first_stop_step"] = grouped["stopped_step"].min()
    out["first_stop_epoch"] = grouped["stopped_epoch"].min()
    return out.reset_index()


def best_learning_rates(settings: pd.DataFrame) -> pd.DataFrame:
    """The lr with the best mean final test accuracy at each batch size; flags the grid's edge."""
    lrs = sorted(settings["lr"].unique())
    rows = []
    for b, group in settings.groupby("batch_size", sort=True):
        ok = group[(group["diverged"] == 0) & (group["collapsed"] == 0)]
        pool = ok if len(ok) else group
        best = pool.loc[pool["final_test_acc"].fillna(-1).idxmax()]
        edge = None
        if best["lr"] == lrs[0] and len(lrs) > 1:
            edge = "lowest"
        elif best["lr"] == lrs[-1] and len(lrs) > 1:
            edge = "highest"
        rows.append(
            {
                "batch_size": int(b),
                "best_lr": float(best["lr"]),
                "best_test_acc": float(best["final_test_acc"]),
                "at_grid_edge": edge,
            }
        )
    return pd.DataFrame(rows)


def curve_points(n: int, max_points: int) -> np.ndarray:
    """Up to max_points iteration indices, log-spaced (the charts use a log iteration axis)."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.geomspace(1, n, max_points).astype(np.int64) - 1)


def downsample_curve(
    losses: np.ndarray, batch_size: int, ipe: int, smooth_samples: int, max_points: int
) -> pd.DataFrame:
    """Raw and smoothed loss at up to max_points iterations, for plotting."""
    smoothed = trailing_mean(losses, smoothing_window(batch_size, smooth_samples))
    idx = curve_points(len(losses), max_points)
    step = idx + 1
    return pd.DataFrame(
        {
            "step": step,
            "epoch": step / ipe,
            "samples": step * batch_size,
            "loss": np.asarray(losses, dtype=np.float64)[idx],
            "loss_smooth": smoothed[idx],
        }
    )


def headline_metrics(cells: pd.DataFrame, best: pd.DataFrame) -> dict:
    """The numbers DVC tracks (metrics.json): flat, JSON-safe."""
    out: dict = {
        "cells": int(len(cells)),
        "diverged_cells": int((cells["status"] == "diverged").sum()),
        "collapsed_cells": int((cells["status"] == "collapsed").sum()),
        "best_test_acc": _json_num(cells["final_test_acc"].max()),
    }
    for row in best.itertuples():
        out[f"bs{row.batch_size}"] = {
            "best_lr": row.best_lr,
            "best_test_acc": _json_num(row.best_test_acc),
        }
    return out


def _json_num(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
