"""Each batch size's response to the learning rate, fitted over its whole window.

The fitted quantity is the log of the mean validation error, log(1 - accuracy), against log lr:
errors differ several-fold across a window (2.8% at the optimum, 6% two steps off), so on the
log scale both flanks weigh alike and one bad lr does not pull the fit. The curve is a parabola
with its own curvature on each side of its vertex (the response falls gently below the optimum
and steeply towards the lr where training fails), fitted by least squares with the vertex
searched over the window. Failures are a boundary, not data: the lrs from the lowest one at
which a seed failed upwards are left out, and the vertex stays below that *stability limit*. So do lrs past a cliff (an error more than
BASIN times the best's: a run at 67% accuracy beside one at 97%), where no parabola holds.

The optimum's interval comes from resampling seeds through the whole pipeline (which lrs
failed, the means, the fit), jointly for every batch size (seed s of every cell shares its
initial weights), so it holds the selection's own variability. The *near-optimal set* is every
lr that the paired one-sided sign-flip test cannot show to be worse than the best by more than
ACC_MARGIN: a verdict read "at the best lr" is read at each of them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from batchlab.analysis.rows import failed_seeds
from batchlab.analysis.selection import best_lr as select_lr
from batchlab.analysis.signflip import p_greater
from batchlab.analysis.stats import t_quantile

NEAR_MARGIN = 0.002  # accuracy: an lr worse than the best by at most 0.2 points is near-optimal
NEAR_ALPHA = 0.05  # one-sided, uncorrected: the set errs on the wide side
N_BOOT = 400
GRID = 161  # vertices searched per fit
SIDED = 5  # stable lrs needed for a curvature of its own on each side
BASIN = 3.0  # lrs whose error is within this factor of the lowest are fitted; beyond lies a cliff


def matrices(cells: pd.DataFrame, b: int, col: str = "final_val_acc") -> tuple[list[float], list[int], np.ndarray, np.ndarray]:
    """(lrs, seeds, value[seed, lr], failed[seed, lr]) of one batch size's grid cells, over the
    seeds every lr has."""
    at = cells[cells["batch_size"] == b]
    at = at.assign(_failed=failed_seeds(at))
    acc = at.pivot_table(index="seed", columns="lr", values=col, aggfunc="first").sort_index(axis=1)
    bad = at.pivot_table(index="seed", columns="lr", values="_failed", aggfunc="max").sort_index(axis=1)
    keep = acc.index[acc.notna().all(axis=1) | bad.reindex(acc.index).any(axis=1)]
    acc, bad = acc.loc[keep], bad.reindex(index=keep, columns=acc.columns).fillna(False)
    return [float(v) for v in acc.columns], [int(s) for s in keep], acc.to_numpy(dtype=float), bad.to_numpy(dtype=bool)


def stable_count(failed: np.ndarray) -> int:
    """How many lrs, from the lowest, lie below the lowest lr at which some seed failed."""
    any_failed = failed.any(axis=0)
    return int(np.argmax(any_failed)) if any_failed.any() else int(failed.shape[1])


def fit_curve(log_lrs: np.ndarray, log_err: np.ndarray) -> dict:
    """The two-sided parabola y = a + cl (x - v)^2 [x < v] + cr (x - v)^2 [x >= v] with cl, cr
    >= 0, least squares over the vertex v in [x_min, x_max]: {'vertex', 'a', 'cl', 'cr', 'rms'}.
    Below SIDED points one curvature serves both sides (four parameters need five points); with
    fewer than three the lowest point is the vertex."""
    x, y = np.asarray(log_lrs, dtype=float), np.asarray(log_err, dtype=float)
    if x.size < 3:
        i = int(np.argmin(y))
        return {"vertex": float(x[i]), "a": float(y[i]), "cl": math.nan, "cr": math.nan, "rms": math.nan}
    v = np.linspace(x.min(), x.max(), GRID)
    dx = x[None, :] - v[:, None]
    left, right = np.where(dx < 0, dx**2, 0.0), np.where(dx >= 0, dx**2, 0.0)
    if x.size < SIDED:
        left, right = left + right, np.zeros_like(dx)
    design = np.stack([np.ones_like(dx), left, right], axis=2)  # (G, n, 3)
    gram = np.einsum("gni,gnj->gij", design, design) + 1e-9 * np.eye(3)
    coef = np.linalg.solve(gram, np.einsum("gni,n->gi", design, y)[:, :, None])[:, :, 0]
    coef[:, 1:] = np.maximum(coef[:, 1:], 0.0)  # a flank that would bend down is flat
    resid = y[None, :] - np.einsum("gni,gi->gn", design, coef)
    sse = (resid**2).sum(axis=1)
    k = int(np.argmin(sse))
    if x.size < SIDED:
        coef[:, 2] = coef[:, 1]
    return {"vertex": float(v[k]), "a": float(coef[k, 0]), "cl": float(coef[k, 1]), "cr": float(coef[k, 2]), "rms": float(math.sqrt(sse[k] / x.size))}


def basin(err: np.ndarray) -> tuple[int, int]:
    """[start, stop) of the lrs around the lowest error whose error stays within BASIN times it:
    beyond, the response is a cliff (a run at 67% accuracy beside one at 97%), not a parabola."""
    i = int(np.argmin(err))
    lo, hi = i, i + 1
    while lo > 0 and err[lo - 1] <= BASIN * err[i]:
        lo -= 1
    while hi < err.size and err[hi] <= BASIN * err[i]:
        hi += 1
    return lo, hi


def optimum(lrs: list[float], acc: np.ndarray, failed: np.ndarray) -> tuple[float, str | None, dict]:
    """(fitted optimum lr, edge, curve) from one sample of seeds: the vertex of the curve fitted
    to the mean validation error of the lrs in the basin (batchlab.analysis.lr_response.basin)
    below the stability limit. edge: 'lowest' or 'highest' where the vertex lies at an end of
    the window with nothing beyond it (not resolved by the window); an optimum pinned against a
    failure or a cliff is resolved: it is that boundary. 'no stable lr' where every lr failed."""
    n = stable_count(failed)
    if n == 0:
        return math.nan, "no stable lr", {}
    err = np.clip(1.0 - np.nanmean(acc[:, :n], axis=0), 1e-4, 1.0)
    lo, hi = basin(err)
    x = np.log(np.asarray(lrs[lo:hi], dtype=float))
    curve = fit_curve(x, np.log(err[lo:hi]))
    curve["lrs"] = (lrs[lo], lrs[hi - 1])
    step = (x[-1] - x[0]) / (GRID - 1) if x.size > 1 else 0.0
    edge = None
    if x.size == 1:
        edge = "single lr"
    elif lo == 0 and curve["vertex"] <= x[0] + step / 2:
        edge = "lowest"
    elif hi == len(lrs) and curve["vertex"] >= x[-1] - step / 2:
        edge = "highest"
    return float(math.exp(curve["vertex"])), edge, curve


def near_optimal(lrs: list[float], acc: np.ndarray, failed: np.ndarray, margin: float = NEAR_MARGIN, alpha: float = NEAR_ALPHA) -> tuple[float, list[float]]:
    """(the best lr, by the study's one rule (batchlab.analysis.selection), the lrs the paired
    one-sided sign-flip test cannot show worse than it by more than `margin`); none where every
    lr had a failing seed."""
    ok = ~failed.any(axis=0)
    if not ok.any():
        return math.nan, []
    i = lrs.index(select_lr(zip(lrs, np.nanmean(acc, axis=0), ~ok, strict=True)))
    near = [lrs[j] for j in range(len(lrs)) if ok[j] and (j == i or p_greater(acc[:, i] - acc[:, j], margin) > alpha)]
    return lrs[i], near


def response_table(cells: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per batch size of the grid: the best lr, the fitted optimum with its interval over
    seeds (resampled through the whole pipeline, jointly for every batch size), its edge, the
    near-optimal set and the stability limit; and the bootstrap's log optima [replicate, batch
    size] (the lr law refits them)."""
    sizes = sorted(int(b) for b in cells["batch_size"].unique())
    mats = {b: matrices(cells, b) for b in sizes}
    shared = sorted(set.intersection(*(set(m[1]) for m in mats.values()))) if mats else []
    rng = np.random.default_rng(seed)
    picks = [rng.integers(0, len(shared), len(shared)) for _ in range(n_boot)] if len(shared) >= 2 else []
    reps = np.full((len(picks), len(sizes)), np.nan)
    rows = []
    for j, b in enumerate(sizes):
        lrs, seeds, acc, failed = mats[b]
        idx = np.asarray([seeds.index(s) for s in shared], dtype=int)
        for r, pick in enumerate(picks):
            opt, edge, _ = optimum(lrs, acc[idx[pick]], failed[idx[pick]])
            reps[r, j] = math.log(opt) if edge is None else math.nan
        rows.append(_row(b, lrs, seeds, acc, failed, reps[:, j]))
    return pd.DataFrame(rows), reps


