"""When a huge batch cannot be avoided: the league of remedies against fairly tuned baselines
(batchlab.analysis.league computes it; this formats and draws it)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from batchlab.analysis.rows import rows_of
from batchlab.analysis.stats import is_finite
from batchlab.report import charts
from batchlab.report.encodings import WIDTH, spec
from batchlab.report.fmt import ci_text, fmt_int, fmt_pct, fmt_points, html_table, mark
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section


def reached(r: dict, unit: str, planned: int | None = None) -> str:
    """'2.4 [2.2, 2.6] epochs (10/10 seeds)': the mean over the seeds that reach, with its
    interval; or 'not within 5 epochs' where fewer than half the seeds reach."""
    if r["reached"] * 2 < r["seeds"] or not is_finite(r["median"]):
        return f"not within {planned} epochs ({r['reached']}/{r['seeds']} seeds reach)" if planned else f"not reached ({r['reached']}/{r['seeds']})"
    fmt = (lambda x: f"{x:.2f}") if unit == "epochs" else (lambda x: fmt_int(round(x)))
    return f"{ci_text(r['ci'], fmt)} {unit} ({r['reached']}/{r['seeds']} seeds)"


def answer_table(s: dict, planned: int) -> pd.DataFrame:
    """The first-screen answer: per huge batch size, its best arm and what it recovers."""
    ref = s["reference"]
    rows = []
    for t in s["batch_sizes"]:
        a = t["answer"]
        saved = a["seconds_saved"]
        seconds = ci_text(saved, lambda x: f"{x:.1f}") + f" s ({saved['n']} seeds)" if saved["n"] else "n/a (not reached)"
        rows.append({
            "batch size": t["batch_size"], "best arm (chosen on validation)": f"{a['arm']}, lr {a['lr']:g}",
            "test accuracy": ci_text(a["test_acc"], fmt_pct),
            f"gap, batch {ref['batch_size']} minus the arm, equal epochs (test)": fmt_points(a["gap"]),
            "gap at equal updates (validation)": f"{fmt_points(a['gap_equal_updates'])}, after {fmt_int(a['updates'])} updates each",
            f"epochs to {fmt_pct(ref['target'])} (the target)": reached(a["epochs_to_target"], "epochs", planned),
            "steps to it": reached(a["steps_to_target"], "steps"),
            "wall time saved where a step costs the same": seconds,
        })  # fmt: skip
    return pd.DataFrame(rows)


def league_table(t: dict, planned: int) -> pd.DataFrame:
    verdicts = {(v["arm"], v["baseline"]): v for v in t["verdicts"]}
    rows = []
    for e in t["arms"]:
        against = [f"{mark(v['verdict'])} {v['verdict']} over {base}" for (arm, base), v in verdicts.items() if arm == e["arm"]]
        rows.append({
            "arm": e["arm"], "lr (window)": f"{e['lr']:g} ({', '.join(f'{x:g}' for x in e['window'])})" if e["kind"] == "tuned" else f"{e['lr']:g} (a rule)",
            "validation": ci_text(e["val_acc"], fmt_pct), "test": ci_text(e["test_acc"], fmt_pct),
            "failed seeds": f"{e['failed']}/{e['seeds']}", "updates": fmt_int(e["updates"]),
            f"after {fmt_int(e['equal_updates']['updates'])} updates": ci_text(e["equal_updates"]["val_acc"], fmt_pct),
            "epochs to the target": reached(e["epochs_to_target"], "epochs", planned),
            "better than": "; ".join(against) or "(the baseline)",
        })  # fmt: skip
    return pd.DataFrame(rows)


def accumulation_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([
        {
            "batch size": r["batch_size"], "lr": f"{r['lr']:g}", "micro-batch": r["micro_batch"],
            "peak memory (MiB)": f"{r['peak_memory_mb']:.0f} (in one piece {r['whole_peak_memory_mb']:.0f})",
            "seconds per epoch": f"{r['epoch_seconds']:.2f} (in one piece {r['whole_epoch_seconds']:.2f})",
            "largest validation accuracy difference": f"{100 * r['largest_val_acc_difference']:.2f} points",
        }
        for r in rows
    ])  # fmt: skip


def arms_chart(t: dict) -> dict:
    """Each arm's test accuracy at its chosen lr, with its 95% interval; arms with a failed seed
    are left to the table (on the same axis they would hide the differences that matter)."""
    data = pd.DataFrame([
        {"arm": e["arm"], "acc": e["test_acc"]["mean"], "lo": e["test_acc"]["lo"], "hi": e["test_acc"]["hi"], "lr": e["lr"]}
        for e in t["arms"] if not e["failed"]
    ])  # fmt: skip
    order = list(data.sort_values("acc", ascending=False)["arm"])
    y = alt.Y("arm:N", sort=order, title="")
    points = alt.Chart(data).mark_point(filled=True).encode(x=alt.X("acc:Q", title="test accuracy", scale=alt.Scale(zero=False)), y=y, tooltip=["arm", "lr", "acc", "lo", "hi"])
    bars = alt.Chart(data.dropna(subset=["lo", "hi"])).mark_rule().encode(x="lo:Q", x2="hi:Q", y=y)
    title = f"Batch {t['batch_size']}: each arm at its lr chosen on validation (no seed failed)"
    return spec(alt.layer(bars, points).properties(title=title, width=WIDTH, height=22 * len(data)))


def curves_chart(study: Inputs, s: dict, t: dict) -> dict:
    """Validation accuracy against update of the reference and of the league's best three arms."""
    ref = s["reference"]
    shown = sorted(t["arms"], key=lambda e: -e["val_acc"]["mean"])[:3]
    parts = [rows_of(study.probes, ref["batch_size"], ref["lr"], "").assign(variant=f"batch {ref['batch_size']}, lr {ref['lr']:g}")]
    parts += [rows_of(study.probes, t["batch_size"], e["lr"], e["recipe"]).assign(variant=f"{e['arm']}, lr {e['lr']:g}") for e in shown]
    return charts.variants(pd.concat(parts, ignore_index=True), "step", "val_acc", f"Batch {t['batch_size']}: validation accuracy against update", "validation accuracy", log_x=True)


