"""How the verdicts were decided and whether they replicate: the family Holm's correction runs
over, the split-half replication, and the committed reruns of the study (all computed in
aggregate: batchlab.analysis.family, batchlab.analysis.replication, batchlab.analysis.reruns)."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from batchlab.report.encodings import log_scale, spec
from batchlab.report.fmt import fmt_num, html_table
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section


def family(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"verdict": r["key"], "hypothesis": r["hypothesis"], "p (largest over the near-optimal lrs)": fmt_num(r["p"], 2),
          "Holm level": fmt_num(r["level"], 2), "adjusted p": fmt_num(r["adjusted_p"], 2)} for r in rows]
    )  # fmt: skip


def replication(rep: dict) -> pd.DataFrame:
    a, b = rep["halves"]
    return pd.DataFrame(
        [{"claim": r["claim"], "all seeds": r["whole"], f"seeds {a[0]}-{a[-1]}": r["first_half"], f"seeds {b[0]}-{b[-1]}": r["second_half"],
          "halves disagree": "yes" if r["disagree"] else "no"} for r in rep["verdicts"]]
    )  # fmt: skip


def reruns_table(runs: dict) -> pd.DataFrame:
    return pd.DataFrame(
        [{"claim": v["claim"], **{n: v["runs"][n] for n in runs["runs"]}, "compatible": "yes" if v["compatible"] else "NO"} for v in runs["verdicts"]]
    )  # fmt: skip


def optima_chart(runs: dict) -> dict:
    """Per batch size, each run's fitted optimum with its 95% interval, side by side."""
    rows = [
        {"batch_size": o["batch_size"], "run": n, "lr_opt": r["lr_opt"], "lo": r["lo"], "hi": r["hi"]}
        for o in runs["optima"] for n, r in o["runs"].items() if r is not None and math.isfinite(r["lr_opt"])
    ]  # fmt: skip
    if not rows:
        return {}
    data = pd.DataFrame(rows)
    x = alt.X("batch_size:O", title="batch size")
    offset = alt.XOffset("run:N", sort=runs["runs"])
    color = alt.Color("run:N", sort=runs["runs"], title="run")
    y = alt.Y("lr_opt:Q", scale=log_scale(), title="fitted optimum lr (log scale)")
    points = alt.Chart(data).mark_point(filled=True, size=60).encode(x=x, xOffset=offset, y=y, color=color, tooltip=["batch_size:O", "run:N", "lr_opt:Q", "lo:Q", "hi:Q"])
    bars = alt.Chart(data.dropna(subset=["lo", "hi"])).mark_rule().encode(x=x, xOffset=offset, y=alt.Y("lo:Q", scale=log_scale()), y2="hi:Q", color=color)
    title = "Run to run: each batch size's fitted optimum and its 95% interval, in this run and each rerun"
    return spec((bars + points).properties(title=title, width=560, height=300))


def reruns_text(runs: dict) -> str:
    names = runs["runs"][1:]
    broken = [v["claim"] for v in runs["verdicts"] if not v["compatible"]]
    apart = [str(o["batch_size"]) for o in runs["optima"] if o["overlap"] is False]
    verdicts = "every verdict is compatible" if not broken else f"INCOMPATIBLE: {'; '.join(broken)}"
    optima = "every optimum's interval overlaps the others'" if not apart else f"the optima's intervals do NOT overlap at batch {', '.join(apart)}"
    return (
        f" Reruns: this study beside {', '.join(names)} (committed studies of the same design: report.reruns). A verdict"
        " replicates where every run reaches it, or a run that differs says 'depends on the lr' or 'inconclusive';"
        f" 'supported' in one and 'not supported' in another does not. Here {verdicts}, and {optima}."
    )


def section(study: Inputs) -> Section | None:
    rows, rep = study.analysis.get("family") or [], study.analysis.get("replication")
    if not rows:
        return None
    tables = [html_table(family(rows))]
    text = (
        f"The family: {len(rows) // 2} verdicts, two one-sided hypotheses each ('for': on the claim's side of 0;"
        " 'against': short of its margin), tested together by Holm's step-down at 5%: the smallest p at 5% / m,"
        " the next at 5% / (m - 1), and so on until one fails. A verdict read at several near-optimal lrs"
        " enters with its largest p (shown at every lr)."
    )
    if rep:
        tables.append(html_table(replication(rep)))
        agree = "agree" if rep["agree"] else "DISAGREE on at least one claim"
        text += (
            " Split-half replication: every verdict decided again on each half of the seeds alone, a study of its"
            " own, each hypothesis at 5% without the family's correction (five seeds cannot go below p = 1/32); a"
            f" half may be inconclusive where the whole is not. Here the halves {agree}."
        )
    charts = []
    runs = study.analysis.get("reruns") or {}
    if runs.get("verdicts"):
        tables.append(html_table(reruns_table(runs)))
        text += reruns_text(runs)
        chart = optima_chart(runs)
        if chart:
            charts.append(("run-to-run", chart, "Each run's fitted optimum per batch size (points) with its 95% interval (bars)."))
    title = "Method: the family of tests, the split-half replication, and the reruns"
    return Section("method", title, text, charts=charts, tables=tables)
