"""Iterations and wall time per epoch against batch size."""

from __future__ import annotations

import altair as alt

from batchlab.report.encodings import batch_x, log_scale, spec
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section


def chart(cells) -> dict:
    data = cells[["batch_size", "lr", "seed", "iterations_per_epoch", "epoch_seconds", "samples_per_s"]].dropna()
    ipe = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=batch_x(),
            y=alt.Y("mean(iterations_per_epoch):Q", title="iterations per epoch (log scale)", scale=log_scale()),
            tooltip=["batch_size:Q", "mean(iterations_per_epoch):Q"],
        )
        .properties(title="Iterations per epoch = ceil(N / b)", width=200, height=220)
    )
    dots = (
        alt.Chart(data)
        .mark_circle(size=40, opacity=0.5)
        .encode(
            x=batch_x(),
            y=alt.Y("epoch_seconds:Q", title="wall time per epoch, s (log scale)", scale=log_scale()),
            tooltip=["batch_size:Q", "lr:Q", "seed:N", "epoch_seconds:Q", "samples_per_s:Q"],
        )
    )
    median = alt.Chart(data).mark_line().encode(x=batch_x(), y="median(epoch_seconds):Q")
    right = (dots + median).properties(title="Wall time per epoch (dots: cells; line: median)", width=200, height=220)
    return spec(alt.hconcat(ipe, right))


def section(study: Inputs) -> Section:
    return Section(
        "speed",
        "Iterations and wall time per epoch",
        "Fewer, larger iterations per epoch: the per-iteration overhead is paid less often and each matrix"
        " product does more work.",
        charts=[("time-per-epoch", chart(study.grid), "")],
    )
