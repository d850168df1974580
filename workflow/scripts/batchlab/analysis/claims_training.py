"""The verdicts on how training behaves with the batch size: the model's oscillation, the
gradient direction, the time per epoch, the late blow-up (rules listed in batchlab.analysis.verdicts)."""

from __future__ import annotations

import math

import pandas as pd

from batchlab.analysis.rows import grid_cells, nearest, rows_of
from batchlab.analysis.stats import MIN_SEEDS, decide, mean_ci, paired_difference
from batchlab.analysis.verdict_tools import (
    DROP_MARGIN,
    OSC_MARGIN,
    TIME_MARGIN,
    best_lr,
    equal_noise_pair,
    log_per_seed,
    pct,
    ratio_words,
)


def oscillation(cells: pd.DataFrame, best: pd.DataFrame) -> dict | None:
    """Small batches make the loss oscillate more: the model's oscillation (its loss on a fixed
    training subset, evaluated every 1,024 samples through the last epoch, detrended) at the
    smallest against the largest batch size, each at its best lr, as a paired log ratio; the same
    at equal lr / b (the noise temperature of SGD, Smith & Le 2018) beside it."""
    g = grid_cells(cells)
    if len(best) < 2 or "model_oscillation" not in g:
        return None
    small, large = int(best["batch_size"].min()), int(best["batch_size"].max())
    lr_s, lr_l = best_lr(best, small), best_lr(best, large)
    at_best = paired_difference(log_per_seed(g, small, lr_s, "model_oscillation"), log_per_seed(g, large, lr_l, "model_oscillation"))
    verdict, why = ratio_words(decide(at_best, +1, OSC_MARGIN))
    evidence = (
        f"Model oscillation (fixed 1,024-image training subset), batch {small} at lr {lr_s:g} over batch {large}"
        f" at lr {lr_l:g}: x{math.exp(at_best.mean):.3g} [{math.exp(at_best.lo):.3g}, {math.exp(at_best.hi):.3g}]"
        f" over {at_best.n} paired seeds ({why})."
    )
    out = {"key": "oscillation", "claim": "Small batches make the loss oscillate more from one iteration to the next."}
    pair = equal_noise_pair(g, small, large, lr_s)
    if pair is not None:
        a, c = pair
        equal = paired_difference(log_per_seed(g, small, a, "model_oscillation"), log_per_seed(g, large, c, "model_oscillation"))
        v_equal, why_equal = ratio_words(decide(equal, +1, OSC_MARGIN))
        evidence += (
            f" At equal lr / b = {a / small:.3g} (batch {small} at lr {a:g}, batch {large} at lr {c:g}):"
            f" x{math.exp(equal.mean):.3g} [{math.exp(equal.lo):.3g}, {math.exp(equal.hi):.3g}] ({why_equal})."
        )
        out["at_equal_noise"] = equal.as_dict()
        if {verdict, v_equal} == {"supported", "not supported"}:
            verdict = "mixed"
    post = paired_difference(log_per_seed(g, small, lr_s, "oscillation"), log_per_seed(g, large, lr_l, "oscillation"))
    evidence += (
        f" The post's measure (each iteration's own mini-batch loss, whose sampling noise alone grows as"
        f" the batch shrinks): x{math.exp(post.mean):.3g} at the best lrs."
    )
    headline = f"model oscillation ×{math.exp(at_best.mean):.2g} [{math.exp(at_best.lo):.2g}, {math.exp(at_best.hi):.2g}], batch {small} over {large} at their best lrs"
    if "at_equal_noise" in out:
        e = out["at_equal_noise"]
        headline += f"; ×{math.exp(e['mean']):.2g} at equal lr / b"
    return {
        **out,
        "verdict": verdict,
        "headline": headline,
        "at_best_lr": at_best.as_dict(),
        "evidence": evidence,
        "test": "The model's loss on fixed images can jump more or less at either batch size, so this"
        " can come out either way (the per-iteration mini-batch loss cannot: its sampling noise alone"
        " falls as 1/√b). It measures the last epoch only.",
    }


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
    if ci_large["n"] < MIN_SEEDS:
        verdict, why = "inconclusive", f"only {ci_large['n']} seed(s)"
    elif ci_large["lo"] >= PARALLEL:
        verdict, why = "supported", f"at batch {b_large} the interval lies above {PARALLEL}"
    elif ci_large["hi"] < PARALLEL:
        verdict, why = "not supported", f"at batch {b_large} the interval lies below {PARALLEL}"
    else:
        verdict, why = "inconclusive", f"at batch {b_large} the interval holds {PARALLEL}"
    first = next((b for b, ci, _ in rows if ci["n"] >= MIN_SEEDS and ci["lo"] >= PARALLEL), None)
    listing = "; ".join(
        f"batch {b}: {ci['mean']:.3f} [{ci['lo']:.3f}, {ci['hi']:.3f}]" + (f" (predicted {p:.3f})" if math.isfinite(p) else "")
        for b, ci, p in rows
    )
    where = f"they are nearly parallel (cosine ≥ {PARALLEL}) from batch {first} up" if first else f"no batch size of the grid reaches cosine {PARALLEL}"
    return {
        "key": "gradient",
        "claim": "With a large batch the gradient direction barely changes from one iteration to the next.",
        "verdict": verdict,
        "headline": f"cosine {ci_large['mean']:.2f} [{ci_large['lo']:.2f}, {ci_large['hi']:.2f}] at batch {b_large}",
        "first_parallel_batch": first,
        "evidence": f"Cosine between the gradients of two independent mini-batches at the same weights, each batch"
        f" size at its best lr (mean over probes, 95% interval over seeds; predicted: 1 / (1 + B_simple / b)):"
        f" {listing}. {where.capitalize()}; {why}.",
        "test": "Measures the direction two consecutive mini-batches would take from the same weights; it does"
        " not follow the weights along a step, and averages over training.",
    }


