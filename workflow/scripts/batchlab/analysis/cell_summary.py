"""One seed of one cell, summarized: speed, oscillation (the post's and the model's), how
fast and how far it converged, its outcome, the noise scale and the curvature: one row of
cells.parquet (batchlab.analysis.aggregate builds the study's tables from these rows)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from batchlab.analysis.fits import noise_components, noise_scale
from batchlab.analysis.selection import seed_failed
from batchlab.analysis.stages import at_levels
from batchlab.analysis.stages import oscillation as stage_oscillation


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


def model_oscillation(track, after_step: int = -1) -> float:
    """How much the model's loss jumps between evaluations of the fixed training subset (every
    track_every_samples samples) after step `after_step` (the last epoch's start): the mean
    |Δ loss| about the mean Δ (the trend). Unlike the per-iteration loss it carries no mini-batch
    sampling noise, so it can come out either way between batch sizes. NaN with fewer than three
    evaluations."""
    return stage_oscillation([v for step, v in track or [] if step > after_step])


def first_crossing(smoothed: np.ndarray, target: float) -> int | None:
    """1-based iteration at which the smoothed loss first reaches target, else None."""
    hits = np.flatnonzero(np.asarray(smoothed) <= target)
    return int(hits[0]) + 1 if hits.size else None


def first_reach(steps, values, target: float) -> float | None:
    """The (fractional) step at which a measured series first reaches target, linearly
    interpolated between the probe before and the probe at the crossing; the first probe's
    step when it already reaches it; None when it never does."""
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    hits = np.flatnonzero(np.isfinite(v) & (v >= target))
    if hits.size == 0:
        return None
    i = int(hits[0])
    if i == 0 or not np.isfinite(v[i - 1]) or v[i] == v[i - 1]:
        return float(s[i])
    frac = (target - v[i - 1]) / (v[i] - v[i - 1])
    return float(s[i - 1] + frac * (s[i] - s[i - 1]))


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
        "optimizer": metrics.get("optimizer", "sgd"),
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
        "model_oscillation": model_oscillation(metrics.get("track"), (int(metrics.get("epochs", 1)) - 1) * ipe),
        **at_levels(metrics.get("track"), probes),
        "failed_to_learn": metrics["status"] == "ok" and seed_failed("ok", _num(metrics.get("final_val_acc"))),
        **final_evaluations(metrics, epochs),
        **to_targets(losses, probes, b, ms_per_step, smooth_samples, loss_target, target_acc),
        **noise_and_curvature(metrics, probes, noise_window, target_acc),
        "generalization_gap": _num(metrics.get("final_train_acc")) - _num(metrics.get("final_test_acc")),
        "measure_share": _num(share),
        "device": metrics.get("device"),
        "ensemble_size": metrics.get("ensemble_size"),
        # the training job's, shared by the seeds trained in it (batchlab.train.job.memory_mb)
        "peak_memory_mb": _num(metrics.get("peak_memory_mb")),
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
