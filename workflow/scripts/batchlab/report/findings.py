"""The study's findings in sentences, each written from aggregate's summaries: speed, the
post's oscillation measure, the best lrs, the failures, how fast and how far."""

from __future__ import annotations

import math

from batchlab.analysis.stats import is_finite
from batchlab.report.fmt import cell_label, fmt_int, fmt_num, fmt_pct, grid_edge
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section


def speed(summary: dict) -> list[str]:
    per = summary["per_batch"]
    if not per:
        return ["No cell completed an epoch, so there is no time per epoch to compare."]
    first, last = per[0], per[-1]
    fastest = min(per, key=lambda r: r["seconds"])
    out = [
        f"An epoch is ceil(N/b) iterations: {fmt_int(first['iterations_per_epoch'])} at batch {first['batch_size']}"
        f" and {fmt_int(last['iterations_per_epoch'])} at batch {last['batch_size']}.",
        f"Wall time per epoch is {fmt_num(first['seconds'])} s at batch {first['batch_size']}"
        f" ({fmt_int(first['samples_per_s'])} samples/s) and {fmt_num(last['seconds'])} s at batch"
        f" {last['batch_size']} ({fmt_int(last['samples_per_s'])} samples/s); the fastest epoch is at"
        f" batch {fastest['batch_size']} ({fmt_num(fastest['seconds'])} s, median over its cells).",
    ]
    if summary["max_ensemble"] > 1:
        out.append(
            f"A cell's seeds train together (up to {summary['max_ensemble']} in one job); each seed is charged"
            " its share of the epoch they took together."
        )
    return out


def oscillation(trend: dict) -> list[str]:
    rows, lr = trend["rows"], trend["lr"]
    if len(rows) < 2:
        return [f"Too few finished cells at lr {lr:g} to compare oscillation across batch sizes."]
    rho, falls, steps = trend["rho"], trend["falls"], trend["steps"]
    if is_finite(rho):
        way = "falls steadily as batch size grows" if rho <= -0.9 else "tends to fall as batch size grows" if rho < -0.5 else "does not fall steadily with batch size"
    else:  # two batch sizes: the one step decides
        way = "falls as batch size grows" if falls == steps else "does not fall with batch size"
    first, last = rows[0], rows[-1]
    return [
        f"The post's measure of oscillation (each iteration's own mini-batch loss, whose sampling noise alone"
        f" shrinks as the batch grows) {way}: at lr {lr:g} the mean absolute change of the training loss from one"
        f" iteration to the next is {fmt_num(first['oscillation'])} at batch {first['batch_size']} and"
        f" {fmt_num(last['oscillation'])} at batch {last['batch_size']} ({falls} of {steps} steps up in batch"
        f" size lower it; Spearman rank correlation {fmt_num(rho, 2)}). The verdicts above use the model's own"
        " oscillation instead."
    ]


def optimum_text(r) -> str:
    opt = getattr(r, "lr_opt", None)
    if not is_finite(opt):
        return f"{r.best_lr:g} at batch {r.batch_size}"
    text = f"batch {r.batch_size}: best {r.best_lr:g}, fitted {opt:.3g}"
    if is_finite(getattr(r, "lr_opt_lo", None)):
        text += f" [{r.lr_opt_lo:.3g}, {r.lr_opt_hi:.3g}]"
    elif isinstance(getattr(r, "no_interval", None), str):
        text += f" (no interval: {r.no_interval})"
    near = getattr(r, "near_optimal", None)
    near = [float(v) for v in near] if near is not None and not isinstance(near, str) else []
    if len(near) > 1:
        text += "; near-optimal " + ", ".join(f"{v:g}" for v in near)
    return text