def epoch_time(epochs: pd.DataFrame, best: pd.DataFrame) -> dict | None:
    """Small batches are slower per epoch: the smallest against the largest batch size, each at
    its best lr, paired by epoch (the seeds of a cell share one ensemble's clock, so its epochs
    are the replicates). An epoch's time hardly depends on the lr; the lrs are named."""
    ep = grid_cells(epochs)
    if ep.empty or len(best) < 2:
        return None
    small, large = int(best["batch_size"].min()), int(best["batch_size"].max())
    lr_s, lr_l = best_lr(best, small), best_lr(best, large)

    def by_epoch(b, lr):
        at = rows_of(ep, b, lr, recipe=None)
        return {int(e): float(s) for e, s in at.groupby("epoch")["seconds"].mean().items()}

    a, c = by_epoch(small, lr_s), by_epoch(large, lr_l)
    if not a or not c:
        return None
    d = paired_difference(a, c)
    margin = TIME_MARGIN * (sum(c.values()) / len(c))
    verdict, why = decide(d, +1, margin)
    return {
        "key": "epoch_time",
        "claim": "Small batches are slower per epoch.",
        "verdict": verdict,
        "headline": f"{d.mean:+.2f} s per epoch [{d.lo:+.2f}, {d.hi:+.2f}], batch {small} against {large}",
        "difference": d.as_dict(),
        "evidence": f"An epoch at batch {small} (lr {lr_s:g}) takes {d.mean:+.2f} s [{d.lo:+.2f}, {d.hi:+.2f}]"
        f" longer than at batch {large} (lr {lr_l:g}), {d.n} epochs paired: {why}.",
        "test": "Replicates are epochs of one ensemble; the machine's load moves between runs, so the"
        " interval says how steady the clock was here, not on another machine.",
    }


def late_blowup(cells: pd.DataFrame, probes: pd.DataFrame, config: dict, lr_claim: float = 0.02) -> dict | None:
    """Batch 1 at lr 0.02 blows up late: each seed blew up (diverged or collapsed in the second
    half), or its validation accuracy fell from its first-half peak to its end (degraded, by
    more than seed noise), or neither (fine)."""
    g = grid_cells(cells)
    if g.empty:
        return None
    b = int(g["batch_size"].min())
    lr = nearest(sorted(g["lr"].unique()), lr_claim)
    at = rows_of(g, b, lr, recipe=None)
    if at.empty:
        return None
    planned = config["train"]["epochs"] * int(at["iterations_per_epoch"].iloc[0])
    failed = at[at["status"].isin(["diverged", "collapsed"])]
    late = failed[pd.to_numeric(failed["stopped_step"], errors="coerce") > planned / 2]
    ok = at[~at["status"].isin(["diverged", "collapsed"])]
    peak = {}
    if probes is not None and len(probes):
        pr = grid_cells(probes)
        pr = rows_of(pr, b, lr, recipe=None)
        pr = pr[pr["step"] <= planned / 2]
        peak = {int(s): float(v) for s, v in pr.groupby("seed")["val_acc"].max().items()}
    end = {int(s): float(v) for s, v in zip(ok["seed"], ok["final_val_acc"], strict=True)}
    d = paired_difference(end, peak)
    fell, why = decide(d, -1, DROP_MARGIN)
    n = len(at)
    if len(late) == n:
        verdict, outcome = "supported", "blew up"
    elif len(late):
        verdict, outcome = "mixed", "some seeds blew up"
    elif fell == "supported":
        verdict, outcome = "mixed", "degraded"
    elif fell == "not supported" and len(failed) == 0:
        verdict, outcome = "not supported", "fine"
    else:
        verdict, outcome = "inconclusive", "unclear"
    stops = "; ".join(
        f"seed {r.seed} {r.status} at iteration {int(r.stopped_step):,} of {planned:,}" for r in failed.itertuples()
    )
    return {
        "key": "late_blowup",
        "claim": f"Batch {b} with lr {lr:g} blows up late in training.",
        "verdict": verdict,
        "outcome": outcome,
        "headline": f"{outcome}: {len(late)} of {n} seeds blew up late; accuracy from peak to end {100 * d.mean:+.2f} points",
        "late_failures": int(len(late)),
        "seeds": int(n),
        "difference": d.as_dict(),
        "evidence": f"{outcome.capitalize()}: {len(late)} of {n} seeds blew up in the second half"
        + (f" ({stops})" if stops else "")
        + f"; the others' validation accuracy from their first-half peak to the end: {pct(d)} ({why}).",
        "test": "Tells blowing up (diverged or collapsed, caught at once) from degrading (a fall of"
        " validation accuracy beyond seed noise) from neither; it cannot say whether a longer run"
        " would blow up.",
    }
