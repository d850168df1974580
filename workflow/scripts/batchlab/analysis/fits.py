"""Every fit of the study: the critical batch size, the gradient noise scale, each batch size's
optimum lr and the exponent of optimum lr against batch size.

- B_crit: S = S_min (1 + B_crit / B) fitted to the steps to a target accuracy (McCandlish et al.
  2018; steps to target after Shallue et al. 2018), with the scaling regime of each step up in
  batch size and a bootstrap interval over seeds;
- the gradient noise scale B_simple = tr(Sigma) / |G|^2 from squared gradient norms measured at
  two batch sizes (McCandlish et al. 2018, appendix A);
- the optimum lr of a batch size: the vertex of the quadratic in log lr through the best lr
  (highest mean validation accuracy) and its two neighbours. An optimum at a window's edge cannot
  be interpolated: it is flagged, and left out of the exponent fit;
- the exponent of optimum lr against batch size. Seeds are resampled jointly across batch sizes
  (seed s of every cell shares its initial weights), so its interval keeps that pairing.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from batchlab.analysis.rows import failed_settings, grid_cells, shared_seeds, steps_by_seed
from batchlab.analysis.stats import bootstrap_interval, decide, paired_difference

# ----------------------------------------------------------------------------- critical batch size


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
    bc, edge = _search_b_crit(b, log_s)
    err, log_smin = _b_crit_loss(bc, b, log_s)
    s_min = math.exp(log_smin)
    return {
        "s_min": s_min,
        "e_min": s_min * bc,
        "b_crit": bc,
        "rms_log": math.sqrt(err),
        "n": int(b.size),
        "at_search_edge": bool(edge),
    }


def _b_crit_loss(bc: float, b: np.ndarray, log_s: np.ndarray) -> tuple[float, float]:
    """(mean squared residual of log S, best log S_min) for one B_crit."""
    pred = np.log1p(bc / b)
    log_smin = float(np.mean(log_s - pred))
    resid = log_s - log_smin - pred
    return float(np.mean(resid**2)), log_smin


def _search_b_crit(b: np.ndarray, log_s: np.ndarray) -> tuple[float, bool]:
    """(B_crit, whether the coarse search's best lay at an end of its range: then B_crit is not
    determined by the data): a coarse-to-fine search over log B_crit."""
    lo, hi = math.log(b.min() * 1e-3), math.log(b.max() * 1e3)
    edge = False
    for rnd in range(4):
        grid = np.linspace(lo, hi, 400)
        k = int(np.argmin([_b_crit_loss(math.exp(g), b, log_s)[0] for g in grid]))
        if rnd == 0:
            edge = k in (0, len(grid) - 1)
        lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    return math.exp(grid[k]), edge


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
    per = steps_by_seed(targets, grid_cells(cells))
    seeds = shared_seeds(per.values())
    if len(seeds) < 2:
        return fit
    lo, hi = bootstrap_interval(np.asarray(seeds), lambda pick: log_b_crit(per, pick), n_boot)
    fit["b_crit_lo"], fit["b_crit_hi"] = math.exp(lo), math.exp(hi)
    return fit


def log_b_crit(per: dict[int, pd.Series], pick) -> float:
    """log B_crit fitted to the mean steps of the seeds `pick` (NaN where it cannot be fitted)."""
    bc = fit_critical_batch(list(per), [float(per[b].loc[pick].mean()) for b in per])["b_crit"]
    return math.log(bc) if math.isfinite(bc) and bc > 0 else math.nan


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


# ----------------------------------------------------------------------------- optimum lr and exponent


TIE_MARGIN = 0.002  # neighbours within 0.2 accuracy points of the best are "tied" unless separated
N_BOOT = 1000


def accuracy_matrix(cells: pd.DataFrame, b: int, col: str = "final_val_acc") -> tuple[list[float], list[int], np.ndarray]:
    """(lrs, seeds, acc[seed, lr]) of one batch size's grid cells, over the seeds every lr has."""
    at = cells[cells["batch_size"] == b]
    table = at.pivot_table(index="seed", columns="lr", values=col, aggfunc="first").sort_index(axis=1)
    table = table.dropna(axis=0, how="any")
    return [float(v) for v in table.columns], [int(s) for s in table.index], table.to_numpy(dtype=float)


def vertex(lrs: list[float], means: np.ndarray, failed: frozenset[int] = frozenset()) -> tuple[float, str | None]:
    """(optimum lr, edge) of one mean-accuracy curve over a window: the quadratic's vertex in log
    lr through the best point and its neighbours, or the best lr itself with edge 'lowest' or
    'highest' when it lies at the window's end. The best lr itself, uninterpolated, where the
    three points are not concave or a neighbour is a setting in which some seed failed (diverged
    or collapsed): a parabola through a failed run's accuracy says nothing about the optimum."""
    i = int(np.nanargmax(means))
    if len(lrs) < 3 or i == 0:
        return lrs[i], "lowest" if len(lrs) > 1 else None
    if i == len(lrs) - 1:
        return lrs[i], "highest"
    if {i - 1, i + 1} & failed:
        return lrs[i], None
    x = np.log(np.asarray(lrs[i - 1 : i + 2], dtype=float))
    a, b, _ = np.polyfit(x, means[i - 1 : i + 2], 2)
    if not a < 0:
        return lrs[i], None
    peak = -b / (2 * a)
    return float(math.exp(min(max(peak, x[0]), x[2]))), None