def section(study: Inputs) -> Section | None:
    s = study.summaries.get("remedies")
    if not s:
        return None
    rem, planned, ref = study.config["remedies"], study.config["train"]["epochs"], s["reference"]
    figures = []
    for t in s["batch_sizes"]:
        figures.append((f"league-bs{t['batch_size']}", arms_chart(t), ""))
        figures.append((f"league-curves-bs{t['batch_size']}", curves_chart(study, s, t), ""))
    tables = [html_table(answer_table(s, planned))]
    tables += [f"<h3>Batch {t['batch_size']}</h3>" + html_table(league_table(t, planned)) for t in s["batch_sizes"]]
    accumulated = study.summaries.get("accumulation") or []
    if accumulated:
        tables.append("<h3>Gradient accumulation: the same update, in parts</h3>" + html_table(accumulation_table(accumulated)))
    return Section(
        "remedies",
        "When a huge batch cannot be avoided",
        f"A league at each huge batch size. Every tuned arm is trained over its own window of lrs, and tuned plain SGD"
        f" is the grid's own cells there. The scaling rules take one lr each, scaled from lr {rem['reference_lr']:g} at"
        f" batch {rem['reference_batch_size']} (square root or linear, with and without {rem['warmup_epochs']:g} epoch(s)"
        " of warm-up). Each arm is read at its lr chosen on validation and compared with tuned SGD and with the best"
        " tuned standard optimizer, paired by seed on the test set. Each comparison is a one-sided claim, \"the arm is"
        " better\", decided by exact sign-flip tests with Holm's correction within each batch size's league ("
        + ", ".join(f"{t['family_size']} hypotheses at batch {t['batch_size']}" for t in s["batch_sizes"])
        + f"). The target is batch {ref['batch_size']}'s accuracy at its own best lr ({ref['lr']:g}),"
        f" {ci_text(ref['val_acc'], fmt_pct)} on validation, less the verdicts' margin of 0.2 points:"
        f" {fmt_pct(ref['target'])}. At equal updates each arm stands beside batch"
        f" {ref['batch_size']} after as many updates as the huge batch makes in {planned} epochs.",
        charts=figures,
        tables=tables,
        findings=[f"{v['claim']} {mark(v['verdict'])} {v['verdict']}: {v['evidence']}" for t in s["batch_sizes"] for v in t["verdicts"]],
        tables_first=True,
    )
