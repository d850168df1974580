"""Each batch size's lr response (the U-curve every practitioner draws), the stability map, the
lr law and the noise scale three ways (all computed in aggregate: batchlab.analysis.lr_response,
batchlab.analysis.lr_law)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from batchlab.analysis.rows import failed_seeds
from batchlab.report.encodings import batch_color, log_scale, spec
from batchlab.report.fmt import fmt_num, html_table, is_finite
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section

FLOOR = 0.85  # seeds below this validation accuracy are off the panels (the table names them)


def u_curves(study: Inputs) -> dict:
    """One panel per batch size: each seed's final validation accuracy against lr, and the fitted
    response (line) over the lrs below the stability limit."""
    grid = study.grid
    seeds = grid[~failed_seeds(grid) & (grid["final_val_acc"] >= FLOOR)][["batch_size", "lr", "seed", "final_val_acc"]]
    fitted = pd.DataFrame(
        [{"batch_size": r["batch_size"], "lr": p["lr"], "final_val_acc": p["val_acc"]} for r in study.analysis.get("lr_response", []) for p in r["curve"]],
        columns=["batch_size", "lr", "final_val_acc"],
    )
    data = pd.concat([seeds.assign(kind="seed"), fitted.assign(kind="fitted")], ignore_index=True)
    x = alt.X("lr:Q", scale=log_scale(), title="learning rate (log scale)")
    y = alt.Y("final_val_acc:Q", scale=alt.Scale(zero=False), title="final validation accuracy")
    points = alt.Chart().mark_point(opacity=0.6).encode(x=x, y=y, color=batch_color(), tooltip=["batch_size:O", "lr:Q", "seed:O", "final_val_acc:Q"]).transform_filter("datum.kind == 'seed'")
    line = alt.Chart().mark_line(color="black").encode(x=x, y=y).transform_filter("datum.kind == 'fitted'")
    chart = alt.layer(points, line, data=data).properties(width=220, height=180).facet(facet=alt.Facet("batch_size:O", title="batch size"), columns=4)
    title = f"Validation accuracy against lr: seeds (points, those above {FLOOR:.0%}) and the fitted response (line)"
    return spec(chart.resolve_scale(x="independent").properties(title=title))


def stability_chart(rows: list[dict]) -> dict:
    """Per batch size: the fitted optimum, the highest lr at which every seed trained, the lowest
    at which one failed, and 2 / lambda_max."""
    names = {"lr_opt": "fitted optimum", "highest_stable": "highest stable lr", "stability_limit": "lowest failing lr", "two_over_sharpness": "2 / λ_max at the best lr"}
    data = pd.DataFrame([{"batch_size": r["batch_size"], "what": names[k], "lr": r[k]} for r in rows for k in names if is_finite(r.get(k))])
    if data.empty:
        return {}
    chart = alt.Chart(data).mark_point(size=80, filled=True).encode(
        x=alt.X("batch_size:Q", scale=log_scale(), title="batch size (log scale)"),
        y=alt.Y("lr:Q", scale=log_scale(), title="learning rate (log scale)"),
        shape=alt.Shape("what:N", title=""),
        color=alt.Color("what:N", title=""),
        tooltip=["batch_size:Q", "what:N", "lr:Q"],
    )
    lines = chart.mark_line(opacity=0.4).encode(shape=alt.Shape("what:N", legend=None))
    return spec((chart + lines).properties(title="Stability map: the optimum beside the lr where training fails", width=520, height=300))


def law_table(law: dict) -> pd.DataFrame:
    rows = []
    for name, f in (law.get("laws") or {}).items():
        if name == "saturating":
            form = f"{fmt_num(f['lr_max'])} · b / (b + {fmt_num(f['b_noise'], 4)})"
        elif name == "power":
            form = f"{fmt_num(f['c'])} · b^{f['exponent']:.2f}"
        else:
            form = f"{fmt_num(f['c'])} · b^{f['exponent']:g}"
        rows.append({"law": name, "lr_opt(b)": form, "AICc": fmt_num(f.get("aicc")), "weight": fmt_num(f.get("weight"), 2)})
    return pd.DataFrame(rows)


def interval(e: dict) -> str:
    if not is_finite(e.get("value")):
        return "not estimated"
    if is_finite(e.get("lo")) and is_finite(e.get("hi")):
        return f"{fmt_num(e['value'], 4)} [{fmt_num(e['lo'], 4)}, {fmt_num(e['hi'], 4)}]"
    return f"{fmt_num(e['value'], 4)} (no interval{': ' + e['why_not'] if e.get('why_not') else ''})"


def section(study: Inputs) -> Section | None:
    a = study.analysis
    if not a.get("lr_response"):
        return None
    stability = a.get("stability") or []
    law = a.get("lr_law") or {}
    scales = pd.DataFrame([{"estimate": r["estimate"], "from": r["from"], "value [95%]": interval(r)} for r in a.get("noise_scales") or []])
    stab = pd.DataFrame([
        {"batch size": r["batch_size"], "fitted optimum": fmt_num(r["lr_opt"]), "highest stable lr": fmt_num(r["highest_stable"]),
         "lowest failing lr": fmt_num(r["stability_limit"]) if is_finite(r["stability_limit"]) else "none in the window",
         "2 / λ_max": fmt_num(r["two_over_sharpness"])}
        for r in stability
    ])  # fmt: skip
    charts = [("lr-response-curves", u_curves(study), ""), ("stability-map", stability_chart(stability), "")]
    charts = [c for c in charts if c[1]]
    preferred = law.get("preferred")
    return Section(
        "lr-response",
        "Which lr: the lr response, the stability limit and the lr law",
        "Each batch size's validation error is fitted against log lr over its whole window (a parabola with its"
        " own curvature on each side: the response falls gently below the optimum and steeply towards the lr"
        " where training fails); lrs from the first one at which a seed failed upwards are a boundary, not data."
        " The lr law is fitted to the optima inside their windows, four laws judged on the same optima by AICc"
        + (f" (preferred here: {preferred})" if preferred else "")
        + ". The noise scale, which sets where the lr stops growing with the batch, is estimated three ways.",
        charts=charts,
        tables=[html_table(stab), html_table(law_table(law)), html_table(scales)],
    )
