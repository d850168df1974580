"""The lr rule: how the optimum lr grows with the batch size, as laws judged on the same data.

- saturating (McCandlish et al. 2018): lr_opt(b) = lr_max * b / (b + B_noise); linear below
  B_noise, flat above it;
- linear scaling (Goyal et al. 2017): lr_opt = c * b; its small-batch limit;
- square-root scaling (Krizhevsky 2014; Hoffer et al. 2017): lr_opt = c * sqrt(b);
- a free power law lr_opt = c * b^k (the exponent the study reported before);
- for Adam-like optimizers also the surge (Li et al. 2024): lr_opt(b) = lr_max / (½ (sqrt(B_noise
  / b) + sqrt(b / B_noise))), which rises as sqrt(b) below B_noise and falls past it.

Each is fitted by least squares on log lr_opt over the batch sizes whose optimum lies inside its
window, and judged by the small-sample Akaike criterion (AICc) on those residuals: the weight of
a law is its share of exp(-AICc / 2). The saturating law's intervals refit it to every bootstrap
replicate of the optima (seeds resampled through the whole pipeline: batchlab.analysis.lr_response).
"""

from __future__ import annotations

import math

import numpy as np

from batchlab.analysis.stats import t_quantile

LAWS = ("saturating", "linear", "square root", "power")
SURGE = "surge"  # judged beside LAWS for the optimizers that adapt per coordinate (Adam's kind)
PARAMETERS = {"saturating": 2, "linear": 1, "square root": 1, "power": 2, SURGE: 2}


def saturating_shape(b: np.ndarray, b_noise: np.ndarray) -> np.ndarray:
    """log(b / (b + B_noise)): rows over B_noise, columns over b."""
    return np.log(b)[None, :] - np.log(b[None, :] + b_noise[:, None])


def surge_shape(b: np.ndarray, b_noise: np.ndarray) -> np.ndarray:
    """-log(½ (sqrt(B_noise / b) + sqrt(b / B_noise))): 0 at b = B_noise."""
    ratio = b[None, :] / b_noise[:, None]
    return -np.log(0.5 * (np.sqrt(1.0 / ratio) + np.sqrt(ratio)))


def fit_saturating(batch_sizes, optima, shape=saturating_shape) -> dict:
    """{'lr_max', 'b_noise', 'sse', 'at_search_edge'}: B_noise by a log-spaced search (for each,
    the best log lr_max is the mean of log lr_opt - shape), refined; `shape` the law's log form
    without lr_max (the saturating law's, or surge_shape)."""
    b, y = np.asarray(batch_sizes, dtype=float), np.log(np.asarray(optima, dtype=float))
    lo, hi = math.log(b.min() / 100), math.log(b.max() * 100)
    edge = False
    for rnd in range(3):
        grid = np.exp(np.linspace(lo, hi, 300))
        form = shape(b, grid)
        log_max = (y[None, :] - form).mean(axis=1)
        sse = ((y[None, :] - log_max[:, None] - form) ** 2).sum(axis=1)
        k = int(np.argmin(sse))
        if rnd == 0:
            edge = k in (0, len(grid) - 1)
        step = (hi - lo) / 299
        lo, hi = math.log(grid[k]) - 2 * step, math.log(grid[k]) + 2 * step
    return {"lr_max": float(math.exp(log_max[k])), "b_noise": float(grid[k]), "sse": float(sse[k]), "at_search_edge": bool(edge)}


def fit_power(batch_sizes, optima, exponent: float | None = None) -> dict:
    """{'c', 'exponent', 'sse'}: log lr_opt = log c + k log b, k fitted or fixed."""
    x, y = np.log(np.asarray(batch_sizes, dtype=float)), np.log(np.asarray(optima, dtype=float))
    k = float(np.polyfit(x, y, 1)[0]) if exponent is None else float(exponent)
    log_c = float((y - k * x).mean())
    return {"c": math.exp(log_c), "exponent": k, "sse": float(((y - log_c - k * x) ** 2).sum())}


def aicc(sse: float, n: int, k: int) -> float:
    """Small-sample AIC of a least-squares fit with k parameters (the residual variance one more)."""
    p = k + 1
    if n - p - 1 <= 0 or sse <= 0:
        return math.nan
    return n * math.log(sse / n) + 2 * p + 2 * p * (p + 1) / (n - p - 1)


def fit_laws(batch_sizes, optima, laws=LAWS) -> dict[str, dict]:
    """Every law of `laws` (LAWS, and SURGE where asked) fitted to the optima: {law: parameters
    + sse + aicc + weight}."""
    n = len(batch_sizes)
    every = {
        "saturating": lambda: fit_saturating(batch_sizes, optima),
        "linear": lambda: fit_power(batch_sizes, optima, 1.0),
        "square root": lambda: fit_power(batch_sizes, optima, 0.5),
        "power": lambda: fit_power(batch_sizes, optima),
        SURGE: lambda: fit_saturating(batch_sizes, optima, surge_shape),
    }
    fits = {law: every[law]() for law in laws}
    for law, f in fits.items():
        f["aicc"] = aicc(f["sse"], n, PARAMETERS[law])
    scores = {law: f["aicc"] for law, f in fits.items() if math.isfinite(f["aicc"])}
    if scores:
        best = min(scores.values())
        total = sum(math.exp(-(s - best) / 2) for s in scores.values())
        for law, s in scores.items():
            fits[law]["weight"] = math.exp(-(s - best) / 2) / total
    return fits


def lr_law(table, log_reps: np.ndarray, laws=LAWS) -> dict:
    """The laws fitted to response_table's optima inside their windows, the saturating law's
    parameters with intervals over the bootstrap replicates, and which law the data prefer."""
    inside = [j for j, e in enumerate(table["window_edge"]) if e is None or (isinstance(e, float) and math.isnan(e))]
    sizes = [int(table["batch_size"].iloc[j]) for j in inside]
    out: dict = {"batch_sizes": sizes, "laws": {}, "preferred": None, "lr_max": {}, "b_noise": {}}
    if len(sizes) < 3:
        out["why_not"] = f"{len(sizes)} batch size(s) with an optimum inside the window; the laws need 3"
        return out
    optima = [float(table["lr_opt"].iloc[j]) for j in inside]
    laws = fit_laws(sizes, optima, laws)
    out["laws"] = laws
    weighted = {k: v.get("weight", math.nan) for k, v in laws.items()}
    out["preferred"] = max(weighted, key=lambda k: weighted[k] if math.isfinite(weighted[k]) else -1)
    sat = laws["saturating"]
    n = int(table["seeds_used"].min())
    reps = log_reps[:, inside] if log_reps.size else log_reps
    usable = reps[np.all(np.isfinite(reps), axis=1)] if reps.size else reps
    boots = [fit_saturating(sizes, np.exp(r)) for r in usable]
    for name in ("lr_max", "b_noise"):
        est = sat[name]
        entry = {"value": est, "lo": math.nan, "hi": math.nan}
        if sat["at_search_edge"]:
            entry["why_not"] = "the fit's B_noise lies at the end of its search: the optima do not bend within the grid"
        elif n < 2 or len(boots) < 20:
            entry["why_not"] = "too few seeds or resamples with every optimum inside its window"
        else:
            logs = np.log([bt[name] for bt in boots])
            half = t_quantile(n - 1) * math.sqrt(n / (n - 1)) * float(logs.std(ddof=1))
            entry["lo"], entry["hi"] = math.exp(math.log(est) - half), math.exp(math.log(est) + half)
        out[name] = entry
    return out
