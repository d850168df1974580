"""The gradient's direction at shared weights: the cosine of two independent mini-batch gradients
against the batch size at each checkpoint of the reference run, beside 1 / (1 + B_simple / b)
(computed in aggregate: batchlab.analysis.gradient)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from batchlab.report.encodings import log_scale, spec
from batchlab.report.fmt import fmt_num
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section


def chart(rows: list[dict]) -> dict:
    data = pd.DataFrame(rows)
    data["checkpoint"] = "epoch " + data["epoch"].astype(str)
    x = alt.X("batch_size:Q", scale=log_scale(), title="batch size (log scale)")
    color = alt.Color("checkpoint:N", title="weights of the reference run after")
    measured = alt.Chart(data).mark_line(point=True).encode(
        x=x, y=alt.Y("cosine_mean:Q", title="cosine of two mini-batch gradients", scale=alt.Scale(domain=[-0.05, 1.0])),
        color=color, tooltip=["checkpoint:N", "batch_size:Q", "cosine_mean:Q", "cosine_lo:Q", "cosine_hi:Q", "predicted:Q", "pairs:Q"],
    )  # fmt: skip
    band = alt.Chart(data).mark_area(opacity=0.2).encode(x=x, y="cosine_lo:Q", y2="cosine_hi:Q", color=color)
    predicted = alt.Chart(data).mark_line(strokeDash=[4, 3]).encode(x=x, y="predicted:Q", color=color)
    title = "Gradient direction at shared weights: measured (points, 95% band over seeds) and 1 / (1 + B_simple / b) (dashed)"
    return spec((band + measured + predicted).properties(title=title, width=560, height=300))


def section(study: Inputs) -> Section | None:
    rows = study.analysis.get("gradient_shared_weights") or []
    if not rows:
        return None
    probe = study.config["gradient_probe"]
    noise = {r["epoch"]: r for r in rows}
    listing = "; ".join(f"after epoch {e}: {fmt_num(r['b_simple'])} [{fmt_num(r['b_simple_lo'])}, {fmt_num(r['b_simple_hi'])}]" for e, r in sorted(noise.items()))
    return Section(
        "gradient-direction",
        "Gradient direction at shared weights",
        f"One reference run (batch {probe['batch_size']} at lr {probe['lr']:g}, every seed); after each of its epochs, for"
        " every batch size, pairs of independent mini-batches are drawn at those same weights and the cosine between"
        " their gradients is averaged over the pairs. Every batch size is measured at the same weights, so the"
        " comparison holds the stage of training fixed. Two draws of G plus noise of variance tr(Σ)/b have cosine about"
        f" 1 / (1 + B_simple / b); B_simple from the same gradients: {listing}.",
        charts=[("gradient-shared-weights", chart(rows), "")],
    )
