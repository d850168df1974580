"""The batch-size measures of the literature, as plain functions of numbers.

- mean and 95% interval over seeds (Student t);
- steps / samples / seconds to a target test accuracy (Shallue et al. 2018), interpolated
  between probes, and the fit of S = S_min (1 + B_crit / B) (McCandlish et al. 2018);
- the gradient noise scale B_simple = tr(Sigma) / |G|^2 from squared gradient norms measured at
  two batch sizes (McCandlish et al. 2018, appendix A);
- the Solution 2 equivalence check (largest difference between two loss series).
"""

from __future__ import annotations

import math

import numpy as np

# two-sided 95% quantiles of Student's t, by degrees of freedom
T_975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
    10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
    18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980,
}  # fmt: skip


def nearest(values, target: float) -> float:
    """The value closest to target on a log scale."""
    values = sorted(set(float(v) for v in values))
    return min(values, key=lambda v: abs(math.log(v) - math.log(target)))


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


# ----------------------------------------------------------------------------- steps to target


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


def fit_critical_batch(batch_sizes, steps) -> dict:
    """Fit S = S_min (1 + B_crit / B) to steps-to-target, least squares on log S.

    Equivalently E = S B = E_min (1 + B / B_crit) with E_min = S_min B_crit, and
    S_min / S + E_min / E = 1 (1/S against 1/E is a line). For a given B_crit the best log S_min
    is the mean of log S - log(1 + B_crit / B); B_crit is found by a log-spaced search, refined.
    Needs at least three batch sizes; returns NaNs otherwise.
    """
    b = np.asarray(batch_sizes, dtype=float)
    s = np.asarray(steps, dtype=float)
    keep = np.isfinite(b) & np.isfinite(s) & (b > 0) & (s > 0)
    b, s = b[keep], s[keep]
    out = {
        "s_min": float("nan"),
        "e_min": float("nan"),
        "b_crit": float("nan"),
        "rms_log": float("nan"),
        "n": int(b.size),
        "at_search_edge": False,
    }
    if b.size < 3 or np.unique(b).size < 3:
        return out
    log_s = np.log(s)

    def loss(bc: float) -> tuple[float, float]:
        pred = np.log1p(bc / b)
        log_smin = float(np.mean(log_s - pred))
        resid = log_s - log_smin - pred
        return float(np.mean(resid**2)), log_smin

    lo, hi = math.log(b.min() * 1e-3), math.log(b.max() * 1e3)
    edge = False
    for rnd in range(4):  # coarse-to-fine search over log B_crit
        grid = np.linspace(lo, hi, 400)
        errs = [loss(math.exp(g))[0] for g in grid]
        k = int(np.argmin(errs))
        if rnd == 0:  # the best fit at an end of the search: B_crit is not determined by the data
            edge = k in (0, len(grid) - 1)
        lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    bc = math.exp(grid[k])
    err, log_smin = loss(bc)
    s_min = math.exp(log_smin)
    return {
        "s_min": s_min,
        "e_min": s_min * bc,
        "b_crit": bc,
        "rms_log": math.sqrt(err),
        "n": int(b.size),
        "at_search_edge": bool(edge),
    }


def scaling_regimes(batch_sizes, steps) -> list[dict]:
    """For each step up in batch size, the share of the ideal step reduction realised, on log
    scale: efficiency = log(S(b1) / S(b2)) / log(b2 / b1), 1 when twice the batch halves the
    steps, 0 when it saves none. >= 0.8 perfect scaling, <= 0.2 no gain (or worse), between:
    diminishing returns."""
    out = []
    pairs = [(b, s) for b, s in zip(batch_sizes, steps, strict=True) if s is not None and math.isfinite(s)]
    for (b1, s1), (b2, s2) in zip(pairs, pairs[1:], strict=False):
        eff = math.log(s1 / s2) / math.log(b2 / b1)
        regime = "perfect scaling" if eff >= 0.8 else "no gain" if eff <= 0.2 else "diminishing returns"
        out.append({"from": int(b1), "to": int(b2), "efficiency": float(eff), "regime": regime})
    return out


# ----------------------------------------------------------------------------- noise scale


def noise_components(g_small_sq, g_big_sq, b_small, b_big) -> tuple[np.ndarray, np.ndarray]:
    """Unbiased estimates of |G|^2 and tr(Sigma) from E|G_B|^2 = |G|^2 + tr(Sigma) / B:

    |G|^2    ~ (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)
    """
    gs, gb = np.asarray(g_small_sq, float), np.asarray(g_big_sq, float)
    bs, bb = np.asarray(b_small, float), np.asarray(b_big, float)
    g2 = (bb * gb - bs * gs) / (bb - bs)
    trace = (gs - gb) / (1.0 / bs - 1.0 / bb)
    return g2, trace


def trailing(values, window: int) -> np.ndarray:
    """Mean of the last `window` values at each position (fewer at the start), NaN-aware."""
    x = np.asarray(values, dtype=float)
    out = np.full(x.shape, np.nan)
    for i in range(x.size):
        chunk = x[max(0, i - window + 1) : i + 1]
        chunk = chunk[np.isfinite(chunk)]
        if chunk.size:
            out[i] = chunk.mean()
    return out


def noise_scale(
    g_small_sq, g_big_sq, b_small, b_big, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(|G|^2, tr(Sigma), B_simple) at each probe: both estimates averaged over the last `window`
    probes before the ratio is taken (the ratio of two noisy estimates is biased). B_simple is
    NaN where the smoothed |G|^2 is not positive (noise swamps the signal)."""
    g2, trace = noise_components(g_small_sq, g_big_sq, b_small, b_big)
    g2s, trs = trailing(g2, window), trailing(trace, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        b_simple = np.where(g2s > 0, trs / g2s, np.nan)
    return g2s, trs, b_simple


def gradient_cosine_sq(b_simple: float, batch_size) -> np.ndarray:
    """Expected cos^2 between a batch-b gradient and the true gradient, |G|^2 / E|G_b|^2 =
    1 / (1 + B_simple / b): near 1 when b >> B_simple (every batch points the same way)."""
    return 1.0 / (1.0 + b_simple / np.asarray(batch_size, dtype=float))


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
