"""Batch size x learning rate: the accuracy grid, each batch size's best lr with its fitted
optimum and the lr law, and the lr / b picture."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from batchlab.analysis.rows import at_lr
from batchlab.report import charts
from batchlab.report.encodings import HEIGHT, WIDTH, batch_color, batch_x, log_scale, spec
from batchlab.report.fmt import fmt_int, fmt_num, fmt_pct, grid_edge, html_table
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section


def lr_over_b(settings: pd.DataFrame) -> dict:
    """Final validation accuracy against lr / b, one line per batch size: where equal lr/b gives
    equal training (the noise-temperature view of Smith & Le 2018), the lines fall on each other."""
    ok = (settings["diverged"] == 0) & (settings["collapsed"] == 0) & (settings.get("failed_to_learn", 0) == 0)
    data = settings[ok].assign(lr_over_b=settings["lr"] / settings["batch_size"])
    base = alt.Chart(data).encode(
        x=alt.X("lr_over_b:Q", title="learning rate / batch size (log scale)", scale=log_scale()),
        y=alt.Y("final_val_acc:Q", title="final validation accuracy", scale=alt.Scale(zero=False)),
        color=batch_color(),
        tooltip=["batch_size:O", "lr:Q", "lr_over_b:Q", "final_val_acc:Q", "seeds:Q"],
    )
    title = "Final validation accuracy against lr / b, one line per batch size (settings where no seed failed)"
    return spec((base.mark_line() + base.mark_point(filled=True)).properties(title=title, width=WIDTH, height=HEIGHT))


def best_lr(best: pd.DataFrame, law: dict | None = None) -> dict:
    """Each batch size's best lr (shape: inside or at its window's edge), the fitted optima with
    their 95% intervals, the saturating lr law fitted to them, and the linear and square-root
    rules through the first point."""
    data = best.copy()
    data["where"] = data["at_grid_edge"].fillna("inside its window").replace(
        {"lowest": "at its window's lowest lr", "highest": "at its window's highest lr"}
    )
    b0, lr0 = float(data["batch_size"].iloc[0]), float(data["best_lr"].iloc[0])
    bs = np.geomspace(data["batch_size"].min(), data["batch_size"].max(), 20)
    refs = pd.concat([
        pd.DataFrame({"batch_size": bs, "lr": lr0 * bs / b0, "rule": "linear (lr ∝ b)"}),
        pd.DataFrame({"batch_size": bs, "lr": lr0 * np.sqrt(bs / b0), "rule": "square root (lr ∝ √b)"}),
    ])  # fmt: skip
    x, y_scale = batch_x(), log_scale()
    ref = alt.Chart(refs).mark_line(strokeDash=[4, 4], color="gray").encode(
        x=x, y=alt.Y("lr:Q", scale=y_scale, title="learning rate (log scale)"), detail="rule:N", tooltip=["rule:N"]
    )
    line = alt.Chart(data).mark_line(color="#1f77b4").encode(x=x, y=alt.Y("best_lr:Q", scale=y_scale))
    pts = alt.Chart(data).mark_point(size=90, filled=True).encode(
        x=x,
        y=alt.Y("best_lr:Q", scale=y_scale),
        shape=alt.Shape("where:N", title="best lr"),
        color=alt.Color("where:N", title="best lr"),
        tooltip=["batch_size:Q", "best_lr:Q", "best_val_acc:Q", "best_test_acc:Q", "where:N"],
    )
    layers = ref + line + pts
    if "lr_opt" in data and data["lr_opt_lo"].notna().any():
        inside = data[data["lr_opt_lo"].notna()]
        tooltip = ["batch_size:Q", "lr_opt:Q", "lr_opt_lo:Q", "lr_opt_hi:Q"]
        bars = alt.Chart(inside).mark_rule(color="black").encode(x=x, y=alt.Y("lr_opt_lo:Q", scale=y_scale), y2="lr_opt_hi:Q", tooltip=tooltip)
        opt = alt.Chart(inside).mark_point(shape="diamond", color="black", filled=True, size=60).encode(
            x=x, y=alt.Y("lr_opt:Q", scale=y_scale), tooltip=tooltip
        )
        layers = layers + bars + opt
    sat = ((law or {}).get("laws") or {}).get("saturating")
    if sat:
        curve = pd.DataFrame({"batch_size": bs, "lr": sat["lr_max"] * bs / (bs + sat["b_noise"])})
        layers = layers + alt.Chart(curve).mark_line(color="black", opacity=0.6).encode(x=x, y=alt.Y("lr:Q", scale=y_scale))
    title = "Best lr at each batch size (black: fitted optimum, 95% interval, and the saturating law; dashed: linear and √ scaling)"
    return spec(layers.properties(title=title, width=WIDTH, height=HEIGHT))


def batch_size_table(study: Inputs) -> pd.DataFrame:
    s = study.summaries
    speed = {r["batch_size"]: r for r in s.get("speed", {}).get("per_batch", [])}
    conv = {r["batch_size"]: r for r in s.get("convergence", [])}
    ref_lr = s.get("reference_lr")
    osc = at_lr(study.settings, ref_lr).set_index("batch_size")["oscillation"]
    rows = []
    for r in study.best_lr.itertuples():
        sp, cv, edge = speed.get(r.batch_size, {}), conv.get(r.batch_size, {}), grid_edge(r.at_grid_edge)
        rows.append({
            "batch size": r.batch_size,
            "iterations / epoch": fmt_int(sp.get("iterations_per_epoch")),
            "s / epoch (median)": fmt_num(sp.get("seconds")),
            "samples / s (median)": fmt_int(sp.get("samples_per_s")),
            f"oscillation at lr {ref_lr:g}": fmt_num(osc.get(r.batch_size)),
            "best lr": f"{r.best_lr:g}" + (f" (window's {edge})" if edge else ""),
            "validation acc at best lr": fmt_pct(r.best_val_acc),
            "test acc at best lr": fmt_pct(r.best_test_acc),
            "iterations to target": fmt_int(cv.get("steps")) if cv.get("steps") is not None else "not reached",
        })  # fmt: skip
    return pd.DataFrame(rows)


def selection_note(study: Inputs) -> str:
    """Which images chose the best settings, in one sentence."""
    held_out = study.config["train"].get("validation_size", 0)
    if set(study.cells.get("selection_set", pd.Series(["test"]))) == {"validation"}:
        return (
            "Selection (each batch size's best lr, steps to the target, every figure at the best lr) uses a"
            f" validation set of {held_out:,} training images held out from training (train.validation_size);"
            " the test set is reported for the selected settings only."
        )
    return "No validation set (train.validation_size = 0): selection used the test set, so the test accuracies at the best lr are optimistic."


def section(study: Inputs) -> Section:
    divergence = study.config["train"].get("divergence_loss", 1000.0)
    return Section(
        "lr-grid",
        "Batch size × learning rate",
        selection_note(study)
        + " Mean final validation accuracy over seeds. A diverged cell's training loss became non-finite"
        f" or exceeded {divergence:g}; a collapsed cell answered the same class for most images at chance"
        " level, with a loss near ln 10 = 2.30 (checked on a fixed training subset during each epoch and on"
        " the validation set at its end).",
        charts=[
            ("accuracy-heatmap", charts.heatmap(study.settings), ""),
            ("best-lr-vs-batch-size", best_lr(study.best_lr, study.analysis.get("lr_law")), ""),
            (
                "accuracy-vs-lr-over-b",
                lr_over_b(study.settings),
                "Where lines of different batch sizes fall on each other, equal lr / b gives equal training (the"
                " noise scale of SGD is set by lr / b; Smith & Le 2018); where they part, that view stops holding.",
            ),
        ],
        tables=[html_table(batch_size_table(study))],
    )
