"""Every interval and test of the study, as plain functions of numbers.

- the mean and 95% interval over seeds (Student t), and where one more seed is expected;
- the bootstrap interval of a statistic of the seeds (resampled jointly across settings);
- the paired difference of two settings over their shared seeds, and the verdict rules on it;
- rank correlation and the direction of a trend;
- the Solution 2 equivalence check (how far two loss series agree).

Seeds are paired across cells: seed s of every cell starts from the same initial weights and
(for one batch size) sees its data in the same order, and the validation split is one fixed
draw. The difference of two settings is therefore measured seed by seed, and its 95% Student-t
interval is far narrower than two unpaired intervals compared for overlap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

# two-sided 95% quantiles of Student's t, by degrees of freedom
T_975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
    10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
    18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980,
}  # fmt: skip

def t_quantile(df: int) -> float:
    """t_{0.975, df}; between tabulated values the next smaller df (conservative); 1.96 beyond."""
    if df < 1:
        return float("nan")
    keys = [k for k in T_975 if k <= df]
    return T_975[max(keys)] if df <= 120 else 1.96


def mean_ci(values, bounds: tuple[float, float] | None = None) -> dict:
    """Mean and 95% t-interval of the finite values: {'mean','lo','hi','n'}; lo/hi NaN if n < 2.
    bounds: the range the quantity can take (an accuracy lies in [0, 1]); the interval is
    clipped to it."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    mean = float(x.mean())
    if n < 2:
        return {"mean": mean, "lo": float("nan"), "hi": float("nan"), "n": 1}
    half = t_quantile(n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return {"mean": mean, "lo": lo, "hi": hi, "n": n}


def is_finite(value) -> bool:
    """A real, finite number (None, NaN, pandas' NA and infinities are not)."""
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def compare_intervals(a: dict, b: dict) -> int | None:
    """+1 when a's interval lies wholly above b's, -1 wholly below, 0 when they overlap;
    None when either has no interval (fewer than two values)."""
    if not all(is_finite(v) for v in (a["lo"], a["hi"], b["lo"], b["hi"])):
        return None
    if a["lo"] > b["hi"]:
        return 1
    if a["hi"] < b["lo"]:
        return -1
    return 0


def seed_interval(values) -> tuple[float, float]:
    """Where one more seed's value is expected (95% prediction interval of the seeds): the
    t-interval of their mean (mean_ci) widened by sqrt(n + 1), i.e. mean +- t s
    sqrt(1 + 1/n). A single seed gives its value."""
    ci = mean_ci(values)
    if ci["n"] < 2:
        return ci["mean"], ci["mean"]
    half = (ci["hi"] - ci["mean"]) * math.sqrt(ci["n"] + 1)
    return ci["mean"] - half, ci["mean"] + half


def bootstrap_interval(samples, statistic, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of statistic(samples) from resampling the rows of `samples` (the seeds; each
    resample draws len(samples) rows with replacement): the estimate ± t(n-1) · sqrt(n/(n-1)) ·
    SD of the replicates, the bootstrap's standard error with its small-sample bias corrected and
    Student's t in place of 1.96. A percentile interval over 5 or 6 seeds covers well under 95%
    (tests/unit/test_optimum.py shows it). Replicates that are not finite are left out."""
    x = np.asarray(samples)
    n = len(x)
    if n < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    reps = np.asarray([statistic(x[rng.integers(0, n, n)]) for _ in range(n_boot)], dtype=float)
    reps = reps[np.isfinite(reps)]
    if reps.size < 2:
        return math.nan, math.nan
    estimate = float(statistic(x))
    half = t_quantile(n - 1) * math.sqrt(n / (n - 1)) * float(reps.std(ddof=1))
    return estimate - half, estimate + half


# ----------------------------------------------------------------------------- paired comparisons


# below this many shared seeds every seed-based verdict is inconclusive: an interval from two
# seeds has t = 12.7 and from identical seeds zero width
MIN_SEEDS = 3


@dataclass(frozen=True)
class Paired:
    """The mean difference a - b over the seeds both have, with its 95% t-interval."""

    mean: float
    lo: float
    hi: float
    n: int
    seeds: tuple[int, ...]
    diffs: tuple[float, ...] = ()  # a - b seed by seed, in the order of seeds

    def sign(self) -> int | None:
        """+1: a is higher (the interval lies above 0); -1: lower; 0: the interval holds 0;
        None: fewer than MIN_SEEDS shared seeds."""
        if self.n < MIN_SEEDS:
            return None
        if self.lo > 0:
            return 1
        if self.hi < 0:
            return -1
        return 0

    def as_dict(self) -> dict:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi, "n": self.n, "seeds": list(self.seeds)}


def paired_difference(a: Mapping[int, float], b: Mapping[int, float]) -> Paired:
    """a and b map seed -> value (one setting each); seeds missing or not finite in either are
    left out."""
    shared = tuple(sorted(s for s in a if s in b and is_finite(a[s]) and is_finite(b[s])))
    d = np.asarray([float(a[s]) - float(b[s]) for s in shared], dtype=float)
    n = int(d.size)
    if n == 0:
        return Paired(math.nan, math.nan, math.nan, 0, shared)
    mean = float(d.mean())
    if n < 2:
        return Paired(mean, math.nan, math.nan, n, shared, tuple(d.tolist()))
    half = t_quantile(n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
    return Paired(mean, mean - half, mean + half, n, shared, tuple(d.tolist()))


def decide(diff: Paired, expected: int, margin: float) -> tuple[str, str]:
    """The verdict on a claim that predicts the sign `expected` (+1 or -1) of a paired
    difference, and why, in words:

    - not supported: the interval lies wholly inside (-margin, margin), an effect too small to
      matter (the claim predicts one of at least `margin`), or on the other side of 0;
    - supported: it lies on the predicted side of 0 and reaches beyond the margin;
    - inconclusive: fewer than MIN_SEEDS shared seeds, or the interval holds 0 and reaches
      beyond the margin (more seeds would decide).
    """
    sign = diff.sign()
    if sign is None:
        return "inconclusive", f"only {diff.n} shared seed(s); a verdict needs at least {MIN_SEEDS}"
    if -margin < diff.lo and diff.hi < margin:
        return "not supported", f"the 95% interval lies within ±{margin:g}: no effect of that size"
    if sign == expected:
        return "supported", "the 95% interval of the paired difference excludes 0 on the predicted side"
    if sign == -expected:
        return "not supported", "the 95% interval of the paired difference excludes 0 on the other side"
    return "inconclusive", f"the 95% interval holds 0 and reaches beyond ±{margin:g}"


def decide_same(diff: Paired, margin: float) -> tuple[str, str]:
    """The verdict on a claim of *no* difference (two settings alike within `margin`), and why:
    supported when the interval lies within ±margin, not supported when it excludes 0 beyond the
    margin, else inconclusive (also with fewer than MIN_SEEDS seeds or no interval)."""
    if diff.n < MIN_SEEDS or not (math.isfinite(diff.lo) and math.isfinite(diff.hi)):
        return "inconclusive", "the difference has no interval (too few batch sizes inside their windows, or seeds)"
    if -margin < diff.lo and diff.hi < margin:
        return "supported", f"the 95% interval lies within ±{margin:g}: the same rule"
    if diff.lo > margin or diff.hi < -margin:
        return "not supported", f"the 95% interval excludes 0 beyond ±{margin:g}"
    return "inconclusive", f"the 95% interval reaches beyond ±{margin:g} but does not exclude a difference of that size"


# ----------------------------------------------------------------------------- trends


def spearman(x, y) -> float:
    """Spearman rank correlation (NaN with fewer than three points or no spread)."""
    x, y = pd.Series(list(x), dtype=float), pd.Series(list(y), dtype=float)
    keep = x.notna() & y.notna()
    if keep.sum() < 3:
        return float("nan")
    rx, ry = x[keep].rank(), y[keep].rank()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def trend(x, y) -> dict:
    """Which way y moves with x: Spearman's rho from three points, the sign of the one step
    from two ("basis" says which)."""
    x, y = list(x), list(y)
    rho = spearman(x, y)
    if math.isfinite(rho):
        return {"rho": rho, "basis": f"Spearman {rho:.2g}"}
    if len(x) == 2 and all(is_finite(v) for v in y):
        return {"rho": float(np.sign(y[1] - y[0])), "basis": "two batch sizes"}
    return {"rho": float("nan"), "basis": "too few points"}


# ----------------------------------------------------------------------------- Solution 2


AGREE_REL = 1e-4  # two float32 losses this close (relative) agree to rounding


def series_difference(a, b) -> dict:
    """How two loss series (one value per iteration) differ over their common steps: the
    largest absolute and relative difference, the relative difference after the first update
    (the second loss), and for how many leading iterations they agree within AGREE_REL.

    Two runs that are the same in exact arithmetic agree to rounding at first; at a large
    learning rate the rounding differences then grow, so the leading agreement is the test."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    n = min(a.size, b.size)
    if n == 0:
        nan = float("nan")
        return {"steps": 0, "max_abs": nan, "max_rel": nan, "first_update_rel": nan, "agree_steps": 0}
    d = np.abs(a[:n] - b[:n])
    rel = d / np.maximum(np.abs(b[:n]), 1e-12)
    off = np.flatnonzero(~(rel <= AGREE_REL))
    return {
        "steps": int(n),
        "max_abs": float(np.nanmax(d)),
        "max_rel": float(np.nanmax(rel)),
        "first_update_rel": float(rel[1]) if n > 1 else float("nan"),
        "agree_steps": int(off[0]) if off.size else int(n),
    }


def paired_bootstrap(shared: list, statistic, n_boot: int, seed: int) -> Paired:
    """statistic over the seeds both sides have, with its 95% bootstrap interval (the seeds
    resampled jointly: the statistic is a difference between two optimizers)."""
    if len(shared) < 2:
        return Paired(math.nan, math.nan, math.nan, len(shared), tuple(shared))
    lo, hi = bootstrap_interval(np.asarray(shared), statistic, n_boot, seed)
    return Paired(statistic(np.asarray(shared)), lo, hi, len(shared), tuple(shared))
