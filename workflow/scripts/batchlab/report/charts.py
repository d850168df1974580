"""Charts drawn by more than one section (the first screen repeats two of them)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from batchlab.analysis.stats import is_finite
from batchlab.report.encodings import (
    HEIGHT,
    LOSS_CLIP,
    SMALL,
    WIDTH,
    batch_color,
    batch_x,
    log_scale,
    spec,
    thin,
)

HEATMAP_TITLE = "Final validation accuracy (%) by batch size and learning rate; red frame: a seed diverged, collapsed or failed to learn"


def heatmap(settings: pd.DataFrame, title: str = HEATMAP_TITLE, width: int = WIDTH, legend: bool = True) -> dict:
    """Final validation accuracy over batch size x lr; red frames where a seed failed."""
    data = settings.copy()
    poor = data["failed_to_learn"] if "failed_to_learn" in data else 0
    data["outcome"] = np.where(
        data["diverged"] > 0,
        "diverged",
        np.where(data["collapsed"] > 0, "collapsed", np.where(poor > 0, "failed to learn", "finished")),
    )
    data["label"] = [
        "✕ div." if r.diverged > 0 else "✕ coll." if r.collapsed > 0 else f"{100 * r.final_val_acc:.1f}"
        for r in data.itertuples()
    ]
    data["lr_label"] = data["lr"].map(lambda v: f"{v:g}")
    lr_sort = [f"{v:g}" for v in sorted(data["lr"].unique())]
    base = alt.Chart(data).encode(
        x=alt.X("lr_label:O", title="learning rate", sort=lr_sort, axis=alt.Axis(labelAngle=-45)),
        y=alt.Y("batch_size:O", title="batch size", sort="ascending"),
    )
    rect = base.mark_rect().encode(
        color=alt.Color(
            "final_val_acc:Q",
            title="final validation accuracy",
            scale=alt.Scale(scheme="viridis", domain=[0, 1]),
            legend=alt.Legend() if legend else None,
        ),
        tooltip=["batch_size:O", "lr:Q", "final_val_acc:Q", "outcome:N", "first_stop_step:Q", "seeds:Q"],
    )
    failed = base.mark_rect(fill=None, stroke="#d62728", strokeWidth=3).transform_filter("datum.outcome != 'finished'")
    text = base.mark_text(fontSize=11).encode(
        text="label:N", color=alt.condition("datum.final_val_acc > 0.6", alt.value("black"), alt.value("white"))
    )
    return spec((rect + failed + text).properties(title=title, width=width, height=HEIGHT))


def steps_to_target(targets: pd.DataFrame, fit: dict, what: str) -> dict:
    """Steps (or samples) to the target against batch size, log-log, with the perfect-scaling
    line, the fitted trade-off curve and the batch sizes that never reached the target."""
    reached = targets[targets["reached"].astype(bool)].copy()
    missed = targets[~targets["reached"].astype(bool)].copy()
    label = {"steps": "steps to target", "samples": "samples to target"}[what]
    y_scale = log_scale()
    layers = []
    if len(reached):
        b0, s0 = float(reached["batch_size"].iloc[0]), float(reached[what].iloc[0])
        bs = np.geomspace(targets["batch_size"].min(), targets["batch_size"].max(), 40)
        ideal = s0 * b0 / bs if what == "steps" else np.full_like(bs, s0)
        lines = [pd.DataFrame({"batch_size": bs, "value": ideal, "curve": "perfect scaling"})]
        if is_finite(fit.get("b_crit")):
            s_fit = fit["s_min"] * (1 + fit["b_crit"] / bs)
            lines.append(pd.DataFrame({"batch_size": bs, "value": s_fit if what == "steps" else s_fit * bs, "curve": "fit S_min(1 + B_crit/B)"}))
        layers.append(
            alt.Chart(pd.concat(lines))
            .mark_line(strokeDash=[4, 4])
            .encode(
                x=batch_x(),
                y=alt.Y("value:Q", scale=y_scale, title=f"{label} (log scale)"),
                color=alt.Color("curve:N", title="", scale=alt.Scale(range=["gray", "#ff7f0e"])),
            )
        )
        base = alt.Chart(reached).encode(x=batch_x())
        layers.append(base.mark_line(color="#1f77b4").encode(y=alt.Y(f"{what}:Q", scale=y_scale)))
        layers.append(
            base.mark_point(filled=True, size=70, color="#1f77b4").encode(
                y=alt.Y(f"{what}:Q", scale=y_scale),
                tooltip=["batch_size:Q", "lr:Q", f"{what}:Q", f"{what}_lo:Q", f"{what}_hi:Q", "seeds:Q"],
            )
        )
        bars = reached.dropna(subset=[f"{what}_lo", f"{what}_hi"])
        bars = bars[bars[f"{what}_lo"] > 0]
        if len(bars):
            layers.append(
                alt.Chart(bars).mark_rule(color="#1f77b4").encode(x=batch_x(), y=alt.Y(f"{what}_lo:Q", scale=y_scale), y2=f"{what}_hi:Q")
            )
    if len(missed):
        top = float(reached[what].max()) * 1.5 if len(reached) else 1.0
        layers.append(
            alt.Chart(missed.assign(value=top, text="not reached"))
            .mark_point(shape="triangle-up", size=90, color="#d62728", filled=True)
            .encode(x=batch_x(), y=alt.Y("value:Q", scale=y_scale), tooltip=["batch_size:Q", "best_acc:Q", "text:N"])
        )
    title = f"{label.capitalize()} at each batch size's best lr (red triangles: never reached)"
    return spec(alt.layer(*layers).properties(title=title, width=SMALL + 60, height=HEIGHT))


def loss_curves(curves: pd.DataFrame, bands: pd.DataFrame, x: str, title: str) -> dict:
    """Raw (faint) and smoothed (bold) training loss per batch size and seed, with the 95%
    interval over seeds of the smoothed loss as a band (aggregate's bands)."""
    data = thin(curves).copy()
    data["loss"] = data["loss"].clip(upper=LOSS_CLIP)
    data["loss_smooth"] = data["loss_smooth"].clip(upper=LOSS_CLIP)
    data = data.replace([np.inf, -np.inf], np.nan)
    sort = sorted(data["batch_size"].unique())
    x_title = {"step": "iteration (log scale)", "epoch": "epoch"}[x]
    x_enc = alt.X(f"{x}:Q", title=x_title, scale=log_scale() if x == "step" else alt.Scale())
    base = alt.Chart(data).encode(
        x=x_enc,
        color=batch_color(sort),
        detail="seed:N",
        tooltip=["batch_size:O", "lr:Q", "seed:N", "step:Q", "epoch:Q", "loss:Q", "loss_smooth:Q"],
    )
    raw = base.mark_line(opacity=0.25, strokeWidth=1).encode(
        y=alt.Y("loss:Q", title=f"training loss (clipped at {LOSS_CLIP:g})", scale=alt.Scale(domain=[0, LOSS_CLIP]))
    )
    layers = [raw, base.mark_line(strokeWidth=2.5).encode(y="loss_smooth:Q")]
    if len(bands):
        clipped = thin(bands.assign(seed=0, band_lo=bands["band_lo"].clip(upper=LOSS_CLIP), band_hi=bands["band_hi"].clip(upper=LOSS_CLIP)))
        band = alt.Chart(clipped).mark_area(opacity=0.25).encode(x=x_enc, y="band_lo:Q", y2="band_hi:Q", color=batch_color(sort), detail="lr:Q")
        layers.insert(0, band)
    return spec(alt.layer(*layers).properties(title=title, width=WIDTH, height=HEIGHT))


def per_epoch(epochs: pd.DataFrame, metric: str, title: str, y_title: str) -> dict:
    sort = sorted(epochs["batch_size"].unique())
    chart = (
        alt.Chart(epochs)
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y(f"{metric}:Q", title=y_title, scale=alt.Scale(zero=False)),
            color=batch_color(sort),
            detail="seed:N",
            tooltip=["batch_size:O", "lr:Q", "seed:N", "epoch:Q", f"{metric}:Q"],
        )
    )
    return spec(chart.properties(title=title, width=WIDTH, height=HEIGHT))


