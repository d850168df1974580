"""The verdicts on the learning rate and the large-batch remedies: the best lr against batch
size, Solution 2 against tuned plain training, the equal-updates run (rules listed in
batchlab.analysis.verdicts)."""

from __future__ import annotations

import math

import pandas as pd

from batchlab.analysis.rows import failed_seeds, grid_cells
from batchlab.analysis.selection import best_lr as select_lr
from batchlab.analysis.stats import decide, paired_difference
from batchlab.analysis.verdict_tools import (
    ACC_MARGIN,
    best_lr,
    finished_per_seed,
    log_per_seed,
    pct,
    per_seed,
)
from batchlab.cells import Recipe
from batchlab.study import equal_updates_skipped, momentum_of, primary_optimizer


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
    name = primary_optimizer(config)  # the grid's optimizer: its best lr is the reference
    momentum = momentum_of(config, name)
    plain_best = best_lr(best, b)
    recipe = Recipe(optimizer=name, splits=k).suffix()
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
