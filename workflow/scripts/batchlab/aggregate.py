"""Turn every cell's logs into tidy tables and the study's headline numbers (pandas)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from batchlab.analysis import (
    first_reach,
    fit_critical_batch,
    mean_ci,
    noise_components,
    noise_scale,
    scaling_regimes,
    series_difference,
)
from batchlab.selection import best_lr as select_lr
from batchlab.selection import seed_failed
from batchlab.stats import bootstrap_interval
from batchlab.study import design, equal_updates_cells

CELL_KEYS = ["batch_size", "lr", "seed", "recipe"]


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


def model_oscillation(track) -> float:
    """How much the model's loss jumps between evaluations of the fixed training subset (every
    track_every_samples samples through the last epoch): the mean |Δ loss| about the mean Δ (the
    trend). Unlike the per-iteration loss it carries no mini-batch sampling noise, so it can come
    out either way between batch sizes. NaN with fewer than three evaluations."""
    loss = np.asarray([v for _, v in track or []], dtype=np.float64)
    d = np.diff(loss)
    d = d[np.isfinite(d)]
    if d.size < 2:
        return float("nan")
    return float(np.mean(np.abs(d - d.mean())))


def first_crossing(smoothed: np.ndarray, target: float) -> int | None:
    """1-based iteration at which the smoothed loss first reaches target, else None."""
    hits = np.flatnonzero(np.asarray(smoothed) <= target)
    return int(hits[0]) + 1 if hits.size else None


def noise_table(probes: pd.DataFrame, window: int) -> pd.DataFrame:
    """A cell's probes with the smoothed |G|^2, tr(Sigma) and B_simple at each."""
    out = probes.copy()
    if out.empty:
        return out.assign(g2=[], trace=[], b_simple=[])
    out["g2"], out["trace"], out["b_simple"] = noise_scale(
        out["g_small_sq"], out["g_big_sq"], out["b_small"], out["b_big"], window
    )
    return out


def summarize_cell(
    metrics: dict,
    epochs: pd.DataFrame,
    losses: np.ndarray,
    smooth_samples: int,
    loss_target: float,
    probes: pd.DataFrame | None = None,
    target_acc: float = 0.95,
    noise_window: int = 4,
) -> dict:
    """One summary row per cell: speed, oscillation, convergence, outcome, measurements."""
    b = int(metrics["batch_size"])
    ipe = int(metrics["iterations_per_epoch"])
    ms_per_step = float(epochs["ms_per_step"].mean()) if len(epochs) else float("nan")
    probes = probes if probes is not None else pd.DataFrame(columns=["step", "val_acc"])
    share = (metrics.get("measure_seconds") or {}).get("noise_and_sharpness_share")
    return {
        "cell": metrics["cell"],
        "batch_size": b,
        "lr": float(metrics["lr"]),
        "seed": int(metrics["seed"]),
        "recipe": metrics.get("recipe", ""),
        "warmup_epochs": float(metrics.get("warmup_epochs", 0.0)),
        "momentum": float(metrics.get("momentum", 0.0)),
        "splits": int(metrics.get("splits", 1)),
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
        "model_oscillation": model_oscillation(metrics.get("track")),
        "failed_to_learn": metrics["status"] == "ok" and seed_failed("ok", _num(metrics.get("final_val_acc"))),
        **final_evaluations(metrics, epochs),
        **to_targets(losses, probes, b, ms_per_step, smooth_samples, loss_target, target_acc),
        **noise_and_curvature(metrics, probes, noise_window, target_acc),
        "generalization_gap": _num(metrics.get("final_train_acc")) - _num(metrics.get("final_test_acc")),
        "measure_share": _num(share),
        "device": metrics.get("device"),
        "ensemble_size": metrics.get("ensemble_size"),
    }


def final_evaluations(metrics: dict, epochs: pd.DataFrame) -> dict:
    """The final model's losses and accuracies on each set, and which set chose settings."""
    out = {f"final_{k}": _num(metrics.get(f"final_{k}")) for k in ("train_loss", "train_acc", "val_loss", "val_acc")}
    out["best_val_acc"] = float(epochs["val_acc"].max()) if len(epochs) else float("nan")
    out |= {f"final_{k}": _num(metrics.get(f"final_{k}")) for k in ("test_loss", "test_acc")}
    out["selection_set"] = metrics.get("selection_set", "test")
    return out


def to_targets(losses, probes, b, ms_per_step, smooth_samples, loss_target, target_acc) -> dict:
    """Iterations, samples and seconds to the smoothed-loss target and to the accuracy target."""
    to_target = first_crossing(trailing_mean(losses, smoothing_window(b, smooth_samples)), loss_target)
    to_acc = first_reach(probes["step"], probes["val_acc"], target_acc) if len(probes) else None
    return {
        "steps_to_target": to_target,
        "samples_to_target": to_target * b if to_target else None,
        "seconds_to_target": to_target * ms_per_step / 1000.0 if to_target else None,
        "steps_to_acc": to_acc,
        "samples_to_acc": to_acc * b if to_acc is not None else None,
        "seconds_to_acc": to_acc * ms_per_step / 1000.0 if to_acc is not None else None,
    }