def best_lrs(study: Inputs) -> list[str]:
    best = study.best_lr
    out = [
        "Each batch size's lr response (validation error against log lr over its whole window, below the lr"
        " where a seed first failed; optimum with a 95% interval from seeds resampled through the whole fit;"
        f" near-optimal: the lrs the paired test cannot show 0.2 points worse than the best): {'; '.join(optimum_text(r) for r in best.itertuples())}."
    ]
    for r in best.itertuples():
        edge = grid_edge(getattr(r, "window_edge", None))
        if edge == "single lr":
            out.append(
                f"Window: at batch {r.batch_size} only one lr trains stably ({r.best_lr:g}), so no optimum can be fitted;"
                " it is left out of the law. Widen the window (grid.learning_rates)."
            )
        if edge in ("lowest", "highest"):
            way = "lower" if edge == "lowest" else "higher"
            out.append(
                f"Window edge: at batch {r.batch_size} the fitted optimum lies at the {edge} stable lr of its window,"
                f" so the true optimum may be {way}; it is left out of the law. Widen the window (grid.learning_rates)."
            )
    return out


def failures(summary: dict) -> list[str]:
    out, planned = [], summary["epochs_planned"]
    for status, verb in (("diverged", "diverged"), ("collapsed", "collapsed to chance level")):
        rows = summary[status]
        if not rows:
            out.append(f"No cell {verb}.")
            continue
        parts = [
            f"{cell_label(r['batch_size'], r['lr'])} (seed {r['seed']}) at iteration {fmt_int(r['stopped_step'])},"
            f" epoch {r['stopped_epoch']} of {planned} ({'late' if r['late'] else 'early'})"
            for r in rows
        ]
        out.append(f"{len(rows)} seed run{'' if len(rows) == 1 else 's'} {verb}: " + "; ".join(parts) + ".")
    poor = summary["failed_to_learn"]
    if poor:
        listing = "; ".join(f"{cell_label(r['batch_size'], r['lr'])} (seed {r['seed']}, {fmt_pct(r['final_val_acc'])})" for r in poor)
        out.append(
            f"{len(poor)} seed run(s) trained to the end but failed to learn (final validation accuracy"
            f" under 50%): {listing}. They count as failures, not as working settings."
        )
    return out


def convergence(rows: list[dict], target: float) -> list[str]:
    if not rows:
        return []
    top = max(rows, key=lambda r: r["acc"] if is_finite(r["acc"]) else -1)
    out = [
        f"How far: at its best lr, the highest final validation accuracy is {fmt_pct(top['acc'])} at batch"
        f" {top['batch_size']} (test {fmt_pct(top['test'])}); "
        + ", ".join(f"{fmt_pct(r['acc'])} at batch {r['batch_size']}" for r in rows)
        + "."
    ]
    reached = [r for r in rows if is_finite(r["steps"])]
    missed = [r for r in rows if not is_finite(r["steps"])]
    if reached:
        steps = min(reached, key=lambda r: r["steps"])
        samples = min(reached, key=lambda r: r["samples"])
        seconds = min(reached, key=lambda r: r["seconds"] if is_finite(r["seconds"]) else math.inf)
        out.append(
            f"How fast: the smoothed training loss reaches {target:g} in the fewest iterations at batch"
            f" {steps['batch_size']} ({fmt_int(steps['steps'])}), with the fewest samples at batch"
            f" {samples['batch_size']} ({fmt_int(samples['samples'])}) and the soonest in wall time at batch"
            f" {seconds['batch_size']} ({fmt_num(seconds['seconds'])} s)."
        )
    if missed:
        out.append(
            f"Never reaching a smoothed training loss of {target:g} at their best lr: batch "
            + ", ".join(str(r["batch_size"]) for r in missed)
            + "."
        )
    return out


def section(study: Inputs) -> Section | None:
    s = study.summaries
    if not s:
        return None
    text = (
        speed(s["speed"])
        + oscillation(s["oscillation_trend"])
        + best_lrs(study)
        + failures(s["failures"])
        + convergence(s["convergence"], study.config["report"]["loss_target"])
    )
    return Section("findings", "Findings", "Every sentence below is generated from this study's own numbers.", findings=text)
