"""Verdicts on the original post's claims, decided by paired comparisons over seeds.

One function per claim, each a plain function of the aggregated tables (pandas frames as
aggregate writes them); each returns a record with the claim, its verdict, the numbers behind it,
the evidence in words and what its test can and cannot show. Best learning rates are chosen on
the validation set; the confirmatory comparisons between settings read the test set, which the
choice never saw. No verdict pools cells of different learning rates as replicates.
"""

from __future__ import annotations

import math

import pandas as pd

from batchlab.aggregate import failed_seeds, failed_settings, grid_cells
from batchlab.analysis import mean_ci, nearest
from batchlab.selection import best_lr as select_lr
from batchlab.stats import MIN_SEEDS, Paired, decide, paired_difference
from batchlab.study import Recipe, equal_updates_skipped

# effects smaller than these are too small to matter: a tight interval inside them says "no"
ACC_MARGIN = 0.002  # accuracy: 0.2 points
TIME_MARGIN = 0.05  # epoch time: 5% of the faster batch size's
DROP_MARGIN = 0.005  # a late fall of validation accuracy: 0.5 points
OSC_MARGIN = math.log(1.1)  # oscillation, compared as a log ratio: 10%


def per_seed(cells: pd.DataFrame, b: int, lr: float, col: str, recipe: str | None = None) -> dict:
    """{seed: value} of one setting: grid cells, or the cells of one recipe."""
    at = cells if recipe is None else cells[cells["recipe"].fillna("") == recipe]
    at = at[(at["batch_size"] == b) & (at["lr"] == lr)]
    return {int(s): float(v) for s, v in zip(at["seed"], pd.to_numeric(at[col], errors="coerce"), strict=True)}


def pct(d: Paired) -> str:
    return f"{100 * d.mean:+.2f} points [{100 * d.lo:+.2f}, {100 * d.hi:+.2f}] over {d.n} paired seeds"


def best_lr(best: pd.DataFrame, b: int) -> float | None:
    row = best[best["batch_size"] == b]
    return float(row["best_lr"].iloc[0]) if len(row) else None


def finished_per_seed(cells: pd.DataFrame, b: int, lr: float, col: str, recipe: str | None = None) -> dict:
    """per_seed, without the seeds that diverged, collapsed or failed to learn."""
    at = cells if recipe is None else cells[cells["recipe"].fillna("") == recipe]
    at = at[(at["batch_size"] == b) & (at["lr"] == lr) & ~failed_seeds(at)]
    return {int(s): float(v) for s, v in zip(at["seed"], pd.to_numeric(at[col], errors="coerce"), strict=True)}


def log_per_seed(cells: pd.DataFrame, b: int, lr: float, col: str, recipe: str | None = None) -> dict:
    return {s: math.log(v) for s, v in per_seed(cells, b, lr, col, recipe).items() if math.isfinite(v) and v > 0}


def equal_noise_pair(cells: pd.DataFrame, small: int, large: int, near: float) -> tuple[float, float] | None:
    """(lr at the small batch, lr at the large) with equal lr / b in both windows, among settings
    in which every seed trained (a diverged run's loss says nothing about oscillation), the one
    whose small-batch lr is nearest `near`; None when there is no such pair."""
    bad = failed_settings(cells)

    def trained(b):
        return {lr for lr in cells.loc[cells["batch_size"] == b, "lr"].unique() if (b, lr) not in bad}

    lrs_s, lrs_l = sorted(trained(small)), trained(large)
    pairs = [(a, c) for a in lrs_s for c in lrs_l if math.isclose(a / small, c / large, rel_tol=1e-6)]
    return min(pairs, key=lambda p: abs(math.log(p[0] / near))) if pairs else None


def ratio_words(decided: tuple[str, str]) -> tuple[str, str]:
    """decide()'s reason for a log ratio, in words about the ratio."""
    verdict, why = decided
    why = why.replace(f"within ±{OSC_MARGIN:g}", "within a factor 1.1 of 1").replace(f"beyond ±{OSC_MARGIN:g}", "beyond a factor 1.1")
    return verdict, why.replace("excludes 0", "excludes 1").replace("holds 0", "holds 1")


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
        at = g[(g["batch_size"] == b) & (g["lr"] == best_lr(best, b))]
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
        at = ep[(ep["batch_size"] == b) & (ep["lr"] == lr)]
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
    at = g[(g["batch_size"] == b) & (g["lr"] == lr)]
    if at.empty:
        return None
    planned = config["train"]["epochs"] * int(at["iterations_per_epoch"].iloc[0])
    failed = at[at["status"].isin(["diverged", "collapsed"])]
    late = failed[pd.to_numeric(failed["stopped_step"], errors="coerce") > planned / 2]
    ok = at[~at["status"].isin(["diverged", "collapsed"])]
    peak = {}
    if probes is not None and len(probes):
        pr = grid_cells(probes)
        pr = pr[(pr["batch_size"] == b) & (pr["lr"] == lr) & (pr["step"] <= planned / 2)]
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


