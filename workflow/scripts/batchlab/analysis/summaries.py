"""The numbers behind the report's findings and tables, computed once, in aggregate (they are
written to analysis.json under "summaries"); the report only formats and draws them.

Each function takes aggregate's tables and returns plain, JSON-ready records: means with their
95% intervals over seeds, rank correlations, counts. Comparisons between two settings are paired
over seeds (batchlab.analysis.stats).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from batchlab.analysis.league import accumulation, league
from batchlab.analysis.rows import at_best_lr, at_lr, failed_seeds, grid_cells, nearest, rows_of
from batchlab.analysis.stats import mean_ci, spearman, trend
from batchlab.study import momentum_of, solution2_cells

UNIT = (0.0, 1.0)  # an accuracy's range
POSITIVE = (0.0, math.inf)


def speed(cells: pd.DataFrame) -> dict:
    """Iterations and wall time per epoch by batch size (medians over the grid's cells)."""
    g = grid_cells(cells)
    per = (
        g.groupby("batch_size")
        .agg(iterations_per_epoch=("iterations_per_epoch", "first"), seconds=("epoch_seconds", "median"), samples_per_s=("samples_per_s", "median"))
        .reset_index()
    )
    sizes = g["ensemble_size"].dropna() if "ensemble_size" in g else pd.Series(dtype=float)
    return {"per_batch": per[per["seconds"].notna()].to_dict("records"), "max_ensemble": int(sizes.max()) if len(sizes) else 1}


def oscillation_trend(settings: pd.DataFrame, lr: float) -> dict:
    """The post's per-iteration oscillation against batch size at one lr."""
    at = at_lr(settings, lr)
    at = at[at["oscillation"].notna()].sort_values("batch_size")
    falls = int((np.diff(at["oscillation"].to_numpy()) < 0).sum())
    return {
        "lr": lr,
        "rows": at[["batch_size", "oscillation"]].to_dict("records"),
        "rho": spearman(at["batch_size"], at["oscillation"]),
        "falls": falls,
        "steps": max(0, len(at) - 1),
    }


def failures(cells: pd.DataFrame, epochs_planned: int) -> dict:
    """Every seed run of the grid that diverged, collapsed or failed to learn, with when."""
    g = grid_cells(cells).sort_values(["batch_size", "lr", "seed"])
    out = {}
    for status in ("diverged", "collapsed"):
        rows = []
        for r in g[g["status"] == status].itertuples():
            planned = int(r.iterations_per_epoch) * epochs_planned
            rows.append({"batch_size": int(r.batch_size), "lr": float(r.lr), "seed": int(r.seed), "stopped_step": int(r.stopped_step),
                         "stopped_epoch": int(r.stopped_epoch), "late": bool(r.stopped_step > planned / 2)})  # fmt: skip
        out[status] = rows
    poor = g[g["failed_to_learn"].astype(bool)] if "failed_to_learn" in g else g.iloc[:0]
    out["failed_to_learn"] = [
        {"batch_size": int(r.batch_size), "lr": float(r.lr), "seed": int(r.seed), "final_val_acc": float(r.final_val_acc)}
        for r in poor.itertuples()
    ]
    out["epochs_planned"] = epochs_planned
    return out


def convergence(cells: pd.DataFrame, best: pd.DataFrame) -> list[dict]:
    """Each batch size at its best lr: final validation and test accuracy and the iterations,
    samples and seconds until the smoothed training loss reaches report.loss_target."""
    at = at_best_lr(grid_cells(cells), best)
    if at.empty:
        return []
    agg = at.groupby("batch_size").agg(
        acc=("final_val_acc", "mean"),
        test=("final_test_acc", "mean"),
        steps=("steps_to_target", lambda s: s.astype(float).mean()),
        samples=("samples_to_target", lambda s: s.astype(float).mean()),
        seconds=("seconds_to_target", "mean"),
    )
    return agg.reset_index().to_dict("records")


def target_fates(targets: pd.DataFrame, cells: pd.DataFrame) -> list[dict]:
    """Per batch size, what became of its grid cells: reached the target, did not, failed."""
    g = grid_cells(cells)
    out = []
    for b in targets["batch_size"] if targets is not None else []:
        at = g[g["batch_size"] == b]
        failed = failed_seeds(at)
        reached = at["steps_to_acc"].notna() & ~failed  # a seed that got there and then failed counts as failed
        out.append({"batch_size": int(b), "reached": int(reached.sum()), "missed": int((~reached & ~failed).sum()), "failed": int(failed.sum())})
    return out


def noise(probes_at_best: pd.DataFrame, cells: pd.DataFrame, best: pd.DataFrame) -> dict:
    """B_simple as the loss falls (at each batch size's best lr), at the end and at the moment
    the target accuracy is reached, over the finished cells at their best lr."""
    data = probes_at_best[np.isfinite(probes_at_best["b_simple"]) & (probes_at_best["b_simple"] > 0)] if len(probes_at_best) else probes_at_best
    at = at_best_lr(grid_cells(cells), best)
    at = at[at["status"] == "ok"]
    out = {
        "usable": bool(len(data)),
        "b_simple_end": over_seeds(at, "b_simple_end"),
        "b_simple_at_target": over_seeds(at, "b_simple_at_target"),
        "b_simple_by_batch": [
            {"batch_size": int(b), "end": mean_ci(g["b_simple_end"], POSITIVE),
             "at_target": mean_ci(g.get("b_simple_at_target", pd.Series(dtype=float)), POSITIVE)}
            for b, g in at.groupby("batch_size")
        ],
    }  # fmt: skip
    share = cells["measure_share"].dropna() if "measure_share" in cells else pd.Series(dtype=float)
    out["measure_share"] = {"median": float(share.median()) if len(share) else float("nan"), "max": float(share.max()) if len(share) else float("nan")}
    if len(data):
        loss = data["recent_train_loss"]
        out["rho"] = spearman(loss, data["b_simple"])
        out["early"] = float(data[loss >= loss.quantile(0.75)]["b_simple"].median())
        out["late"] = float(data[loss <= loss.quantile(0.25)]["b_simple"].median())
        out["final_loss"] = float(data.sort_values("step").groupby(["batch_size", "seed"])["recent_train_loss"].last().median())
    return out


def over_seeds(at: pd.DataFrame, col: str) -> dict:
    """A measure over batch sizes at their best lrs: averaged over the batch sizes within each
    seed first (the seeds are the replicates; batch sizes are not), then its interval over seeds."""
    if col not in at or at[col].notna().sum() == 0:
        return mean_ci([])
    per_seed = pd.to_numeric(at[col], errors="coerce").groupby(at["seed"]).mean()
    return mean_ci(per_seed, POSITIVE)


def sharpness(cells: pd.DataFrame, best: pd.DataFrame) -> dict:
    """Per batch size at its best lr (finished seeds): the final sharpness and the
    generalization gap with their intervals, sharpness x lr / 2 (above 1 plain SGD's step
    overshoots along the sharpest direction) and the power iteration's last relative change."""
    at = at_best_lr(grid_cells(cells), best)
    at = at[at["status"] == "ok"]
    rows = []
    for b, g in at.groupby("batch_size"):
        s, gap = mean_ci(g["final_sharpness"]), mean_ci(g["generalization_gap"], (-1.0, 1.0))
        rows.append({
            "batch_size": int(b), "lr": float(g["lr"].iloc[0]), "sharpness": s["mean"], "sharpness_lo": s["lo"],
            "sharpness_hi": s["hi"], "gap": gap["mean"], "gap_lo": gap["lo"], "gap_hi": gap["hi"], "seeds": s["n"],
            "stability": float(g["sharpness_lr_ratio"].mean()) if "sharpness_lr_ratio" in g else float("nan"),
            "change": float(g["sharpness_change"].max()) if "sharpness_change" in g else float("nan"),
        })  # fmt: skip
    table = pd.DataFrame(rows)
    trends = {c: trend(table["batch_size"], table[c]) for c in ("sharpness", "gap")} if len(table) >= 2 else {}
    return {"rows": rows, "trends": trends}


def solution2(cells: pd.DataFrame, config: dict) -> list[dict]:
    """Each Solution 2 comparison cell: its validation accuracy and training loss with their
    intervals and its failed seeds (diverged, collapsed or failed to learn)."""
    sol = config.get("solution2") or {}
    if not sol.get("enabled"):
        return []
    rows = []
    for c in solution2_cells(config):
        at = rows_of(cells, c.batch_size, c.lr, c.recipe.suffix())
        if at.empty:
            continue
        rows.append({
            "momentum": momentum_of(config, c.recipe.optimizer), "training": c.variant.split(": ", 1)[1],
            "updates_per_batch": c.recipe.splits, "val_acc": mean_ci(at["final_val_acc"], UNIT),
            "train_loss": mean_ci(at["final_train_loss"], POSITIVE), "failed": int(failed_seeds(at).sum()), "seeds": int(len(at)),
            "lr": c.lr, "recipe": c.recipe.suffix(),
        })  # fmt: skip
    return rows


def equal_updates(cells: pd.DataFrame) -> list[dict]:
    """Each equal-updates run: its updates, epochs and end point (validation accuracy and
    training loss with their intervals)."""
    if "group" not in cells:
        return []
    out = []
    for (b, lr, recipe), at in cells[cells["group"] == "equal_updates"].groupby(["batch_size", "lr", "recipe"]):
        out.append({
            "batch_size": int(b), "lr": float(lr), "recipe": recipe, "updates": int(at["steps"].max()),
            "epochs": int(at["epochs_completed"].max()), "val_acc": mean_ci(at["final_val_acc"], UNIT),
            "train_loss": mean_ci(at["final_train_loss"], POSITIVE), "failed": int(failed_seeds(at).sum()), "seeds": int(len(at)),
        })  # fmt: skip
    return out


def all_summaries(cells, settings, best, targets, probes, curves, config: dict) -> dict:
    """Every summary the report formats, in one record."""
    lrs = sorted(settings["lr"].unique())
    ref_lr = nearest(lrs, config["report"]["reference_lr"]) if lrs else float("nan")
    probes_at_best = at_best_lr(grid_cells(probes), best) if probes is not None and len(probes) else pd.DataFrame()
    return {
        "reference_lr": ref_lr,
        "speed": speed(cells),
        "oscillation_trend": oscillation_trend(settings, ref_lr),
        "failures": failures(cells, config["train"]["epochs"]),
        "convergence": convergence(cells, best),
        "target_fates": target_fates(targets, cells),
        "noise": noise(probes_at_best, cells, best),
        "sharpness": sharpness(cells, best),
        "remedies": league(cells, probes, config),
        "accumulation": accumulation(cells, config),
        "solution2": solution2(cells, config),
        "equal_updates": equal_updates(cells),
    }
