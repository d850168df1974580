"""The gradient's direction at shared weights (the table batchlab.train.shared_weights writes):
per checkpoint, the cosine of two independent mini-batch gradients against the batch size, and
B_simple from the same gradients, which predicts it: cos ≈ 1 / (1 + B_simple / b) (two draws of
G + noise with tr(Sigma) / b each). The gradient-direction verdict reads it at the end of
training."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from batchlab.analysis.claims_training import PARALLEL, ci_words
from batchlab.analysis.family import primary
from batchlab.analysis.fits import noise_components
from batchlab.analysis.stats import mean_ci, paired_difference

NOISE_SMALL = 64  # B_simple from |g_b|^2 at the smallest measured b at or above this, and the largest
N_BOOT = 400


def noise_pair(sizes) -> tuple[int, int] | None:
    """(b_small, b_big) of the B_simple estimate: the smallest measured batch size at or above
    NOISE_SMALL (each of its gradients already averages many per-sample ones), and the largest."""
    sizes = sorted(int(b) for b in sizes)
    small = next((b for b in sizes if b >= NOISE_SMALL), None)
    return (small, sizes[-1]) if small is not None and small < sizes[-1] else None


def b_simple(at: pd.DataFrame, seeds=None) -> float:
    """B_simple = tr(Sigma) / |G|^2 of one checkpoint's rows, each averaged over the seeds
    (McCandlish et al. average numerator and denominator apart); NaN where |G|^2 <= 0."""
    pair = noise_pair(at["batch_size"].unique())
    if pair is None:
        return math.nan
    wide = at.pivot_table(index="seed", columns="batch_size", values="g_sq")
    if seeds is not None:
        wide = wide.loc[list(seeds)]
    g2, trace = noise_components(wide[pair[0]], wide[pair[1]], pair[0], pair[1])
    g2, trace = float(np.mean(g2)), float(np.mean(trace))
    return trace / g2 if g2 > 0 else math.nan


def b_simple_ci(at: pd.DataFrame) -> dict:
    """B_simple of a checkpoint with a 95% interval from resampling its seeds."""
    seeds = sorted(at["seed"].unique())
    value = b_simple(at)
    rng = np.random.default_rng(0)
    boots = [b_simple(at, rng.choice(seeds, size=len(seeds))) for _ in range(N_BOOT)] if len(seeds) > 1 else []
    boots = [v for v in boots if math.isfinite(v)]
    lo, hi = (float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))) if len(boots) >= N_BOOT // 2 else (math.nan, math.nan)
    return {"value": value, "lo": lo, "hi": hi}


def summary(table: pd.DataFrame) -> list[dict]:
    """Per checkpoint (epoch) and batch size: the cosine's mean over seeds with its 95% interval,
    and the cosine 1 / (1 + B_simple / b) predicted from the checkpoint's B_simple."""
    rows = []
    for (epoch, step), at in table.groupby(["epoch", "step"], sort=True):
        noise = b_simple_ci(at)
        for b, cell in at.groupby("batch_size", sort=True):
            ci = mean_ci(cell["cosine"], (-1.0, 1.0))
            predicted = 1.0 / (1.0 + noise["value"] / b) if math.isfinite(noise["value"]) else math.nan
            rows.append({"epoch": int(epoch), "step": int(step), "batch_size": int(b), "pairs": int(cell["pairs"].max()),
                         **{f"cosine_{k}": ci[k] for k in ("mean", "lo", "hi")}, "seeds": ci["n"], "predicted": predicted,
                         "b_simple": noise["value"], "b_simple_lo": noise["lo"], "b_simple_hi": noise["hi"]})  # fmt: skip
    return rows


def direction_verdict(table: pd.DataFrame, large: int) -> dict | None:
    """With a large batch the gradient direction barely changes: at the end of the reference run,
    each seed's cosine at batch `large` (the grid's largest) against PARALLEL, one-sided."""
    end = table[table["epoch"] == table["epoch"].max()]
    at = end[end["batch_size"] == large]
    if at.empty:
        return None
    cos = {int(s): float(v) for s, v in zip(at["seed"], at["cosine"], strict=True)}
    above = paired_difference(cos, {s: PARALLEL for s in cos})
    rows = summary(table)
    last = [r for r in rows if r["epoch"] == int(end["epoch"].iloc[0])]
    first = next((r["batch_size"] for r in last if r["seeds"] >= 2 and r["cosine_lo"] >= PARALLEL), None)
    listing = "; ".join(f"batch {r['batch_size']:,}: {r['cosine_mean']:.3f} (predicted {r['predicted']:.3f})" for r in last)
    ci = mean_ci(list(cos.values()), (-1.0, 1.0))
    where = f"they are nearly parallel (cosine ≥ {PARALLEL}) from batch {first:,} up" if first else f"no measured batch size reaches cosine {PARALLEL}"
    noise = last[0]["b_simple"] if last else math.nan
    return {
        "key": "gradient",
        "claim": "With a large batch the gradient direction barely changes from one iteration to the next.",
        "verdict": "inconclusive",
        "headline": f"cosine {ci_words(ci, '.2f')} at batch {large:,}, at shared weights",
        "first_parallel_batch": first,
        "primary": primary(above, +1, 0.0),
        "evidence": f"Cosine between the gradients of two independent mini-batches drawn at the same weights, the end of"
        f" the reference run (mean over {ci['n']} seeds; predicted: 1 / (1 + B_simple / b) with B_simple = {noise:.0f}"
        f" from the same gradients): {listing}. {where.capitalize()}.",
        "test": f"One-sided, per seed: the cosine at batch {large:,} above {PARALLEL} (supported) or below it (not"
        " supported), at the end of one reference run's training (its checkpoints earlier in training are shown"
        " beside it). It measures the direction two consecutive mini-batches would take from the same weights; it does"
        " not follow the weights along a step.",
    }
