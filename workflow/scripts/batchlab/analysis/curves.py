"""Loss curves for drawing: each seed's losses thinned to log-spaced points with their smoothed
value, the 95% bands over seeds, and DVC's plot of the curves at the best lrs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from batchlab.analysis.cell_summary import smoothing_window, trailing_mean
from batchlab.analysis.stats import mean_ci


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


def seed_bands(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% interval over seeds of the smoothed loss at each (batch size, lr, recipe,
    step) that at least two seeds reached: the bands of the report's loss charts."""
    rows = []
    keys = [k for k in ("batch_size", "lr", "recipe", "step") if k in curves]
    for key, g in curves.groupby(keys, sort=False):
        if len(g) < 2:
            continue
        ci = mean_ci(g["loss_smooth"], (0.0, math.inf))
        if math.isfinite(ci["lo"]):
            rows.append({**dict(zip(keys, key, strict=True)), "epoch": float(g["epoch"].iloc[0]), "band_lo": ci["lo"], "band_hi": ci["hi"]})
    columns = [*keys, "epoch", "band_lo", "band_hi"]
    return pd.DataFrame(rows, columns=columns)


def loss_curves_at_best(curves: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """DVC's plot: the smoothed loss against epoch at each batch size's best lr (long format),
    grid cells only (a warm-up cell can share a batch size and lr with one)."""
    at_best = curves[curves["in_grid"]].merge(best[["batch_size", "best_lr"]].rename(columns={"best_lr": "lr"}))
    return at_best[["batch_size", "lr", "seed", "epoch", "loss_smooth"]]
