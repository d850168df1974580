"""Comparisons over seeds that a reviewer accepts: the paired difference of two settings over
their shared seeds, and a verdict rule that can come out every way.

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

from batchlab.analysis import is_finite, mean_ci, t_quantile

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
        return Paired(mean, math.nan, math.nan, n, shared)
    half = t_quantile(n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
    return Paired(mean, mean - half, mean + half, n, shared)


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


def seed_interval(values) -> tuple[float, float]:
    """Where one more seed's value is expected (95% prediction interval of the seeds): the
    t-interval of their mean (analysis.mean_ci) widened by sqrt(n + 1), i.e. mean +- t s
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
