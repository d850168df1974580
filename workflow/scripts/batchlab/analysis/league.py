"""The huge-batch league: what helps when a huge batch cannot be avoided, judged against fairly
tuned baselines (Nado et al. 2021: tuned standard optimizers match LARS and LAMB).

At each huge batch size every arm of the design (batchlab.study.league_arms) is read at its lr
chosen on validation (batchlab.analysis.selection, the study's one rule), and compared paired by
seed on the test set:

- against tuned plain SGD (every other arm), and
- against the best tuned standard optimizer, chosen on validation (every arm that is not one);

each comparison a one-sided claim, "the arm is better", decided by exact sign-flip tests with
Holm's correction (batchlab.analysis.family) over the family of its batch size: each huge batch
size answers its own question, "if I must train at b". With ten seeds the exact test cannot go
below p = 1/1024, so one family for every batch size (over 51 hypotheses) could decide nothing.

Beside each arm: its accuracy at equal updates with the small batch (the reference batch size
at its own best lr, read off its validation curve at the arm's number of updates), the epochs
and steps it needs to reach the reference's final validation accuracy less the verdicts'
margin, 0.2 points (or that it never does within the run), and the wall time it would save on
hardware where a step costs the same at every batch size (steps x the reference's measured
time per step).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from batchlab.analysis.cell_summary import first_reach
from batchlab.analysis.family import decide_family, primary
from batchlab.analysis.rows import failed_seeds, rows_of
from batchlab.analysis.selection import best_lr
from batchlab.analysis.stats import mean_ci, paired_difference
from batchlab.analysis.verdict_tools import ACC_MARGIN
from batchlab.cells import Recipe
from batchlab.study import Arm, grid_cells_at, league_arms

UNIT = (0.0, 1.0)


def chosen(cells: pd.DataFrame, arm: Arm) -> tuple[float, pd.DataFrame] | None:
    """The arm's lr chosen on validation and its cell's rows; None when none of its cells ran."""
    found = []
    for c in arm.cells:
        at = rows_of(cells, c.batch_size, c.lr, c.recipe.suffix())
        if len(at):
            found.append((c.lr, at))
    if not found:
        return None
    lr = best_lr((lr, at["final_val_acc"].mean(), bool(failed_seeds(at).any())) for lr, at in found)
    return lr, next(at for x, at in found if x == lr)


def by_seed(at: pd.DataFrame, col: str) -> dict[int, float]:
    return {int(s): float(v) for s, v in zip(at["seed"], at[col], strict=True)}


def curve_at(probes: pd.DataFrame, seed: int, col: str, value: float) -> float:
    """A seed's validation accuracy at `value` of `col` (its step or epoch), interpolated
    between probes; NaN beyond its run."""
    p = probes[probes["seed"] == seed].sort_values(col)
    if p.empty or value > float(p[col].max()) + 1e-9:
        return math.nan
    return float(np.interp(value, p[col], p["val_acc"]))


def reach(probes: pd.DataFrame, seeds, col: str, target: float) -> dict[int, float]:
    """Per seed, the (fractional) step or epoch at which its validation accuracy first reaches
    the target; NaN where it never does."""
    out = {}
    for s in seeds:
        p = probes[probes["seed"] == s].sort_values(col)
        hit = first_reach(p[col], p["val_acc"], target) if len(p) else None
        out[int(s)] = math.nan if hit is None else float(hit)
    return out


def median_reached(values: dict[int, float]) -> dict:
    """The median over the seeds that reach, with the mean and its interval over them, how many
    do (of all), and each seed's value (NaN: never)."""
    hit = [v for v in values.values() if math.isfinite(v)]
    return {
        "median": float(np.median(hit)) if hit else math.nan, "ci": mean_ci(hit),
        "reached": len(hit), "seeds": len(values), "by_seed": {int(k): float(v) for k, v in values.items()},
    }  # fmt: skip


