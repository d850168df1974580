"""Steps, samples and seconds to a target validation accuracy, and the critical batch size."""

from __future__ import annotations

import pandas as pd

from batchlab.analysis.stats import is_finite
from batchlab.report import charts
from batchlab.report.fmt import ci_text, fmt_int, fmt_num, fmt_pct, html_table
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section


def findings(targets: pd.DataFrame, fit: dict, target: float) -> list[str]:
    reached = targets[targets["reached"].astype(bool)]
    missed = targets[~targets["reached"].astype(bool)]
    if reached.empty:
        return [f"No batch size reached {fmt_pct(target)} validation accuracy with every seed; lower report.target_val_acc or train longer."]
    out = [
        f"{fmt_pct(target)} validation accuracy is reached (by every seed) at batch "
        + ", ".join(f"{r.batch_size} in {fmt_int(r.steps)} steps ({fmt_int(r.samples)} samples, lr {r.lr:g})" for r in reached.itertuples())
        + "."
    ]
    if len(missed):
        out.append("Never reached within the planned epochs: batch " + ", ".join(f"{r.batch_size} (best {fmt_pct(r.best_acc)})" for r in missed.itertuples()) + ".")
    for reg in fit.get("regimes", []):
        out.append(
            f"From batch {reg['from']} to {reg['to']} the steps to target realise {reg['efficiency']:.0%}"
            f" of the ideal {reg['to'] / reg['from']:.3g}× reduction (on log scale): {reg['regime']}."
        )
    if is_finite(fit.get("b_crit")):
        interval = f" [{fmt_num(fit['b_crit_lo'])}, {fmt_num(fit['b_crit_hi'])}] (95% bootstrap interval over seeds)" if is_finite(fit.get("b_crit_lo")) else ""
        edge = " The best fit lies at the end of the search range: the data do not determine B_crit." if fit.get("at_search_edge") else ""
        out.append(
            f"Fitting S = S_min(1 + B_crit/B) to the steps gives S_min = {fmt_int(fit['s_min'])} steps, E_min ="
            f" {fmt_int(fit['e_min'])} samples and a critical batch size B_crit = {fmt_num(fit['b_crit'])}{interval}"
            f" (root-mean-square residual {fmt_num(fit['rms_log'], 2)} in log steps, {fit['n']} batch sizes).{edge}"
        )
    else:
        out.append(f"The trade-off S = S_min(1 + B_crit/B) needs three batch sizes that reach the target; {fit.get('n', 0)} did.")
    return out


def table(targets: pd.DataFrame, fates: list[dict]) -> pd.DataFrame:
    by_b = {f["batch_size"]: f for f in fates}
    rows = []
    for r in targets.itertuples():
        f = by_b.get(r.batch_size, {})
        row = {"batch size": r.batch_size, "best lr": "—", "steps": "not reached", "samples": "", "seconds": ""}
        if r.reached:
            row.update({
                "best lr": f"{r.lr:g}",
                "steps": ci_text({"mean": r.steps, "lo": r.steps_lo, "hi": r.steps_hi}, fmt_int),
                "samples": ci_text({"mean": r.samples, "lo": r.samples_lo, "hi": r.samples_hi}, fmt_int),
                "seconds": ci_text({"mean": r.seconds, "lo": r.seconds_lo, "hi": r.seconds_hi}),
            })  # fmt: skip
        fate = f"{f.get('reached', 0)} reached, {f.get('missed', 0)} did not, {f.get('failed', 0)} failed"
        rows.append({**row, "its cells, all lrs and seeds (failed: diverged, collapsed or failed to learn)": fate})
    return pd.DataFrame(rows)


def section(study: Inputs) -> Section | None:
    if study.targets.empty:
        return None
    target = study.analysis.get("target_val_acc", study.config["report"]["target_val_acc"])
    mea, fit = study.config.get("measure", {}), study.critical
    subset = mea.get("probe_val_size", 0)
    note = f" Between epoch ends the probes measure it on the first {subset:,} validation images (epoch ends: all of them)." if subset else ""
    return Section(
        "steps-to-target",
        "Steps, samples and seconds to a target",
        f"Shallue et al. (2018): how many steps (and samples, and seconds) each batch size needs to reach"
        f" {target:.1%} validation accuracy, at the learning rate that gets there fastest (mean over seeds; every"
        " seed must reach it; bars: 95% intervals; validation accuracy is measured every"
        f" {mea.get('probe_every_samples', 0):,} samples and the crossing interpolated).{note} On log-log axes"
        " perfect scaling (twice the batch, half the steps) is a line of slope −1; where the curve flattens,"
        " bigger batches stop saving steps.",
        charts=[
            ("steps-vs-batch-size", charts.steps_to_target(study.targets, fit, "steps"), ""),
            ("samples-vs-batch-size", charts.steps_to_target(study.targets, fit, "samples"), ""),
        ],
        tables=[html_table(table(study.targets, study.summaries.get("target_fates", [])))],
        findings=findings(study.targets, fit, target),
    )
