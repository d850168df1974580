"""The verdicts on how training behaves with the batch size: the model's oscillation, the
gradient direction, the time to a target accuracy, the late blow-up (rules listed in batchlab.analysis.verdicts)."""

from __future__ import annotations

import math

import pandas as pd

from batchlab.analysis.family import primary
from batchlab.analysis.rows import grid_cells, nearest, rows_of
from batchlab.analysis.stats import MIN_SEEDS, mean_ci, paired_difference
from batchlab.analysis.verdict_tools import (
    OSC_MARGIN,
    TIME_MARGIN,
    best_lr,
    equal_noise_pair,
    log_per_seed,
    matched_stage,
    per_seed,
)


def oscillation(cells: pd.DataFrame, best: pd.DataFrame) -> dict | None:
    """Small batches make the loss oscillate more: the model's oscillation (its loss on a fixed
    training subset, evaluated every 1,024 samples through the last epoch, detrended) at the
    smallest against the largest batch size, each at its best lr, as a paired log ratio (decided
    by batchlab.analysis.family); the same at equal lr / b (the noise temperature of SGD, Smith &
    Le 2018) beside it."""
    g = grid_cells(cells)
    if len(best) < 2 or "model_oscillation" not in g:
        return None
    small, large = int(best["batch_size"].min()), int(best["batch_size"].max())
    lr_s, lr_l = best_lr(best, small), best_lr(best, large)
    at_best = paired_difference(log_per_seed(g, small, lr_s, "model_oscillation"), log_per_seed(g, large, lr_l, "model_oscillation"))
    evidence = (
        f"Model oscillation (fixed 1,024-image training subset), batch {small} at lr {lr_s:g} over batch {large}"
        f" at lr {lr_l:g}: {ratio_text(at_best)} over {at_best.n} paired seeds."
    )
    out = {"key": "oscillation", "claim": "Small batches make the loss oscillate more from one iteration to the next."}
    pair = equal_noise_pair(g, small, large, lr_s)
    if pair is not None:
        a, c = pair
        equal = paired_difference(log_per_seed(g, small, a, "model_oscillation"), log_per_seed(g, large, c, "model_oscillation"))
        evidence += f" At equal lr / b = {a / small:.3g} (batch {small} at lr {a:g}, batch {large} at lr {c:g}): {ratio_text(equal)}."
        out["at_equal_noise"] = equal.as_dict()
    stage = matched_stage(g, (small, lr_s, None), (large, lr_l, None), "osc", +1, log=True)
    if stage is not None:
        out["at_matched_stage"] = stage
        evidence += (
            f" At matched stage (around where the tracked training loss first reaches {stage['level']:g},"
            f" the lowest both reach): {stage_ratio(stage)}, one-sided p = {stage['p']:.3g}."
        )
    post = paired_difference(log_per_seed(g, small, lr_s, "oscillation"), log_per_seed(g, large, lr_l, "oscillation"))
    evidence += (
        f" The post's measure (each iteration's own mini-batch loss, whose sampling noise alone grows as"
        f" the batch shrinks): x{math.exp(post.mean):.3g} at the best lrs."
    )
    headline = f"model oscillation {ratio_text(at_best)}, batch {small} over {large} at their best lrs"
    if "at_equal_noise" in out:
        headline += f"; ×{math.exp(out['at_equal_noise']['mean']):.2g} at equal lr / b"
    return {
        **out,
        "verdict": "inconclusive",
        "headline": headline,
        "at_best_lr": at_best.as_dict(),
        "primary": primary(at_best, +1, OSC_MARGIN, "log ratio"),
        "evidence": evidence,
        "test": "One-sided: batch-1 oscillation above the largest batch's (supported), or short of a factor"
        " 1.1 (not supported). The model's loss on fixed images can jump more or less at either batch size,"
        " so this can come out either way (the per-iteration mini-batch loss cannot: its sampling noise"
        " alone falls as 1/√b). Decided on the last epoch; the same ratio at matched stage (equal tracked"
        " training loss) is reported beside it, not decided, since it was not fixed before the data.",
    }