def _row(b: int, lrs, seeds, acc, failed, log_reps: np.ndarray) -> dict:
    opt, edge, curve = optimum(lrs, acc, failed)
    best, near = near_optimal(lrs, acc, failed)
    lo = hi = math.nan
    finite = log_reps[np.isfinite(log_reps)]
    n = len(seeds)
    why = None
    if edge is not None:
        why = {"no stable lr": "every lr had a failing seed", "single lr": "one lr of the window trains stably"}.get(edge, f"the optimum lies at the {edge} end of the window")
    elif n < 2:
        why = "one seed"
    elif finite.size < 0.8 * log_reps.size:
        why = f"in {100 * (1 - finite.size / log_reps.size):.0f}% of the resamples the optimum fell at a window's end"
    else:
        half = t_quantile(n - 1) * math.sqrt(n / (n - 1)) * float(finite.std(ddof=1))
        lo, hi = math.exp(math.log(opt) - half), math.exp(math.log(opt) + half)
    stable = stable_count(failed)
    return {
        "batch_size": b,
        "best_lr": best,
        "lr_opt": opt,
        "lr_opt_lo": lo,
        "lr_opt_hi": hi,
        "no_interval": why,
        "window_edge": edge,
        "near_optimal": near,
        "stability_limit": lrs[stable] if stable < len(lrs) else math.nan,
        "highest_stable": lrs[stable - 1] if stable else math.nan,
        "curve_rms": curve.get("rms", math.nan),
        "seeds_used": n,
        "curve": curve_points(curve, *curve["lrs"]) if curve.get("lrs") else [],
    }