def lr_follows_batch(best: pd.DataFrame, exponent: dict | None) -> dict | None:
    """Small batches want a small lr and large batches a large one: the exponent of the
    interpolated optimum lr against batch size (fitted below the critical batch size, optima at
    a window's edge left out), with its bootstrap interval over paired seeds: above 0 supports
    the claim, below 0 or within ±0.1 (flat) does not."""
    if exponent is None or len(best) < 2:
        return None
    slope, lo, hi = (exponent.get(k) for k in ("exponent", "lo", "hi"))
    used = exponent.get("batch_sizes") or []
    finite = all(v is not None and math.isfinite(v) for v in (slope, lo, hi))
    if not finite:
        verdict, why = "inconclusive", "the exponent has no interval (too few batch sizes inside their windows, or seeds)"
    elif -0.1 < lo and hi < 0.1:
        verdict, why = "not supported", "the interval lies within ±0.1: the best lr is flat in batch size"
    elif lo > 0:
        verdict, why = "supported", "the interval lies above 0"
    elif hi < 0:
        verdict, why = "not supported", "the interval lies below 0: the best lr shrinks as the batch grows"
    else:
        verdict, why = "inconclusive", "the interval holds 0"
    optima = "; ".join(
        f"batch {int(r.batch_size)}: {r.lr_opt:.3g} [{r.lr_opt_lo:.3g}, {r.lr_opt_hi:.3g}]"
        + (f" (at its window's {r.window_edge} edge)" if isinstance(r.window_edge, str) else "")
        for r in best.itertuples()
        if math.isfinite(getattr(r, "lr_opt", math.nan))
    )
    text = f"{slope:.2f} [{lo:.2f}, {hi:.2f}]" if finite else "not fitted"
    return {
        "key": "lr_follows_batch",
        "claim": "Small batches want a small learning rate and large batches a large one.",
        "verdict": verdict,
        "headline": f"best lr ∝ b^{text}" if finite else "the exponent could not be fitted",
        "exponent": exponent,
        "evidence": f"Interpolated optimum lr (validation, 95% bootstrap interval over seeds): {optima}. Exponent"
        f" of optimum lr against batch size over batch sizes {used}: {text}; {why}.",
        "test": "Fits the optima of the batch sizes below the critical batch size whose optimum lies inside"
        " its window; each window is a few x2 steps, so an optimum is resolved to about a step.",
    }


def solution2_helps(cells: pd.DataFrame, best: pd.DataFrame, config: dict) -> dict | None:
    """Solution 2 helps a big batch: against plain training at the best lr of its batch size
    (best against tuned plain, never against a too small nominal lr), paired on the test set."""
    sol = config.get("solution2") or {}
    if not sol.get("enabled"):
        return None
    b, k = sol["batch_size"], sol["splits"]
    momentum = config["train"]["momentum"]
    plain_best = best_lr(best, b)
    recipe = Recipe(splits=k).suffix()
    at = cells[(cells["recipe"].fillna("") == recipe) & (cells["batch_size"] == b)]
    if plain_best is None or at.empty:
        return None
    # Solution 2's own best on validation, by the rule that picks every best lr
    lr = select_lr((lr, g["final_val_acc"].mean(), failed_seeds(g).any()) for lr, g in at.groupby("lr"))
    window = sorted(at["lr"].unique())
    edge = " (the edge of its window)" if len(window) > 1 and lr in (window[0], window[-1]) else ""
    split = per_seed(cells, b, lr, "final_test_acc", recipe)
    plain = per_seed(grid_cells(cells), b, plain_best, "final_test_acc")
    d = paired_difference(split, plain)
    verdict, why = decide(d, +1, ACC_MARGIN)
    return {
        "key": "solution2",
        "claim": f"Solution 2 (one forward pass, k updates from k slices) helps a big batch (momentum {momentum:g}).",
        "verdict": verdict,
        "headline": f"{100 * d.mean:+.2f} points [{100 * d.lo:+.2f}, {100 * d.hi:+.2f}] against tuned plain training (test)",
        "difference": d.as_dict(),
        "evidence": f"Batch {b}: Solution 2 (k = {k}) at its best lr {lr:g}{edge} of"
        f" {', '.join(f'{v:g}' for v in window)} minus plain training at its best lr {plain_best:g}, test"
        f" accuracy (both chosen on validation): {pct(d)} ({why}).",
        "test": "Best against best at one batch size and budget of epochs; Solution 2 costs k times the"
        " backward passes, which this comparison does not charge it for.",
    }


