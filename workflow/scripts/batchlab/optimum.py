"""Each batch size's best learning rate as an interpolated optimum with a bootstrap interval
over seeds, and the exponent of best lr against batch size.

The optimum of a window is the vertex of the quadratic in log lr through the best lr (highest
mean validation accuracy) and its two neighbours. An optimum at a window's edge cannot be
interpolated: it is flagged, and left out of the exponent fit. Seeds are resampled jointly
across batch sizes (seed s of every cell shares its initial weights), so the exponent's
interval keeps that pairing.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from batchlab.aggregate import failed_settings
from batchlab.stats import bootstrap_interval, decide, paired_difference

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
    lr, see batchlab.stats.bootstrap_interval), and the neighbours of the best lr that the paired
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