def reference(cells: pd.DataFrame, probes: pd.DataFrame, config: dict) -> dict | None:
    """The small batch at its own best lr: the accuracy to recover, and its curve."""
    rem = config["remedies"]
    b = rem["reference_batch_size"]
    pick = chosen(cells, Arm("reference", "tuned", True, tuple(grid_cells_at(config, b))))
    if pick is None:
        return None
    lr, at = pick
    p = rows_of(probes, b, lr, "")
    # within the verdicts' margin of its mean: about every seed of the reference itself reaches it
    target = float(at["final_val_acc"].mean()) - ACC_MARGIN
    return {
        "batch_size": b, "lr": lr, "rows": at, "probes": p, "target": target,
        "val_acc": mean_ci(at["final_val_acc"], UNIT), "test_acc": mean_ci(at["final_test_acc"], UNIT),
        "ms_per_step": float(at["ms_per_step"].mean()), "steps": int(at["steps"].max()),
        "steps_to_target": median_reached(reach(p, at["seed"], "step", target)),
    }  # fmt: skip


def arm_entry(arm: Arm, lr: float, at: pd.DataFrame, probes: pd.DataFrame, ref: dict, updates: int) -> dict:
    """One arm at its chosen lr: accuracies, updates, accuracy at `updates` (the huge batch's in
    one piece) beside the reference's there, and epochs and steps to the reference's accuracy."""
    c = next(c for c in arm.cells if c.lr == lr)
    p = rows_of(probes, c.batch_size, lr, c.recipe.suffix())
    seeds = [int(s) for s in at["seed"]]
    at_updates = {s: curve_at(p, s, "step", updates) for s in seeds}
    ref_at = {s: curve_at(ref["probes"], s, "step", updates) for s in seeds}
    steps_to = reach(p, seeds, "step", ref["target"])
    return {
        "arm": arm.name, "kind": arm.kind, "standard": arm.standard, "lr": lr, "recipe": c.recipe.suffix(),
        "window": [x.lr for x in arm.cells], "seeds": len(at), "failed": int(failed_seeds(at).sum()),
        "val_acc": mean_ci(at["final_val_acc"], UNIT), "test_acc": mean_ci(at["final_test_acc"], UNIT),
        "updates": int(at["steps"].max()), "epochs": int(at["epochs_completed"].max()),
        "equal_updates": {
            "updates": updates, "val_acc": mean_ci(list(at_updates.values()), UNIT),
            "gap": paired_difference(ref_at, at_updates).as_dict(),
        },
        "epochs_to_target": median_reached(reach(p, seeds, "epoch", ref["target"])),
        "steps_to_target": median_reached(steps_to),
        "test": by_seed(at, "final_test_acc"),
        "gap": paired_difference(by_seed(ref["rows"], "final_test_acc"), by_seed(at, "final_test_acc")).as_dict(),
    }  # fmt: skip


def comparisons(b: int, entries: list[dict]) -> list[dict]:
    """The league's claims at one batch size, each "the arm is better than its baseline" on
    the test set, paired by seed: against tuned SGD, and against the best standard optimizer."""
    sgd = next((e for e in entries if e["arm"] == "SGD"), None)
    standard = [e for e in entries if e["standard"] and e["kind"] == "tuned"]
    best_std = max(standard, key=lambda e: e["val_acc"]["mean"]) if standard else None
    out = []
    for e in entries:
        for base, kind in ((sgd, "tuned SGD"), (best_std, f"the best tuned standard optimizer ({best_std['arm'] if best_std else ''})")):
            # the best standard optimizer is compared with SGD once, and every other standard
            # optimizer only with SGD; where the best standard is SGD, once is enough
            if base is None or base is e or (kind != "tuned SGD" and (e["standard"] or base is sgd)):
                continue
            d = paired_difference(e["test"], base["test"])
            out.append({
                "key": f"league:{b}:{e['arm']}:{base['arm']}", "batch_size": b, "arm": e["arm"], "baseline": base["arm"],
                "against": kind, "claim": f"At batch {b}, {e['arm']} beats {kind}.",
                "evidence": (f"Test accuracy, {e['arm']} at lr {e['lr']:g} over {base['arm']} at lr {base['lr']:g} (each chosen on"
                             f" validation): {100 * d.mean:+.2f} points [{100 * d.lo:+.2f}, {100 * d.hi:+.2f}] over {d.n} paired seeds."),
                "primary": primary(d, +1, ACC_MARGIN),
            })  # fmt: skip
    return out