def equal_updates(cells: pd.DataFrame, best: pd.DataFrame, config: dict) -> dict | None:
    """Large batches get stuck in local minima: each equal-updates run (a large batch at its
    validation-best lr, for as many updates as the reference batch size makes in the study's
    epochs) against the reference at its best lr, paired by seed on test accuracy (both lrs were
    chosen on validation; failed seeds left out). If it reaches the reference it was short of
    steps, not stuck (Hoffer et al. 2017)."""
    eq = config.get("equal_updates") or {}
    long_runs = cells[cells["group"] == "equal_updates"] if "group" in cells else cells.iloc[:0]
    ref = int(eq.get("reference_batch_size", 0))
    ref_lr = best_lr(best, ref)
    if long_runs.empty or ref_lr is None:
        return {**LOCAL_MINIMA, "verdict": "inconclusive", "headline": "no equal-updates run", "runs": [], "evidence": "This study has no equal-updates"
                " run (equal_updates.enabled is false, or its batch sizes or its reference batch size"
                f" {ref} are not in grid.batch_sizes), and nothing else here can tell a stuck run from one"
                " short of steps."}
    g = grid_cells(cells)
    parts, verdicts, numbers = [], [], []
    for (b, lr, recipe), at in long_runs.groupby(["batch_size", "lr", "recipe"], sort=True):
        b = int(b)
        # on the test set: both lrs were chosen on validation; a seed that failed is left out
        longer = finished_per_seed(cells, b, lr, "final_test_acc", recipe)
        d = paired_difference(longer, finished_per_seed(g, ref, ref_lr, "final_test_acc"))  # stuck: below 0
        verdict, why = decide(d, -1, ACC_MARGIN)
        loss = paired_difference(log_per_seed(cells, b, lr, "final_train_loss", recipe), log_per_seed(g, ref, ref_lr, "final_train_loss"))
        gain = paired_difference(longer, finished_per_seed(g, b, lr, "final_test_acc"))
        failed = int(failed_seeds(at).sum())
        updates = int(at["steps"].max())
        parts.append(
            f"Batch {b} at lr {lr:g} for {updates:,} updates ({int(at['epochs_completed'].max())} epochs) against batch {ref}"
            f" at its best lr {ref_lr:g}: test accuracy minus batch {ref}'s {pct(d)} ({why}){f', {failed} failed seed(s) left out' if failed else ''}; its training loss x{math.exp(loss.mean):.3g}"
            f" [{math.exp(loss.lo):.3g}, {math.exp(loss.hi):.3g}] of batch {ref}'s; the extra updates gained it {pct(gain)}"
            f" over its own {config['train']['epochs']}-epoch run."
        )
        verdicts.append(verdict)
        numbers.append({"batch_size": b, "lr": float(lr), "updates": updates, "test_acc_minus_reference": d.as_dict(), "train_loss_log_ratio": loss.as_dict(), "gain_from_updates": gain.as_dict()})
    skipped = equal_updates_skipped(config)
    if skipped:
        parts.append("Not run: " + "; ".join(skipped) + ".")
    verdict = verdicts[0] if len(set(verdicts)) == 1 else "mixed"
    headline = "; ".join(
        f"batch {r['batch_size']} after {r['updates']:,} updates minus batch {ref}: {100 * r['test_acc_minus_reference']['mean']:+.2f}"
        f" points [{100 * r['test_acc_minus_reference']['lo']:+.2f}, {100 * r['test_acc_minus_reference']['hi']:+.2f}] (test)"
        for r in numbers
    )
    return {**LOCAL_MINIMA, "verdict": verdict, "headline": headline, "runs": numbers, "evidence": " ".join(parts)}


LOCAL_MINIMA = {
    "key": "local_minima",
    "claim": "Large batches get stuck in local minima.",
    "test": "Equal updates, each batch size at its own validation-best lr, compared on the test set: a large batch"
    " that then matches the small one was short of steps, not stuck (supported only if it stays below it by more than"
    f" {100 * ACC_MARGIN:.1f} points). It cannot tell a worse minimum from a slower approach to the same one"
    " beyond the updates given.",
}


def paired_verdicts(cells, epochs, probes, best, config, exponent: dict | None = None) -> list[dict]:
    """The claims decided by paired comparisons over seeds, in the report's order."""
    found = [
        oscillation(cells, best),
        epoch_time(epochs, best),
        gradient_direction(cells, best),
        late_blowup(cells, probes, config),
        lr_follows_batch(best, exponent),
        equal_updates(cells, best, config),
        solution2_helps(cells, best, config),
    ]
    return [v for v in found if v is not None]


# the groups of cells each verdict reads: in a partial report a verdict waits until they are done
NEEDS = {
    "oscillation": {"grid"},
    "epoch_time": {"grid"},
    "gradient": {"grid"},
    "late_blowup": {"grid"},
    "lr_follows_batch": {"grid"},
    "local_minima": {"grid", "equal_updates"},
    "solution2": {"grid", "solution2"},
}


def waiting_for(verdicts: list[dict], missing: dict[str, int]) -> list[dict]:
    """The verdicts of a partial study: one whose groups still miss cells ({group: how many})
    waits for them instead of deciding on part of its data."""
    out = []
    for v in verdicts:
        short = {g: missing[g] for g in sorted(NEEDS.get(v["key"], {"grid"})) if missing.get(g)}
        if short:
            left = ", ".join(f"{n} {g} cell(s)" for g, n in short.items())
            v = {**v, "verdict": "waiting", "headline": f"waits for {left}", "evidence": f"Not decided yet: {left} still to finish."}
        out.append(v)
    return out
