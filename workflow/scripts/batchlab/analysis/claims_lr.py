"""The verdicts on the learning rate and the large-batch remedies: the best lr against batch
size, Solution 2 against tuned plain training, the equal-updates run (rules listed in
batchlab.analysis.verdicts)."""

from __future__ import annotations

import math

import pandas as pd

from batchlab.analysis.family import primary
from batchlab.analysis.fits import fit_exponent
from batchlab.analysis.lr_response import matrices, optimum
from batchlab.analysis.rows import failed_seeds, grid_cells
from batchlab.analysis.selection import best_lr as select_lr
from batchlab.analysis.stats import paired_difference
from batchlab.analysis.verdict_tools import (
    ACC_MARGIN,
    best_lr,
    finished_per_seed,
    log_per_seed,
    matched_stage,
    pct,
    per_seed,
    points,
)
from batchlab.cells import Recipe
from batchlab.study import equal_updates_skipped, momentum_of, primary_optimizer


def lr_follows_batch(cells: pd.DataFrame, response: pd.DataFrame, law: dict) -> dict | None:
    """Small batches want a small lr and large batches a large one: each seed's own exponent
    (the slope of log optimum against log batch size over the batch sizes whose optimum lies
    inside its window, each seed's optimum fitted to its own lr response) is above 0 (supported)
    or short of 0.1 (flat or falling: not supported), decided by batchlab.analysis.family. The
    law the optima follow (batchlab.analysis.lr_law) is reported beside it."""
    g = grid_cells(cells)
    inside = response[response["window_edge"].isna()] if len(response) else response
    used = sorted(int(b) for b in inside["batch_size"]) if len(inside) else []
    if len(used) < 2:
        return None
    slopes = seed_exponents(g, used)
    d = paired_difference(slopes, {s: 0.0 for s in slopes})
    optima = "; ".join(
        f"batch {int(r.batch_size)}: {r.lr_opt:.3g} " + (f"[{r.lr_opt_lo:.3g}, {r.lr_opt_hi:.3g}]" if math.isfinite(r.lr_opt_lo) else f"(no interval: {r.no_interval})")
        for r in response.itertuples()
        if math.isfinite(r.lr_opt)
    )
    return {
        "key": "lr_follows_batch",
        "claim": "Small batches want a small learning rate and large batches a large one.",
        "verdict": "inconclusive",
        "headline": f"each seed's optimum lr ∝ b^{d.mean:.2f}" + (f" [{d.lo:.2f}, {d.hi:.2f}]" if math.isfinite(d.lo) else "") + f"; {law_text(law)}",
        "exponent": d.as_dict(),
        "law": law,
        "primary": primary(d, +1, FLAT),
        "evidence": f"Fitted optimum lr (validation error against log lr over each window, failures as a boundary;"
        f" 95% interval from seeds resampled through the whole fit): {optima}. Each seed's exponent of optimum lr"
        f" against batch size over batch sizes {used}: mean {d.mean:.2f} over {d.n} seeds. {law_text(law)[0].upper()}{law_text(law)[1:]}.",
        "test": f"One-sided: each seed's exponent above 0 (supported) or short of {FLAT} (not supported). A seed's"
        " optimum is fitted to its own curve, so the test holds the fit's own variability; the law beside it is"
        " judged by AICc on the optima.",
    }


FLAT = 0.1  # an exponent below this: the optimum lr is flat in batch size


def seed_exponents(g: pd.DataFrame, used: list[int]) -> dict[int, float]:
    """{seed: slope of log optimum lr against log batch size}, each seed's optima fitted to its
    own lr response (batchlab.analysis.lr_response.optimum)."""
    mats = {b: matrices(g, b) for b in used}
    seeds = sorted(set.intersection(*(set(m[1]) for m in mats.values())))
    out = {}
    for s in seeds:
        opts = []
        for b in used:
            lrs, have, acc, failed = mats[b]
            i = have.index(s)
            opts.append(optimum(lrs, acc[[i]], failed[[i]])[0])
        if all(math.isfinite(o) for o in opts):
            out[s] = fit_exponent(used, opts)
    return out


def law_text(law: dict) -> str:
    """The saturating law's fit and which law the data prefer, in words."""
    if not law.get("laws"):
        return f"no law fitted ({law.get('why_not', 'too few optima')})"
    sat = law["laws"]["saturating"]
    weights = ", ".join(f"{k} {v.get('weight', math.nan):.2f}" for k, v in law["laws"].items())

    def ci(name):
        e = law[name]
        return f"[{e['lo']:.3g}, {e['hi']:.3g}]" if math.isfinite(e["lo"]) else f"(no interval: {e.get('why_not', '')})"

    return (
        f"saturating law lr_max {sat['lr_max']:.3g} {ci('lr_max')}, B_noise {sat['b_noise']:.0f} {ci('b_noise')};"
        f" preferred: {law['preferred']} (AICc weights: {weights})"
    )