def curve_points(curve: dict, lo: float, hi: float, points: int = 40) -> list[dict]:
    """The fitted curve over [lo, hi] as {'lr', 'val_acc'} points (accuracy = 1 - exp(fitted
    log error)), for the report's U-curves."""
    if not curve or not math.isfinite(curve.get("cl", math.nan)):
        return []
    x = np.linspace(math.log(lo), math.log(hi), points)
    dx = x - curve["vertex"]
    y = curve["a"] + np.where(dx < 0, curve["cl"], curve["cr"]) * dx**2
    return [{"lr": float(math.exp(u)), "val_acc": float(1.0 - math.exp(v))} for u, v in zip(x, y, strict=True)]


def stability_map(response: pd.DataFrame, cells: pd.DataFrame) -> list[dict]:
    """Per batch size: the fitted optimum, the highest lr at which every seed trained, the lowest
    at which one failed, and 2 / lambda_max (the edge of stability of plain gradient descent,
    from the sharpness measured at the end of training at the best lr)."""
    out = []
    for r in response.itertuples():
        at = cells[(cells["batch_size"] == r.batch_size) & np.isclose(cells["lr"], r.best_lr)] if math.isfinite(r.best_lr) else cells.iloc[:0]
        sharp = pd.to_numeric(at.get("final_sharpness", pd.Series(dtype=float)), errors="coerce")
        sharp = sharp[np.isfinite(sharp) & (sharp > 0)]
        out.append({
            "batch_size": int(r.batch_size), "lr_opt": r.lr_opt, "highest_stable": r.highest_stable,
            "stability_limit": r.stability_limit, "two_over_sharpness": float(2.0 / sharp.mean()) if len(sharp) else math.nan,
        })  # fmt: skip
    return out