def stage_ratio(stage: dict) -> str:
    """A matched-stage log ratio (batchlab.analysis.verdict_tools.matched_stage) as a ratio."""
    lo, hi = stage["lo"], stage["hi"]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"×{math.exp(stage['mean']):.3g} (no interval from {stage['n']} seed(s))"
    return f"×{math.exp(stage['mean']):.3g} [{math.exp(lo):.3g}, {math.exp(hi):.3g}]"


def ratio_text(d) -> str:
    """A paired log ratio as a ratio with its 95% interval (or the reason it has none)."""
    if not math.isfinite(d.mean):
        return "no paired seeds"
    if not (math.isfinite(d.lo) and math.isfinite(d.hi)):
        return f"×{math.exp(d.mean):.3g} (no interval from {d.n} seed(s))"
    return f"×{math.exp(d.mean):.3g} [{math.exp(d.lo):.3g}, {math.exp(d.hi):.3g}]"


PARALLEL = 0.9  # consecutive gradients "nearly parallel": cosine at least 0.9 (under 26 degrees)


def gradient_direction(cells: pd.DataFrame, best: pd.DataFrame) -> dict | None:
    """With a large batch the gradient direction barely changes from one iteration to the next:
    the measured cosine between the gradients of two independent mini-batches at the same
    weights (each probe, averaged over training), per batch size at its best lr, against
    PARALLEL, beside the prediction 1 / (1 + B_simple / b) from the measured noise scale."""
    g = grid_cells(cells)
    if "grad_cos" not in g or len(best) < 2 or g["grad_cos"].notna().sum() == 0:
        return None
    rows = []
    for b in sorted(int(v) for v in best["batch_size"]):
        at = rows_of(g, b, best_lr(best, b), recipe=None)
        ci = mean_ci(at["grad_cos"], (-1.0, 1.0))
        noise = pd.to_numeric(at["b_simple_end"], errors="coerce").dropna() if "b_simple_end" in at else pd.Series(dtype=float)
        predicted = 1.0 / (1.0 + float(noise.mean()) / b) if len(noise) else math.nan
        rows.append((b, ci, predicted))
    b_large, ci_large, _ = rows[-1]
    cos = per_seed(g, b_large, best_lr(best, b_large), "grad_cos")
    above = paired_difference(cos, {s: PARALLEL for s in cos})
    first = next((b for b, ci, _ in rows if ci["n"] >= MIN_SEEDS and ci["lo"] >= PARALLEL), None)
    listing = "; ".join(
        f"batch {b}: {ci_words(ci)}" + (f" (predicted {p:.3f})" if math.isfinite(p) else "")
        for b, ci, p in rows
    )
    where = f"they are nearly parallel (cosine ≥ {PARALLEL}) from batch {first} up" if first else f"no batch size of the grid reaches cosine {PARALLEL}"
    return {
        "key": "gradient",
        "claim": "With a large batch the gradient direction barely changes from one iteration to the next.",
        "verdict": "inconclusive",
        "headline": f"cosine {ci_words(ci_large, '.2f')} at batch {b_large}",
        "first_parallel_batch": first,
        "primary": primary(above, +1, 0.0),
        "evidence": f"Cosine between the gradients of two independent mini-batches at the same weights, each batch"
        f" size at its best lr (mean over probes, 95% interval over seeds; predicted: 1 / (1 + B_simple / b)):"
        f" {listing}. {where.capitalize()}.",
        "test": f"One-sided: the largest batch's cosine above {PARALLEL} (supported) or below it (not supported)."
        " Measures the direction two consecutive mini-batches would take from the same weights; it does"
        " not follow the weights along a step, and averages over training.",
    }


def largest_reaching(cells: pd.DataFrame, best: pd.DataFrame) -> int | None:
    """The largest batch size some of whose seeds reach the target accuracy at its best lr."""
    g = grid_cells(cells)
    if "seconds_to_acc" not in g:
        return None
    reached = [int(b) for b in best["batch_size"] if rows_of(g, int(b), best_lr(best, int(b)), None)["seconds_to_acc"].notna().any()]
    return max(reached, default=None)