def solution2_helps(cells: pd.DataFrame, best: pd.DataFrame, config: dict) -> dict | None:
    """Solution 2 helps a big batch: its momentum variant (at momentum 0 Solution 2 is plain SGD
    at k x lr, an identity the study shows as a fact: analysis.solution2_equivalence, so a verdict
    on it could not fail) at its own best lr, inside its window, against plain training at the
    best lr of its batch size (best against tuned plain), paired on the test set."""
    sol = config.get("solution2") or {}
    if not sol.get("enabled"):
        return None
    b, k = sol["batch_size"], sol["splits"]
    variant = "momentum" if "momentum" in (sol.get("optimizers") or []) else primary_optimizer(config)
    momentum = momentum_of(config, variant)
    plain_best = best_lr(best, b)
    recipe = Recipe(optimizer=variant, splits=k).suffix()
    at = cells[(cells["recipe"].fillna("") == recipe) & (cells["batch_size"] == b)]
    if plain_best is None or at.empty:
        return None
    # Solution 2's own best on validation, by the rule that picks every best lr
    lr = select_lr((lr, g["final_val_acc"].mean(), failed_seeds(g).any()) for lr, g in at.groupby("lr"))
    window = sorted(at["lr"].unique())
    edge = len(window) > 1 and lr in (window[0], window[-1])
    split = per_seed(cells, b, lr, "final_test_acc", recipe)
    plain = per_seed(grid_cells(cells), b, plain_best, "final_test_acc")
    d = paired_difference(split, plain)
    out = {
        "key": "solution2",
        "claim": f"Solution 2 (one forward pass, k updates from k slices) helps a big batch (momentum {momentum:g}).",
        "verdict": "inconclusive",
        "headline": f"{points(d)} against tuned plain training (test)",
        "difference": d.as_dict(),
        "evidence": f"Batch {b}: Solution 2 (k = {k}, momentum {momentum:g}) at its best lr {lr:g}"
        f"{' (the edge of its window)' if edge else ''} of {', '.join(f'{v:g}' for v in window)} minus plain"
        f" training at its best lr {plain_best:g}, test accuracy (both chosen on validation): {pct(d)}.",
        "test": "Best against best at one batch size and budget of epochs, on the momentum variant (at momentum 0"
        " Solution 2 is plain SGD at k × lr: shown as an identity, not tested); Solution 2 costs k times the"
        " backward passes, which this comparison does not charge it for.",
    }
    if momentum == 0:
        out["why"] = "at momentum 0 Solution 2 is plain SGD at k × lr (an identity, not a claim that could fail): list momentum in solution2.optimizers"
        return {**out, "evidence": f"{out['evidence']} Not decided: {out['why']}."}
    if edge:
        out["why"] = f"its best lr {lr:g} lies at the edge of its window: widen solution2.learning_rates"
        return {**out, "evidence": f"{out['evidence']} Not decided: {out['why']}."}
    return {**out, "primary": primary(d, +1, ACC_MARGIN)}


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
    parts, tests, numbers = [], [], []
    for (b, lr, recipe), at in long_runs.groupby(["batch_size", "lr", "recipe"], sort=True):
        b = int(b)
        # on the test set: both lrs were chosen on validation; a seed that failed is left out
        longer = finished_per_seed(cells, b, lr, "final_test_acc", recipe)
        d = paired_difference(longer, finished_per_seed(g, ref, ref_lr, "final_test_acc"))  # stuck: below 0
        loss = paired_difference(log_per_seed(cells, b, lr, "final_train_loss", recipe), log_per_seed(g, ref, ref_lr, "final_train_loss"))
        gain = paired_difference(longer, finished_per_seed(g, b, lr, "final_test_acc"))
        failed = int(failed_seeds(at).sum())
        updates = int(at["steps"].max())
        parts.append(
            f"Batch {b} at lr {lr:g} for {updates:,} updates ({int(at['epochs_completed'].max())} epochs) against batch {ref}"
            f" at its best lr {ref_lr:g}: test accuracy minus batch {ref}'s {pct(d)}{f', {failed} failed seed(s) left out' if failed else ''}; its training loss x{math.exp(loss.mean):.3g}"
            f" [{math.exp(loss.lo):.3g}, {math.exp(loss.hi):.3g}] of batch {ref}'s; the extra updates gained it {pct(gain)}"
            f" over its own {config['train']['epochs']}-epoch run."
        )
        stage = matched_stage(cells, (b, lr, recipe), (ref, ref_lr, None), "val_acc", -1)
        if stage is not None:
            parts.append(
                f"At matched stage (where the tracked training loss first reaches {stage['level']:g}, the lowest both"
                f" reach), its validation accuracy minus batch {ref}'s: {points(stage)}, one-sided p = {stage['p']:.3g}."
            )
        tests.append(primary(d, -1, ACC_MARGIN))
        numbers.append({"batch_size": b, "lr": float(lr), "updates": updates, "test_acc_minus_reference": d.as_dict(), "train_loss_log_ratio": loss.as_dict(), "gain_from_updates": gain.as_dict(), "at_matched_stage": stage})
    skipped = equal_updates_skipped(config)
    if skipped:
        parts.append("Not run: " + "; ".join(skipped) + ".")
    headline = "; ".join(
        f"batch {r['batch_size']} after {r['updates']:,} updates minus batch {ref}: {points(r['test_acc_minus_reference'])} (test)"
        for r in numbers
    )
    # the largest batch size's run decides; the others are reported beside it
    return {**LOCAL_MINIMA, "verdict": "inconclusive", "headline": headline, "runs": numbers, "primary": tests[-1], "evidence": " ".join(parts)}


LOCAL_MINIMA = {
    "key": "local_minima",
    "claim": "Large batches get stuck in local minima.",
    "test": "One-sided, equal updates, each batch size at its own validation-best lr, compared on the test set: a large"
    " batch that then matches the small one was short of steps, not stuck (supported: below it; not supported: within"
    f" {100 * ACC_MARGIN:.1f} points of it or above). It cannot tell a worse minimum from a slower approach to the same one"
    " beyond the updates given. The validation accuracy at matched stage (equal tracked training loss: a worse minimum"
    " generalizes worse at the same fit) is reported beside it, not decided.",
}