def variants(data: pd.DataFrame, x: str, y: str, title: str, y_title: str, log_x: bool = False) -> dict:
    """One line per variant (a remedy, a Solution 2 recipe, an equal-updates run) and seed."""
    data = data.replace([np.inf, -np.inf], np.nan).dropna(subset=[x, y]).copy()
    if y == "loss_smooth":
        data[y] = data[y].clip(upper=LOSS_CLIP)
        y_title = f"{y_title} (clipped at {LOSS_CLIP:g})"
    x_enc = alt.X(f"{x}:Q", title={"epoch": "epoch", "step": "iteration (log scale)"}[x], scale=log_scale() if log_x else alt.Scale())
    chart = (
        alt.Chart(data)
        .mark_line(point=x == "epoch")
        .encode(
            x=x_enc,
            y=alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(zero=y == "loss_smooth")),
            color=alt.Color("variant:N", title="", legend=alt.Legend(orient="bottom", columns=2, labelLimit=400)),
            detail="seed:N",
            tooltip=["variant:N", "seed:N", f"{x}:Q", f"{y}:Q"],
        )
    )
    return spec(chart.properties(title=title, width=WIDTH, height=HEIGHT))


def with_interval(data: pd.DataFrame, y: str, title: str, y_title: str, log_y: bool) -> dict:
    """A measure against batch size with its 95% interval as bars (columns y, y_lo, y_hi)."""
    scale = log_scale() if log_y else alt.Scale(zero=False)
    base = alt.Chart(data).encode(x=batch_x())
    layers = [
        base.mark_line(point=True).encode(
            y=alt.Y(f"{y}:Q", title=y_title, scale=scale),
            tooltip=["batch_size:Q", "lr:Q", f"{y}:Q", f"{y}_lo:Q", f"{y}_hi:Q", "seeds:Q"],
        )
    ]
    bars = data.dropna(subset=[f"{y}_lo", f"{y}_hi"])
    if log_y:
        bars = bars[bars[f"{y}_lo"] > 0]
    if len(bars):
        layers.append(alt.Chart(bars).mark_rule(clip=True).encode(x=batch_x(), y=alt.Y(f"{y}_lo:Q", scale=scale), y2=f"{y}_hi:Q"))
    return spec(alt.layer(*layers).properties(title=title, width=SMALL, height=220))