def noise_and_curvature(metrics: dict, probes: pd.DataFrame, noise_window: int, target_acc: float = math.nan) -> dict:
    """The noise scale at the end and where the target accuracy is reached, the gradient
    cosine, and the final sharpness with its convergence and its ratio to plain SGD's 2 / lr
    stability limit (above 1: the quadratic model of the loss would diverge)."""
    if "b_simple" in probes:  # already smoothed by noise_table
        noise = probes
    else:
        noise = noise_table(probes, noise_window) if "g_small_sq" in probes else pd.DataFrame()
    b_simple = noise["b_simple"].dropna() if len(noise) else pd.Series(dtype=float)
    cos = pd.to_numeric(probes["grad_cos"], errors="coerce").dropna() if "grad_cos" in probes else pd.Series(dtype=float)
    sharpness = _num(metrics.get("final_sharpness"))
    return {
        "b_simple_end": float(b_simple.iloc[-1]) if len(b_simple) else float("nan"),
        "b_simple_at_target": b_simple_at(probes, target_acc),
        "final_sharpness": sharpness,
        "sharpness_change": _num(metrics.get("final_sharpness_change")),
        "sharpness_lr_ratio": sharpness * float(metrics["lr"]) / 2.0,
        "grad_cos": float(cos.mean()) if len(cos) else float("nan"),
        "grad_cos_end": float(cos.iloc[-1]) if len(cos) else float("nan"),
    }


def b_simple_at(probes: pd.DataFrame, target_acc: float) -> float:
    """B_simple at the first probe where validation accuracy reaches target_acc and the noise
    was measured (the trainer measures it there): that probe's own estimate, unsmoothed, since
    the probes before it belong to an earlier stage of training. NaN where never reached."""
    need = {"val_acc", "g_small_sq", "g_big_sq", "b_small", "b_big"}
    if not need <= set(probes.columns) or not math.isfinite(target_acc):
        return float("nan")
    hit = probes[(probes["val_acc"] >= target_acc) & np.isfinite(probes["g_small_sq"].astype(float))]
    if hit.empty:
        return float("nan")
    row = hit.iloc[0]
    g2, trace = noise_components(row["g_small_sq"], row["g_big_sq"], row["b_small"], row["b_big"])
    return float(trace / g2) if g2 > 0 else float("nan")


def _num(value) -> float:
    return float("nan") if value is None else float(value)


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


def grid_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells of the (batch size, lr, seed) grid (column in_grid; else all plain cells)."""
    if "in_grid" in cells:
        return cells[cells["in_grid"].astype(bool)]
    if "recipe" in cells:
        return cells[cells["recipe"].fillna("") == ""]
    return cells


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


def critical_batch(targets: pd.DataFrame, cells: pd.DataFrame | None = None, n_boot: int = 300) -> dict:
    """The S = S_min (1 + B_crit / B) fit over the batch sizes that reached the target, the
    scaling regime of each step up in batch size, and (given the cells) a 95% bootstrap interval
    of B_crit that resamples seeds jointly across batch sizes (seed s of every cell is paired)."""
    reached = targets[targets["reached"].astype(bool)]
    fit = fit_critical_batch(reached["batch_size"], reached["steps"])
    fit["regimes"] = scaling_regimes(list(reached["batch_size"]), list(reached["steps"]))
    fit["b_crit_lo"] = fit["b_crit_hi"] = float("nan")
    if cells is None or not math.isfinite(fit["b_crit"]):
        return fit
    grid = grid_cells(cells)
    per = {
        int(r.batch_size): grid[(grid["batch_size"] == r.batch_size) & (grid["lr"] == r.lr)].set_index("seed")["steps_to_acc"]
        for r in reached.itertuples()
    }
    seeds = sorted(set.intersection(*(set(p.index) for p in per.values())))
    if len(seeds) < 2:
        return fit
    def log_b_crit(pick) -> float:
        bc = fit_critical_batch(list(per), [float(per[b].loc[pick].mean()) for b in per])["b_crit"]
        return math.log(bc) if math.isfinite(bc) else math.nan

    lo, hi = bootstrap_interval(np.asarray(seeds), log_b_crit, n_boot)
    fit["b_crit_lo"], fit["b_crit_hi"] = math.exp(lo), math.exp(hi)
    return fit


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


def loss_curves_at_best(curves: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """DVC's plot: the smoothed loss against epoch at each batch size's best lr (long format),
    grid cells only (a warm-up cell can share a batch size and lr with one)."""
    at_best = curves[curves["in_grid"]].merge(best[["batch_size", "best_lr"]].rename(columns={"best_lr": "lr"}))
    return at_best[["batch_size", "lr", "seed", "epoch", "loss_smooth"]]


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
