"""Sharpness of the final model and the generalization gap (Keskar et al. 2017), beside plain
SGD's 2 / lr stability limit."""

from __future__ import annotations

import pandas as pd

from batchlab.report import charts
from batchlab.report.fmt import fmt_num
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section


def findings(s: dict, iterations: int) -> list[str]:
    table = pd.DataFrame(s["rows"])
    out = []
    first, last = table.iloc[0], table.iloc[-1]
    for col, name in (("sharpness", "Sharpness (top Hessian eigenvalue)"), ("gap", "The generalization gap (train − test accuracy)")):
        t = s["trends"][col]
        rho = t["rho"] if t["rho"] is not None else float("nan")
        way = "grows" if rho >= 0.5 else "falls" if rho <= -0.5 else "shows no steady trend"
        fmt = fmt_num if col == "sharpness" else (lambda v: f"{100 * v:+.2f} points" if v is not None else "n/a")
        out.append(
            f"{name} {way} with batch size ({t['basis']}): {fmt(first[col])} at batch {int(first['batch_size'])} and"
            f" {fmt(last[col])} at batch {int(last['batch_size'])}, each at its best lr."
        )
    if table["stability"].notna().any():
        out.append(
            "Against plain SGD's stability limit 2 / lr (sharpness × lr / 2 above 1: a step overshoots along the"
            " sharpest direction): " + ", ".join(f"{r.stability:.2f} at batch {int(r.batch_size)}" for r in table.itertuples()) + "."
        )
    if table["change"].notna().any():
        worst = table["change"].max()
        state = "(converged)." if worst <= 1e-3 else f"(not converged in {iterations} steps: the sharpness is an estimate)."
        out.append(f"The power iteration's last relative change was at most {worst:.1e} {state}")
    return out


def section(study: Inputs) -> Section | None:
    s = study.summaries.get("sharpness")
    if not s or len(s["rows"]) < 2:
        return None
    mea = study.config["measure"]
    table = pd.DataFrame(s["rows"]).astype(float, errors="ignore")
    return Section(
        "sharpness",
        "Sharpness and the generalization gap",
        "Keskar et al. (2017) argue that large batches converge to sharp minima that generalize worse. Sharpness here"
        f" is the largest eigenvalue of the Hessian of the training loss on the first {mea['sharpness_subset']:,} training"
        f" images (power iteration on Hessian-vector products, {mea['sharpness_iterations']} steps at most); the gap is"
        f" training accuracy (first {mea['train_eval_size']:,} images) minus test accuracy. Each batch size at its best"
        " lr; bars: 95% intervals over seeds.",
        charts=[
            ("sharpness-vs-batch-size", charts.with_interval(table, "sharpness", "Sharpness of the final model", "top Hessian eigenvalue (log scale)", True), ""),
            ("gap-vs-batch-size", charts.with_interval(table, "gap", "Generalization gap of the final model", "train − test accuracy", False), ""),
        ],
        findings=findings(s, mea["sharpness_iterations"]),
    )