def window_optimum(
    lrs: list[float], seeds: list[int], acc: np.ndarray, seed: int = 0, failed: frozenset[int] = frozenset()
) -> dict:
    """The interpolated optimum of one batch size, its 95% bootstrap interval over seeds (in log
    lr, see batchlab.analysis.stats.bootstrap_interval), and the neighbours of the best lr that the paired
    test cannot separate from it."""
    means = acc.mean(axis=0)
    best_i = int(np.nanargmax(means))
    opt, edge = vertex(lrs, means, failed)
    log_opt = bootstrap_interval(acc, lambda rows: math.log(vertex(lrs, rows.mean(axis=0), failed)[0]), N_BOOT, seed)
    lo, hi = (math.exp(v) for v in log_opt)
    tied = []
    for j in (best_i - 1, best_i + 1):
        if 0 <= j < len(lrs):
            d = paired_difference(dict(zip(seeds, acc[:, best_i], strict=True)), dict(zip(seeds, acc[:, j], strict=True)))
            if decide(d, +1, TIE_MARGIN)[0] != "supported":
                tied.append(lrs[j])
    interpolated = edge is None and not ({best_i - 1, best_i + 1} & failed) and opt != lrs[best_i]
    return {
        "lr_opt": opt,
        "lr_opt_lo": lo,
        "lr_opt_hi": hi,
        "window_edge": edge,
        "interpolated": bool(interpolated),
        "tied_with": tied,
        "seeds_used": len(seeds),
    }


def failed_lrs(cells: pd.DataFrame, b: int, lrs: list[float]) -> frozenset[int]:
    """Indexes into lrs of the settings at batch b where some seed diverged, collapsed or failed
    to learn."""
    if "status" not in cells:
        return frozenset()
    bad = failed_settings(cells)
    return frozenset(i for i, lr in enumerate(lrs) if (b, lr) in bad)


def lr_optima(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per batch size of the grid: the interpolated optimum and its interval."""
    rows = []
    for b in sorted(cells["batch_size"].unique()):
        lrs, seeds, acc = accuracy_matrix(cells, int(b))
        if not seeds:
            continue
        rows.append({"batch_size": int(b), **window_optimum(lrs, seeds, acc, failed=failed_lrs(cells, int(b), lrs))})
    return pd.DataFrame(rows)


def fit_exponent(batch_sizes, lrs) -> float:
    """Least-squares slope of log lr against log batch size (NaN with fewer than two)."""
    x, y = np.log(np.asarray(batch_sizes, dtype=float)), np.log(np.asarray(lrs, dtype=float))
    if x.size < 2 or np.ptp(x) == 0:
        return math.nan
    return float(np.polyfit(x, y, 1)[0])


def lr_exponent(cells: pd.DataFrame, optima: pd.DataFrame, b_crit: float | None, seed: int = 0) -> dict:
    """The exponent of the optimum lr against batch size, fitted over the batch sizes below the
    critical batch size (all when it is unknown) whose optimum is inside its window, with a
    bootstrap interval that resamples seeds jointly for every batch size."""
    inside = optima[optima["window_edge"].isna()]
    limit = b_crit if b_crit is not None and math.isfinite(b_crit) else math.inf
    used = sorted(int(b) for b in inside["batch_size"] if b < limit)
    out = {"exponent": math.nan, "lo": math.nan, "hi": math.nan, "batch_sizes": used, "below_b_crit": limit}
    if len(used) < 2:
        return out
    shared, slope = peak_slope(cells, used)
    out["exponent"] = fit_exponent(used, [inside.set_index("batch_size").loc[b, "lr_opt"] for b in used])
    if len(shared) < 2:
        return out
    out["lo"], out["hi"] = bootstrap_interval(np.asarray(shared), slope, N_BOOT, seed)
    return out


def peak_slope(cells: pd.DataFrame, used: list[int]):
    """(the seeds every batch size of `used` has, slope): slope(pick) is the exponent fitted to
    the optima of the seeds `pick` at those batch sizes (the statistic the bootstrap resamples)."""
    mats = {b: accuracy_matrix(cells, b) for b in used}
    fails = {b: failed_lrs(cells, b, mats[b][0]) for b in used}
    shared = sorted(set.intersection(*(set(m[1]) for m in mats.values())))

    def slope(pick) -> float:
        peaks = []
        for b in used:
            lrs, seeds, acc = mats[b]
            peaks.append(vertex(lrs, acc[[seeds.index(s) for s in pick]].mean(axis=0), fails[b])[0])
        return fit_exponent(used, peaks)

    return shared, slope
