"""Exact tests for paired seeds that assume no normal distribution, and Holm's correction.

- the paired sign-flip (randomization) test: under "no effect" each seed's difference is as
  likely to have either sign, so the observed mean is ranked among the means of all 2^n sign
  assignments (exact up to 16 seeds; drawn at random beyond). Its smallest one-sided p-value is
  1 / 2^n: 1/32 with five seeds, 1/1024 with ten;
- Holm's step-down correction over a family of hypotheses, decided together (Holm 1979).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

EXACT_UP_TO = 16  # seeds; beyond, the sign assignments are drawn at random
DRAWS = 20000


def _signs(n: int, seed: int = 0) -> np.ndarray:
    """Every assignment of signs to n values (2^n x n), or DRAWS random ones beyond EXACT_UP_TO."""
    if n <= EXACT_UP_TO:
        return np.asarray(list(itertools.product((1.0, -1.0), repeat=n)))
    rng = np.random.default_rng(seed)
    return rng.choice((1.0, -1.0), size=(DRAWS, n))


def p_greater(diffs, shift: float = 0.0) -> float:
    """One-sided p-value of "the mean paired difference exceeds `shift`": the share of sign
    assignments of (diffs - shift) whose mean reaches the observed one. NaN without values."""
    d = np.asarray([v for v in diffs if v is not None and math.isfinite(v)], dtype=float) - shift
    if d.size == 0:
        return math.nan
    observed = d.mean()
    means = _signs(d.size) @ d / d.size
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    return float(np.mean(means >= observed - tol))


def p_less(diffs, shift: float = 0.0) -> float:
    """One-sided p-value of "the mean paired difference is below `shift`"."""
    return p_greater([-v for v in diffs if v is not None and math.isfinite(v)], -shift)


def smallest_p(n: int) -> float:
    """The smallest p-value the test can give with n seeds."""
    return 1.0 / 2**n if n <= EXACT_UP_TO else 1.0 / DRAWS


def holm(pvalues: dict, alpha: float = 0.05) -> dict:
    """Holm's step-down over a family {name: p}: {name: (adjusted p, level it was tested at,
    rejected)}. The smallest p is tested at alpha / m, the next at alpha / (m - 1), ...; the
    first that fails stops the descent. NaN p-values count in m and are never rejected."""
    m = len(pvalues)
    order = sorted(pvalues, key=lambda k: (not math.isfinite(pvalues[k]), pvalues[k]))
    out, running, going = {}, 0.0, True
    for rank, name in enumerate(order):
        p = pvalues[name]
        level = alpha / (m - rank)
        adjusted = min(1.0, max(running, (m - rank) * p)) if math.isfinite(p) else math.nan
        running = adjusted if math.isfinite(adjusted) else running
        going = going and math.isfinite(p) and p <= level
        out[name] = (adjusted, level, going)
    return out