def ci_words(ci: dict, f: str = ".3f") -> str:
    """A mean with its 95% interval, or the reason it has none."""
    if not (math.isfinite(ci["lo"]) and math.isfinite(ci["hi"])):
        return f"{ci['mean']:{f}} (no interval from {ci['n']} seed(s))"
    return f"{ci['mean']:{f}} [{ci['lo']:{f}}, {ci['hi']:{f}}]"


def time_to_target(cells: pd.DataFrame, best: pd.DataFrame, target: float, large: int | None) -> dict | None:
    """Small batches are slower: wall time to the target validation accuracy, the smallest batch
    size against `large` (the largest that reaches it: largest_reaching), each at its best lr, a
    paired log ratio. A seed that never reaches the target counts its whole run (a lower bound:
    it favours that side)."""
    g = grid_cells(cells)
    if len(best) < 2 or large is None:
        return None
    small = int(best["batch_size"].min())
    if large == small:
        return None

    def seconds(b):
        at = rows_of(g, b, best_lr(best, b), None)
        total = pd.to_numeric(at["epoch_seconds"], errors="coerce") * pd.to_numeric(at["epochs_completed"], errors="coerce")
        took = pd.to_numeric(at["seconds_to_acc"], errors="coerce").fillna(total)
        return {int(s): math.log(v) for s, v in zip(at["seed"], took, strict=True) if math.isfinite(v) and v > 0}

    d = paired_difference(seconds(small), seconds(large))
    never = [b for b in sorted(int(v) for v in best["batch_size"]) if b > large]
    return {
        "key": "time_to_target",
        "claim": "Small batches are slower to train.",
        "verdict": "inconclusive",
        "headline": f"time to {100 * target:.0f}% validation accuracy {ratio_text(d)}, batch {small} over {large}",
        "primary": primary(d, +1, TIME_MARGIN, "log ratio"),
        "evidence": f"Wall time to {100 * target:.0f}% validation accuracy, batch {small} (lr {best_lr(best, small):g}) over batch"
        f" {large} (lr {best_lr(best, large):g}), the largest batch size that reaches it: {ratio_text(d)} over {d.n} paired seeds."
        + (f" Never reached in the epochs trained: batch {', '.join(map(str, never))}." if never else ""),
        "test": "One-sided: more time at the small batch (supported) or less than 1.1 times as much (not supported)."
        " Can come out either way: a small batch makes more steps per second of data but each costs more"
        " per sample; a large one may need more epochs. Times are this machine's.",
    }


# "blows up late" claims a risk a practitioner meets: shown above FLOOR it is supported, shown
# below RISK (the claim read as "more often than not") it is not
FLOOR = 0.05
RISK = 0.5
DEGRADED = 0.01  # a seed's final validation accuracy this far below its first-half peak: about 2 seed SDs


