"""The first screen: each claim's verdict with a mark and its key number, and the two figures
that carry most of the evidence (validation accuracy over batch size x lr, steps to the target
against batch size)."""

from __future__ import annotations

import pandas as pd

from batchlab.report import charts
from batchlab.report.fmt import html_table, mark
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section
from batchlab.report.remedies import answer_table


def section(study: Inputs) -> Section | None:
    if not study.verdicts:
        return None
    rows = [{"": mark(v["verdict"]), "claim": v["claim"], "verdict": v["verdict"], "key number": v.get("headline", "")} for v in study.verdicts]
    figures = [(
        "answers-accuracy",
        charts.heatmap(study.settings, "Final validation accuracy (%), batch size × lr", legend=False),
        "Red frame: a seed diverged, collapsed or failed to learn.",
    )]  # fmt: skip
    if len(study.targets):
        figures.append(("answers-steps", charts.steps_to_target(study.targets, study.critical, "steps"), ""))
    seeds = int(study.grid["seed"].nunique())
    counts = pd.Series([v["verdict"] for v in study.verdicts]).value_counts()
    tally = ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
    waits = ", … waiting for cells still training" if "waiting" in counts else ""
    tables = [html_table(pd.DataFrame(rows), css_class="data answers")]
    league = study.summaries.get("remedies")
    if league:  # the huge-batch study: its practical answer on the first screen too
        tables.append(
            "<h3>If a huge batch cannot be avoided: the best arm of the league (details below)</h3>"
            + html_table(answer_table(league, study.config["train"]["epochs"]))
        )
    return Section(
        "answers",
        "The answers at a glance",
        f"Each claim of the original post, decided by a test on this study's numbers ({seeds} seeds"
        f" per setting, paired, read at every near-optimal lr; ✔ supported, ✘ not supported, ≈ depends on the lr,"
        f" ◐ mixed, ? inconclusive{waits}): {tally}."
        " The evidence and what each test can and cannot show follow below the two figures.",
        charts=figures,
        tables=tables,
        tables_first=True,
    )
