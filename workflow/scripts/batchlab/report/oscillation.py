"""How much the loss oscillates: the model's own oscillation (the verdict's measure) and the
post's per-iteration figure beside it."""

from __future__ import annotations

import altair as alt

from batchlab.report.encodings import HEIGHT, WIDTH, batch_x, log_scale, spec
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section


def chart(settings, column: str, title: str, y_title: str) -> dict:
    data = settings[settings[column].notna() & (settings[column] > 0)]
    line = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=batch_x(),
            y=alt.Y(f"{column}:Q", title=y_title, scale=log_scale()),
            color=alt.Color("lr:O", title="learning rate", scale=alt.Scale(scheme="plasma")),
            tooltip=["batch_size:Q", "lr:Q", f"{column}:Q", "seeds:Q"],
        )
    )
    return spec(line.properties(title=title, width=WIDTH, height=HEIGHT))


def section(study: Inputs) -> Section:
    mea = study.config.get("measure", {})
    figures = []
    if "model_oscillation" in study.settings and study.settings["model_oscillation"].notna().any():
        figures.append((
            "model-oscillation-vs-batch-size",
            chart(study.settings, "model_oscillation", "The model's oscillation against batch size", "mean |Δ loss| on the fixed subset (log scale)"),
            "",
        ))  # fmt: skip
    figures.append((
        "oscillation-vs-batch-size",
        chart(study.settings, "oscillation", "The post's measure: per-iteration loss change", "mean |Δ loss| per iteration (log scale)"),
        "",
    ))  # fmt: skip
    return Section(
        "oscillation",
        "How much the loss oscillates",
        f"The model's oscillation: its loss on one fixed subset of {mea.get('track_subset', 1024):,} training"
        f" images, evaluated every {mea.get('track_every_samples', 1024):,} samples through the last epoch,"
        " detrended, as the mean absolute change from one evaluation to the next (mean over seeds). The"
        " post's measure beside it: the mean |loss(t) − loss(t−1)| of each iteration's own mini-batch loss"
        " over the last epoch, whose sampling noise alone shrinks as 1/√b, so it falls with the batch size"
        " by construction.",
        charts=figures,
    )