def league(cells: pd.DataFrame, probes: pd.DataFrame, config: dict) -> dict:
    """The whole league (module docstring); {} when the study has none."""
    rem = config.get("remedies") or {}
    if not rem.get("enabled") or probes is None:
        return {}
    ref = reference(cells, probes, config)
    if ref is None:
        return {}
    tables = []
    for b in sorted(rem["batch_sizes"]):
        picks = [(arm, chosen(cells, arm)) for arm in league_arms(config, b)]
        picks = [(arm, pick) for arm, pick in picks if pick is not None]
        sgd = next((pick for arm, pick in picks if arm.name == "SGD"), None)
        updates = int(sgd[1]["steps"].max()) if sgd else 0
        entries = [arm_entry(arm, lr, at, probes, ref, updates) for arm, (lr, at) in picks]
        # each batch size is its own question ("if I must train at b"): its own Holm family
        claims = comparisons(b, entries)
        table = {"batch_size": b, "arms": entries, "family_size": 2 * len(claims)}
        table["verdicts"] = [_public(v) for v in decide_family(claims)]
        table["answer"] = answer(table, ref)
        for e in entries:
            del e["test"]
        tables.append(table)
    public_ref = {k: v for k, v in ref.items() if k not in ("rows", "probes")}
    return {"reference": public_ref, "batch_sizes": tables}


def _public(v: dict) -> dict:
    keep = ("key", "arm", "baseline", "against", "claim", "evidence", "verdict", "why")
    return {**{k: v[k] for k in keep}, "gain": {k: v["primary"][k] for k in ("mean", "lo", "hi", "n")}, "decision": v["decision"]}


def answer(table: dict, ref: dict) -> dict:
    """The first-screen answer at one huge batch size: the best arm on validation, its gap to
    the small batch at equal epochs (test) and at equal updates (validation), the epochs it
    needs to reach the small batch's accuracy, and the wall time it saves where a step costs the
    same at every batch size (steps to the target x the reference's measured time per step)."""
    ok = [e for e in table["arms"] if not e["failed"]] or table["arms"]
    best = max(ok, key=lambda e: e["val_acc"]["mean"])
    # paired by seed where both reach the target: the reference's steps minus the arm's, at the
    # reference's measured time per step
    d = paired_difference(ref["steps_to_target"]["by_seed"], best["steps_to_target"]["by_seed"])
    saved = {k: v * ref["ms_per_step"] / 1000.0 for k, v in d.as_dict().items() if k in ("mean", "lo", "hi")}
    return {
        "arm": best["arm"], "lr": best["lr"], "test_acc": best["test_acc"], "gap": best["gap"],
        "gap_equal_updates": best["equal_updates"]["gap"], "updates": best["updates"], "epochs": best["epochs"],
        "epochs_to_target": best["epochs_to_target"], "steps_to_target": best["steps_to_target"],
        "reference_steps_to_target": ref["steps_to_target"], "seconds_saved": {**saved, "n": d.n},
    }  # fmt: skip


def accumulation(cells: pd.DataFrame, config: dict) -> list[dict]:
    """Each accumulated cell beside the same cell in one piece: peak memory and time per epoch
    (what it saves and costs), and the accuracy (the same update: equal to float rounding)."""
    if "group" not in cells:
        return []
    out = []
    for (b, lr, recipe), at in cells[cells["group"] == "accumulation"].groupby(["batch_size", "lr", "recipe"]):
        whole = rows_of(cells, int(b), float(lr), "")
        if whole.empty:
            continue
        diff = paired_difference(by_seed(at, "final_val_acc"), by_seed(whole, "final_val_acc"))
        out.append({
            "batch_size": int(b), "lr": float(lr), "recipe": recipe,
            "micro_batch": Recipe.parse(recipe).micro_batch,
            "peak_memory_mb": float(at["peak_memory_mb"].max()), "whole_peak_memory_mb": float(whole["peak_memory_mb"].max()),
            "epoch_seconds": float(at["epoch_seconds"].mean()), "whole_epoch_seconds": float(whole["epoch_seconds"].mean()),
            "largest_val_acc_difference": float(np.nanmax(np.abs(diff.diffs))) if diff.n else math.nan,
        })  # fmt: skip
    return out
