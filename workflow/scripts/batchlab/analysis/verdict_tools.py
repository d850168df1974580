"""What the verdict rules share: the margins below which an effect is too small to matter, and
each setting's values seed by seed (batchlab.analysis.verdicts lists the rules)."""

from __future__ import annotations

import math

import pandas as pd

from batchlab.analysis.rows import failed_seeds, failed_settings, rows_of
from batchlab.analysis.signflip import p_greater, p_less
from batchlab.analysis.stages import column, matched_level
from batchlab.analysis.stats import Paired, paired_difference

# effects smaller than these are too small to matter: a tight interval inside them says "no"
ACC_MARGIN = 0.002  # accuracy: 0.2 points


TIME_MARGIN = math.log(1.1)  # time to the target, compared as a log ratio: 10%




OSC_MARGIN = math.log(1.1)  # oscillation, compared as a log ratio: 10%


def per_seed(cells: pd.DataFrame, b: int, lr: float, col: str, recipe: str | None = None) -> dict:
    """{seed: value} of one setting: grid cells (recipe None), or the cells of one recipe."""
    return _values(rows_of(cells, b, lr, recipe), col)


def points(d) -> str:
    """A paired accuracy difference (a Paired or its dict) in points with its 95% interval, or
    the reason it has none."""
    mean, lo, hi, n = (d[k] for k in ("mean", "lo", "hi", "n")) if isinstance(d, dict) else (d.mean, d.lo, d.hi, d.n)
    if not math.isfinite(mean):
        return "no paired seeds"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{100 * mean:+.2f} points (no interval from {n} seed(s))"
    return f"{100 * mean:+.2f} points [{100 * lo:+.2f}, {100 * hi:+.2f}]"


def pct(d: Paired) -> str:
    return f"{points(d)} over {d.n} paired seeds"


def best_lr(best: pd.DataFrame, b: int) -> float | None:
    row = best[best["batch_size"] == b]
    return float(row["best_lr"].iloc[0]) if len(row) else None


def finished_per_seed(cells: pd.DataFrame, b: int, lr: float, col: str, recipe: str | None = None) -> dict:
    """per_seed, without the seeds that diverged, collapsed or failed to learn."""
    at = rows_of(cells, b, lr, recipe)
    return _values(at[~failed_seeds(at)], col)


def _values(at: pd.DataFrame, col: str) -> dict:
    return {int(s): float(v) for s, v in zip(at["seed"], pd.to_numeric(at[col], errors="coerce"), strict=True)}


def log_per_seed(cells: pd.DataFrame, b: int, lr: float, col: str, recipe: str | None = None) -> dict:
    return {s: math.log(v) for s, v in per_seed(cells, b, lr, col, recipe).items() if math.isfinite(v) and v > 0}


def equal_noise_pair(cells: pd.DataFrame, small: int, large: int, near: float) -> tuple[float, float] | None:
    """(lr at the small batch, lr at the large) with equal lr / b in both windows, among settings
    in which every seed trained (a diverged run's loss says nothing about oscillation), the one
    whose small-batch lr is nearest `near`; None when there is no such pair."""
    bad = failed_settings(cells)

    def trained(b):
        return {lr for lr in cells.loc[cells["batch_size"] == b, "lr"].unique() if (b, lr) not in bad}

    lrs_s, lrs_l = sorted(trained(small)), trained(large)
    pairs = [(a, c) for a in lrs_s for c in lrs_l if math.isclose(a / small, c / large, rel_tol=1e-6)]
    return min(pairs, key=lambda p: abs(math.log(p[0] / near))) if pairs else None


def matched_stage(cells: pd.DataFrame, a: tuple, b: tuple, kind: str, expected: int, log: bool = False) -> dict | None:
    """Setting a (batch size, lr, recipe or None) against setting b at matched stage: their
    `kind` (batchlab.analysis.stages: osc or val_acc) at the lowest tracked training loss both
    reach, paired by seed (as log ratios where log), with the one-sided sign-flip p-value of the
    direction `expected` (+1: a above b). None where they share no such level."""
    level = matched_level(rows_of(cells, *a), rows_of(cells, *b), kind)
    if level is None:
        return None
    col, values = column(kind, level), (log_per_seed if log else per_seed)
    d = paired_difference(values(cells, a[0], a[1], col, a[2]), values(cells, b[0], b[1], col, b[2]))
    p = p_greater(d.diffs) if expected > 0 else p_less(d.diffs)
    return {"level": level, **d.as_dict(), "p": p}