def late_blowup(cells: pd.DataFrame, epochs: pd.DataFrame, config: dict) -> dict | None:
    """Batch 1 at lr 0.02 blows up late: the long runs (group late_blowup; else the grid's cell
    nearest the lr), each seed blown up late (diverged or collapsed in the second half of its
    run), degraded (its final validation accuracy below its first-half peak by more than
    DEGRADED) or fine. The share of late events is tested by exact binomial tails: above FLOOR
    (supported) or below RISK (not supported), decided with the family
    (batchlab.analysis.family)."""
    late = config.get("late_blowup") or {}
    runs = cells[cells["group"] == "late_blowup"] if "group" in cells else cells.iloc[:0]
    lr_claim = float((late.get("learning_rates") or [0.02])[0])
    source = runs if len(runs) else grid_cells(cells)
    if source.empty:
        return None
    b = int(late.get("batch_size", source["batch_size"].min())) if len(runs) else int(source["batch_size"].min())
    lr = nearest(sorted(source.loc[source["batch_size"] == b, "lr"].unique()), lr_claim)
    survival = [survival_curve(rows_of(source, b, x, None), epochs) for x in sorted(source.loc[source["batch_size"] == b, "lr"].unique())] if len(runs) else []
    at = rows_of(source, b, lr, None)
    if at.empty:
        return None
    planned = int(late["epochs"] if len(runs) else config["train"]["epochs"])
    fates = seed_fates(at, epochs, planned)
    n, events = len(fates), sum(f in ("blew up", "degraded") for f in fates.values())
    p_for, p_against = binomial_at_least(events, n, FLOOR), binomial_at_most(events, n, RISK)
    words = ", ".join(f"{sum(f == k for f in fates.values())} {k}" for k in ("blew up", "blew up early", "degraded", "fine"))
    return {
        "key": "late_blowup",
        "claim": f"Batch {b} with lr {lr:g} blows up late in training.",
        "verdict": "inconclusive",
        "headline": f"{events} of {n} seeds blew up or degraded late over {planned} epochs ({words})",
        "late_events": int(events),
        "seeds": int(n),
        "fates": {str(s): f for s, f in fates.items()},
        "survival": [row for curve in survival for row in curve],
        "primary": {"p": [p_for, p_against], "n": n, "mean": events / n if n else math.nan, "lo": math.nan, "hi": math.nan,
                    "diffs": [], "seeds": sorted(fates), "expected": 1, "margin": RISK, "scale": "share"},  # fmt: skip
        "evidence": f"Batch {b} at lr {lr:g}, {n} seeds, {planned} epochs: {words} (late: the second half of the run;"
        f" degraded: the final validation accuracy below the first-half peak by more than {100 * DEGRADED:.0f} point)."
        + ("" if len(runs) else " Read from the grid's cell: no long runs in this study (late_blowup.enabled)."),
        "test": f"Exact binomial, one-sided: the share of seeds that blow up or degrade late shown above {FLOOR:.0%}"
        f" (supported) or below {RISK:.0%} (not supported: the claim read as 'more often than not'); with 10 seeds,"
        " none gives p = 0.001 against, four or more p <= 0.001 for. One blown-up seed is not yet evidence. It cannot"
        " say what a longer run would do.",
    }


def binomial_at_least(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return float(sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))


def binomial_at_most(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    return float(sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(0, k + 1)))


def seed_fates(at: pd.DataFrame, epochs: pd.DataFrame, planned: int) -> dict[int, str]:
    """{seed: 'blew up' | 'blew up early' | 'degraded' | 'fine'} of one setting's seeds over a
    run of `planned` epochs (late: its second half)."""
    out = {}
    for r in at.itertuples():
        ep = rows_of(epochs, r.batch_size, r.lr, (r.recipe or "") if "recipe" in epochs else None)
        ep = ep[ep["seed"] == r.seed]
        if r.status in ("diverged", "collapsed"):
            stopped = float(r.stopped_epoch) if pd.notna(r.stopped_epoch) else 0.0
            out[int(r.seed)] = "blew up" if stopped > planned / 2 else "blew up early"
            continue
        first = ep[ep["epoch"] <= planned / 2]["val_acc"]
        end = float(r.final_val_acc)
        out[int(r.seed)] = "degraded" if len(first) and end < float(first.max()) - DEGRADED else "fine"
    return out


def survival_curve(at: pd.DataFrame, epochs: pd.DataFrame) -> list[dict]:
    """By epoch: the share of the setting's seeds that have blown up, and that sit below their
    peak so far by more than DEGRADED."""
    rows = []
    keys = [k for k in ("batch_size", "lr", "seed", "recipe") if k in epochs and k in at]
    ep = epochs.merge(at[keys], on=keys)
    if ep.empty:
        return rows
    n = len(at)
    for e in range(1, int(ep["epoch"].max()) + 1):
        blown = int(((at["status"].isin(["diverged", "collapsed"])) & (pd.to_numeric(at["stopped_epoch"], errors="coerce") <= e)).sum())
        upto = ep[ep["epoch"] <= e].sort_values("epoch")
        low = int(sum(float(g["val_acc"].iloc[-1]) < float(g["val_acc"].max()) - DEGRADED for _, g in upto.groupby("seed") if int(g["epoch"].iloc[-1]) == e))
        rows.append({"lr": float(at["lr"].iloc[0]), "epoch": e, "blown_up": blown / n, "below_peak": low / n})
    return rows
