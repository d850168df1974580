"""The study report: Altair charts, findings written from the numbers, one offline HTML file."""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field

import altair as alt
import numpy as np
import pandas as pd

from batchlab.aggregate import grid_cells
from batchlab.analysis import nearest

ALTAIR_MAX_ROWS = 5000
LOSS_CLIP = 3.0
CHART_WIDTH = 440
CHART_HEIGHT = 260


@dataclass
class Section:
    """One part of the report: a heading, prose, charts and tables."""

    id: str
    title: str
    intro: str = ""
    charts: list[tuple[str, dict, str]] = field(default_factory=list)  # (id, vega-lite, caption)
    tables: list[str] = field(default_factory=list)  # HTML
    findings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- numbers


def spearman(x, y) -> float:
    """Spearman rank correlation (NaN with fewer than three points or no spread)."""
    x = pd.Series(list(x), dtype=float)
    y = pd.Series(list(y), dtype=float)
    keep = x.notna() & y.notna()
    if keep.sum() < 3:
        return float("nan")
    rx, ry = x[keep].rank(), y[keep].rank()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def scaling_exponent(best: pd.DataFrame) -> tuple[float, int]:
    """Slope of log(best lr) against log(batch size) over batch sizes whose best lr is inside
    the grid; (NaN, n) with fewer than two such batch sizes."""
    inside = best[[grid_edge(v) is None for v in best["at_grid_edge"]]]
    if len(inside) < 2 or inside["batch_size"].nunique() < 2:
        return float("nan"), len(inside)
    slope = np.polyfit(np.log(inside["batch_size"]), np.log(inside["best_lr"]), 1)[0]
    return float(slope), len(inside)


def describe_scaling(slope: float) -> str:
    if not math.isfinite(slope):
        return "cannot be fitted (fewer than two batch sizes have their best lr inside the grid)"
    if abs(slope - 1.0) <= 0.2:
        kind = "close to linear scaling (lr proportional to batch size)"
    elif abs(slope - 0.5) <= 0.15:
        kind = "close to square-root scaling (lr proportional to the square root of batch size)"
    elif abs(slope) <= 0.15:
        kind = "flat: the best lr does not grow with batch size"
    elif slope > 0:
        kind = "growth, but neither linear nor square-root"
    else:
        kind = "a best lr that shrinks as batch size grows"
    return f"slope {slope:.2f} on log-log axes: {kind}"


def grid_edge(value) -> str | None:
    """'lowest', 'highest' or None (a missing value read back from parquet is NaN, not None)."""
    return value if isinstance(value, str) and value else None


def fmt_int(n) -> str:
    return f"{int(n):,}"


def fmt_num(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}"


def fmt_pct(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{100 * x:.1f}%"


def cell_label(b: int, lr: float) -> str:
    return f"batch {b} at lr {lr:g}"


# ----------------------------------------------------------------------------- findings


def oscillation_findings(settings: pd.DataFrame, lr: float) -> list[str]:
    at = settings[(settings["lr"] == lr) & settings["oscillation"].notna()].sort_values("batch_size")
    if len(at) < 2:
        return [f"Too few finished cells at lr {lr:g} to compare oscillation across batch sizes."]
    rho = spearman(at["batch_size"], at["oscillation"])
    first, last = at.iloc[0], at.iloc[-1]
    falls = int((np.diff(at["oscillation"].to_numpy()) < 0).sum())
    steps = len(at) - 1
    if math.isfinite(rho):
        trend = (
            "falls steadily as batch size grows"
            if rho <= -0.9
            else "tends to fall as batch size grows"
            if rho < -0.5
            else "does not fall steadily with batch size"
        )
    else:  # two batch sizes: the one step decides
        trend = "falls as batch size grows" if falls == steps else "does not fall with batch size"
    return [
        f"Iteration-to-iteration oscillation {trend}: at lr {lr:g} the mean absolute change of the "
        f"training loss from one iteration to the next is {fmt_num(first['oscillation'])} at batch "
        f"{int(first['batch_size'])} and {fmt_num(last['oscillation'])} at batch "
        f"{int(last['batch_size'])} ({falls} of {len(at) - 1} steps up in batch size lower it; "
        f"Spearman rank correlation {fmt_num(rho, 2)})."
    ]


def speed_findings(cells: pd.DataFrame) -> list[str]:
    per_bs = (
        cells.groupby("batch_size")
        .agg(
            ipe=("iterations_per_epoch", "first"),
            seconds=("epoch_seconds", "median"),
            sps=("samples_per_s", "median"),
        )
        .reset_index()
    )
    per_bs = per_bs[per_bs["seconds"].notna()]
    if per_bs.empty:
        return ["No cell completed an epoch, so there is no time per epoch to compare."]
    first, last = per_bs.iloc[0], per_bs.iloc[-1]
    fastest = per_bs.loc[per_bs["seconds"].idxmin()]
    out = [
        f"An epoch is ceil(N/b) iterations: {fmt_int(first['ipe'])} at batch {int(first['batch_size'])}"
        f" and {fmt_int(last['ipe'])} at batch {int(last['batch_size'])}.",
        f"Wall time per epoch is {fmt_num(first['seconds'])} s at batch {int(first['batch_size'])}"
        f" ({fmt_int(first['sps'])} samples/s) and {fmt_num(last['seconds'])} s at batch"
        f" {int(last['batch_size'])} ({fmt_int(last['sps'])} samples/s); the fastest epoch is at"
        f" batch {int(fastest['batch_size'])} ({fmt_num(fastest['seconds'])} s, median over its cells).",
    ]
    sizes = cells["ensemble_size"].dropna() if "ensemble_size" in cells else pd.Series(dtype=float)
    if len(sizes) and sizes.max() > 1:
        out.append(
            f"A cell's seeds train together (up to {int(sizes.max())} in one job); each seed is charged"
            " its share of the epoch they took together."
        )
    return out


def probe_subset_note(measure: dict) -> str:
    n = measure.get("probe_val_size", 0)
    if not n:
        return ""
    return f" Between epoch ends the probes measure it on the first {n:,} validation images (epoch ends: all of them)."


def selection_note(cells: pd.DataFrame, config: dict) -> str:
    """Which images chose the best settings, in one sentence."""
    held_out = config["train"].get("validation_size", 0)
    if set(cells.get("selection_set", pd.Series(["test"]))) == {"validation"}:
        return (
            f"Selection (each batch size's best lr, steps to the target, every figure at the best"
            f" lr) uses a validation set of {held_out:,} training images held out from training"
            f" (train.validation_size); the test set is reported for the selected settings only."
        )
    return (
        "No validation set (train.validation_size = 0): selection used the test set, so the test"
        " accuracies at the best lr are optimistic."
    )


def failure_findings(cells: pd.DataFrame, epochs_planned: int) -> list[str]:
    out = []
    for status, verb in (("diverged", "diverged"), ("collapsed", "collapsed to chance level")):
        failed = cells[cells["status"] == status].sort_values(["batch_size", "lr", "seed"])
        if failed.empty:
            out.append(f"No cell {verb}.")
            continue
        parts = []
        for row in failed.itertuples():
            planned = row.iterations_per_epoch * epochs_planned
            when = "late" if row.stopped_step > planned / 2 else "early"
            parts.append(
                f"{cell_label(row.batch_size, row.lr)} (seed {row.seed}) at iteration "
                f"{fmt_int(row.stopped_step)}, epoch {int(row.stopped_epoch)} of {epochs_planned} ({when})"
            )
        noun = "seed run" if len(failed) == 1 else "seed runs"
        out.append(f"{len(failed)} {noun} {verb}: " + "; ".join(parts) + ".")
    if "failed_to_learn" in cells:
        poor = cells[cells["failed_to_learn"].astype(bool)].sort_values(["batch_size", "lr", "seed"])
        if len(poor):
            listing = "; ".join(
                f"{cell_label(r.batch_size, r.lr)} (seed {r.seed}, {fmt_pct(r.final_val_acc)})" for r in poor.itertuples()
            )
            out.append(
                f"{len(poor)} seed run(s) trained to the end but failed to learn (final validation accuracy"
                f" under 50%): {listing}. They count as failures, not as working settings."
            )
    return out


def describe_exponent(fit: dict) -> str:
    """The fitted exponent with its interval, and which scaling rules the interval admits."""
    slope, lo, hi = fit.get("exponent"), fit.get("lo"), fit.get("hi")
    if slope is None or not math.isfinite(slope):
        return "cannot be fitted (fewer than two batch sizes have their optimum inside their window)"
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return f"exponent {slope:.2f} (no interval: too few seeds)"
    admits = [name for name, v in (("linear (1)", 1.0), ("square-root (0.5)", 0.5), ("flat (0)", 0.0)) if lo <= v <= hi]
    rule = (
        "the interval admits " + " and ".join(admits) + " scaling"
        if admits
        else "the interval admits none of linear, square-root or flat scaling"
    )
    return f"exponent {slope:.2f} [{lo:.2f}, {hi:.2f}] on log-log axes: {rule}"


def optimum_text(r) -> str:
    opt = getattr(r, "lr_opt", None)
    if opt is None or not math.isfinite(opt):
        return f"{r.best_lr:g} at batch {r.batch_size}"
    text = f"{r.best_lr:g} at batch {r.batch_size} (interpolated {opt:.3g}"
    if math.isfinite(getattr(r, "lr_opt_lo", math.nan)):
        text += f" [{r.lr_opt_lo:.3g}, {r.lr_opt_hi:.3g}]"
    tied = list(getattr(r, "tied_with", None) if getattr(r, "tied_with", None) is not None else [])
    if tied:
        text += "; tied with " + ", ".join(f"{v:g}" for v in tied)
    return text + ")"


def best_lr_findings(best: pd.DataFrame, settings: pd.DataFrame, exponent: dict | None = None) -> list[str]:
    listing = "; ".join(optimum_text(r) for r in best.itertuples())
    out = [
        "The best learning rate (highest mean final validation accuracy; interpolated: the vertex of"
        " a quadratic in log lr through it and its neighbours, with a 95% bootstrap interval over"
        f" seeds; tied: a neighbour the paired test cannot separate from it) is {listing}."
    ]
    if exponent is None:
        slope, n = scaling_exponent(best)
        exponent = {"exponent": slope, "lo": math.nan, "hi": math.nan, "batch_sizes": [0] * n}
    used = exponent.get("batch_sizes") or []
    limit = exponent.get("below_b_crit")
    where = f" below the critical batch size ({limit:.0f})" if isinstance(limit, (int, float)) and math.isfinite(limit) else ""
    out.append(
        f"Best lr against batch size, fitted over the {len(used)} batch sizes{where} whose optimum lies"
        f" inside its window: {describe_exponent(exponent)}."
    )
    for r in best.itertuples():
        edge = grid_edge(r.at_grid_edge)
        if edge:
            window = sorted(settings.loc[settings["batch_size"] == r.batch_size, "lr"])
            bound = window[0] if edge == "lowest" else window[-1]
            way = "lower" if edge == "lowest" else "higher"
            out.append(
                f"Window edge: at batch {r.batch_size} the best lr is the {edge} lr of its window "
                f"({bound:g}), so the true optimum may be {way}; it is left out of the fit. Widen the"
                " window (grid.lr_windows)."
            )
    return out


def convergence_findings(cells: pd.DataFrame, best: pd.DataFrame, target: float) -> list[str]:
    at_best = at_best_lr(cells, best)
    if at_best.empty:
        return []
    agg = (
        at_best.groupby("batch_size")
        .agg(
            acc=("final_val_acc", "mean"),
            test=("final_test_acc", "mean"),
            steps=("steps_to_target", lambda s: s.astype(float).mean()),
            samples=("samples_to_target", lambda s: s.astype(float).mean()),
            seconds=("seconds_to_target", "mean"),
        )
        .reset_index()
    )
    top = agg.loc[agg["acc"].idxmax()]
    out = [
        f"How far: at its best lr, the highest final validation accuracy is {fmt_pct(top['acc'])} at batch "
        f"{int(top['batch_size'])} (test {fmt_pct(top['test'])}); "
        + ", ".join(f"{fmt_pct(r.acc)} at batch {r.batch_size}" for r in agg.itertuples())
        + "."
    ]
    reached = agg[agg["steps"].notna()]
    missed = agg[agg["steps"].isna()]
    if not reached.empty:
        fastest_steps = reached.loc[reached["steps"].idxmin()]
        fastest_samples = reached.loc[reached["samples"].idxmin()]
        fastest_time = reached.loc[reached["seconds"].idxmin()]
        out.append(
            f"How fast: the smoothed training loss reaches {target:g} in the fewest iterations at batch "
            f"{int(fastest_steps['batch_size'])} ({fmt_int(fastest_steps['steps'])}), with the fewest "
            f"samples at batch {int(fastest_samples['batch_size'])} ({fmt_int(fastest_samples['samples'])})"
            f" and the soonest in wall time at batch {int(fastest_time['batch_size'])}"
            f" ({fmt_num(fastest_time['seconds'])} s)."
        )
    if not missed.empty:
        out.append(
            f"Never reaching a smoothed training loss of {target:g} at their best lr: batch "
            + ", ".join(str(b) for b in missed["batch_size"])
            + "."
        )
    return out


# ----------------------------------------------------------------------------- versions


def flatten(tree: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values."""
    out = {}
    for key, value in (tree or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def changes_since(previous: dict | None, current: dict) -> list[str]:
    """Sentences on what changed since an earlier version of the study.

    previous/current: {"label", "params", "metrics"}; previous is None when no earlier version
    is recorded (results/summary/metrics.json is committed to git at every version).
    """
    if previous is None:
        return ["No earlier version of the study is recorded in this repository's history."]
    label = previous["label"]
    old_p, new_p = flatten(previous["params"]), flatten(current["params"])
    out = []
    changed = [k for k in sorted(set(old_p) | set(new_p)) if old_p.get(k) != new_p.get(k)]
    if changed:
        out.append(
            f"Params changed since {label}: "
            + "; ".join(f"{k}: {old_p.get(k, '(unset)')} → {new_p.get(k, '(unset)')}" for k in changed)
            + "."
        )
    else:
        out.append(f"No params changed since {label}.")
    old_m, new_m = previous["metrics"] or {}, current["metrics"] or {}
    for key in ("cells", "seed_runs", "diverged_runs", "collapsed_runs"):
        if old_m.get(key) != new_m.get(key):
            out.append(f"{key.replace('_', ' ').capitalize()}: {old_m.get(key)} → {new_m.get(key)}.")
    batches = sorted({int(k[2:]) for k in set(old_m) | set(new_m) if k.startswith("bs") and k[2:].isdigit()})
    moves = []
    for b in batches:
        old, new = old_m.get(f"bs{b}") or {}, new_m.get(f"bs{b}") or {}
        # test accuracy at the selected lr (older metrics called it best_test_acc)
        o_acc, n_acc = old.get("test_acc", old.get("best_test_acc")), new.get("test_acc", new.get("best_test_acc"))
        if o_acc == n_acc and old.get("best_lr") == new.get("best_lr"):
            continue
        text = f"batch {b}: {fmt_pct(o_acc) if o_acc is not None else 'absent'} → {fmt_pct(n_acc) if n_acc is not None else 'absent'}"
        if o_acc is not None and n_acc is not None:
            text += f" ({100 * (n_acc - o_acc):+.1f} points)"
        if old.get("best_lr") != new.get("best_lr"):
            text += f", best lr {old.get('best_lr')} → {new.get('best_lr')}"
        moves.append(text)
    if moves:
        out.append("Test accuracy at the best lr of each batch size since " + label + ": " + "; ".join(moves) + ".")
    elif old_m == new_m:
        out.append(f"The headline metrics are the same as at {label}.")
    return out


# ----------------------------------------------------------------------------- charts


def _spec(chart: alt.TopLevelMixin) -> dict:
    return chart.to_dict()


def _bs_color(sort) -> alt.Color:
    return alt.Color("batch_size:O", title="batch size", sort=sort, scale=alt.Scale(scheme="viridis"))


def thin_curves(curves: pd.DataFrame, max_rows: int = ALTAIR_MAX_ROWS // 2) -> pd.DataFrame:
    """Keep every k-th point of each curve so a chart stays under Altair's row limit."""
    if len(curves) <= max_rows:
        return curves
    k = math.ceil(len(curves) / max_rows)
    keys = ["batch_size", "lr", "seed"]
    return curves[curves.groupby(keys).cumcount() % k == 0]


def seed_bands(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% interval over seeds of the smoothed loss at each (batch size, lr, step)
    that at least two seeds reached."""
    from batchlab.analysis import mean_ci

    rows = []
    for (b, lr, step), g in curves.groupby(["batch_size", "lr", "step"], sort=False):
        if len(g) < 2:
            continue
        ci = mean_ci(g["loss_smooth"], (0.0, math.inf))
        if math.isfinite(ci["lo"]):
            rows.append(
                {
                    "batch_size": b,
                    "lr": lr,
                    "step": step,
                    "epoch": float(g["epoch"].iloc[0]),
                    "band_lo": min(ci["lo"], LOSS_CLIP),
                    "band_hi": min(ci["hi"], LOSS_CLIP),
                }
            )
    return pd.DataFrame(rows, columns=["batch_size", "lr", "step", "epoch", "band_lo", "band_hi"])


def loss_curve_chart(curves: pd.DataFrame, x: str, title: str) -> dict:
    """Raw (faint) and smoothed (bold) training loss per batch size and seed, with the 95%
    interval over seeds of the smoothed loss as a band."""
    bands = thin_curves(seed_bands(curves).assign(seed=0))
    data = thin_curves(curves).copy()
    data["loss"] = data["loss"].clip(upper=LOSS_CLIP)
    data["loss_smooth"] = data["loss_smooth"].clip(upper=LOSS_CLIP)
    data = data.replace([np.inf, -np.inf], np.nan)
    sort = sorted(data["batch_size"].unique())
    x_title = {"step": "iteration (log scale)", "epoch": "epoch"}[x]
    x_enc = alt.X(
        f"{x}:Q", title=x_title, scale=alt.Scale(type="log", nice=False) if x == "step" else alt.Scale()
    )
    base = alt.Chart(data).encode(
        x=x_enc,
        color=_bs_color(sort),
        detail="seed:N",
        tooltip=["batch_size:O", "lr:Q", "seed:N", "step:Q", "epoch:Q", "loss:Q", "loss_smooth:Q"],
    )
    raw = base.mark_line(opacity=0.25, strokeWidth=1).encode(
        y=alt.Y(
            "loss:Q",
            title=f"training loss (clipped at {LOSS_CLIP:g})",
            scale=alt.Scale(domain=[0, LOSS_CLIP]),
        )
    )
    smooth = base.mark_line(strokeWidth=2.5).encode(y="loss_smooth:Q")
    layers = [raw, smooth]
    if len(bands):
        band = (
            alt.Chart(bands)
            .mark_area(opacity=0.25)
            .encode(x=x_enc, y="band_lo:Q", y2="band_hi:Q", color=_bs_color(sort), detail="lr:Q")
        )
        layers.insert(0, band)
    return _spec(alt.layer(*layers).properties(title=title, width=CHART_WIDTH, height=CHART_HEIGHT))


def epoch_metric_chart(epochs: pd.DataFrame, metric: str, title: str, y_title: str) -> dict:
    data = epochs.copy()
    sort = sorted(data["batch_size"].unique())
    chart = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y(f"{metric}:Q", title=y_title, scale=alt.Scale(zero=False)),
            color=_bs_color(sort),
            detail="seed:N",
            tooltip=["batch_size:O", "lr:Q", "seed:N", "epoch:Q", f"{metric}:Q"],
        )
    )
    return _spec(chart.properties(title=title, width=CHART_WIDTH, height=CHART_HEIGHT))


def oscillation_chart(settings: pd.DataFrame) -> dict:
    data = settings[settings["oscillation"].notna() & (settings["oscillation"] > 0)]
    chart = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("batch_size:Q", title="batch size (log scale)", scale=alt.Scale(type="log", nice=False)),
            y=alt.Y(
                "oscillation:Q",
                title="mean |Δ loss| per iteration (log scale)",
                scale=alt.Scale(type="log", nice=False),
            ),
            color=alt.Color("lr:O", title="learning rate", scale=alt.Scale(scheme="plasma")),
            tooltip=["batch_size:Q", "lr:Q", "oscillation:Q", "seeds:Q"],
        )
    )
    return _spec(
        chart.properties(title="Loss oscillation against batch size", width=CHART_WIDTH, height=CHART_HEIGHT)
    )


def speed_chart(cells: pd.DataFrame) -> dict:
    data = cells[
        ["batch_size", "lr", "seed", "iterations_per_epoch", "epoch_seconds", "samples_per_s"]
    ].dropna()
    x = alt.X("batch_size:Q", title="batch size (log scale)", scale=alt.Scale(type="log", nice=False))
    ipe = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y(
                "mean(iterations_per_epoch):Q",
                title="iterations per epoch (log scale)",
                scale=alt.Scale(type="log", nice=False),
            ),
            tooltip=["batch_size:Q", "mean(iterations_per_epoch):Q"],
        )
        .properties(title="Iterations per epoch = ceil(N / b)", width=200, height=220)
    )
    secs = (
        alt.Chart(data)
        .mark_circle(size=40, opacity=0.5)
        .encode(
            x=x,
            y=alt.Y(
                "epoch_seconds:Q",
                title="wall time per epoch, s (log scale)",
                scale=alt.Scale(type="log", nice=False),
            ),
            tooltip=["batch_size:Q", "lr:Q", "seed:N", "epoch_seconds:Q", "samples_per_s:Q"],
        )
    )
    secs_line = alt.Chart(data).mark_line().encode(x=x, y="median(epoch_seconds):Q")
    right = (secs + secs_line).properties(
        title="Wall time per epoch (dots: cells; line: median)", width=200, height=220
    )
    return _spec(alt.hconcat(ipe, right))


def heatmap_chart(settings: pd.DataFrame) -> dict:
    data = settings.copy()
    poor = data["failed_to_learn"] if "failed_to_learn" in data else 0
    data["outcome"] = np.where(
        data["diverged"] > 0,
        "diverged",
        np.where(data["collapsed"] > 0, "collapsed", np.where(poor > 0, "failed to learn", "finished")),
    )
    data["label"] = [
        (
            "✕ div."
            if r.diverged > 0
            else "✕ coll."
            if r.collapsed > 0
            else f"{100 * r.final_val_acc:.1f}"
        )
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
            "final_val_acc:Q", title="final validation accuracy", scale=alt.Scale(scheme="viridis", domain=[0, 1])
        ),
        tooltip=["batch_size:O", "lr:Q", "final_val_acc:Q", "outcome:N", "first_stop_step:Q", "seeds:Q"],
    )
    failed = base.mark_rect(fill=None, stroke="#d62728", strokeWidth=3).transform_filter(
        "datum.outcome != 'finished'"
    )
    text = base.mark_text(fontSize=11).encode(
        text="label:N",
        color=alt.condition("datum.final_val_acc > 0.6", alt.value("black"), alt.value("white")),
    )
    return _spec(
        (rect + failed + text).properties(
            title="Final validation accuracy (%) by batch size and learning rate; red frame: a seed diverged, collapsed or failed to learn",
            width=CHART_WIDTH,
            height=CHART_HEIGHT,
        )
    )


def lr_over_b_chart(settings: pd.DataFrame) -> dict:
    """Final validation accuracy against lr / b, one line per batch size: where equal lr/b gives
    equal training (the noise-temperature view of Smith & Le 2018), the lines fall on each other."""
    ok = (settings["diverged"] == 0) & (settings["collapsed"] == 0)
    data = settings[ok].assign(lr_over_b=settings["lr"] / settings["batch_size"])
    x = alt.X("lr_over_b:Q", title="learning rate / batch size (log scale)", scale=alt.Scale(type="log", nice=False))
    base = alt.Chart(data).encode(
        x=x,
        y=alt.Y("final_val_acc:Q", title="final validation accuracy", scale=alt.Scale(zero=False)),
        color=_bs_color("ascending"),
        tooltip=["batch_size:O", "lr:Q", "lr_over_b:Q", "final_val_acc:Q", "seeds:Q"],
    )
    return _spec(
        (base.mark_line() + base.mark_point(filled=True)).properties(
            title="Final validation accuracy against lr / b, one line per batch size (settings where no seed failed)",
            width=CHART_WIDTH,
            height=CHART_HEIGHT,
        )
    )


def optimum_marks(inside: pd.DataFrame, x, y_scale):
    """The interpolated optima as black diamonds with their 95% interval as a rule."""
    tooltip = ["batch_size:Q", "lr_opt:Q", "lr_opt_lo:Q", "lr_opt_hi:Q"]
    bars = alt.Chart(inside).mark_rule(color="black").encode(
        x=x, y=alt.Y("lr_opt_lo:Q", scale=y_scale), y2="lr_opt_hi:Q", tooltip=tooltip
    )
    opt = alt.Chart(inside).mark_point(shape="diamond", color="black", filled=True, size=60).encode(
        x=x, y=alt.Y("lr_opt:Q", scale=y_scale), tooltip=tooltip
    )
    return bars + opt


def best_lr_chart(best: pd.DataFrame) -> dict:
    data = best.copy()
    data["where"] = (
        data["at_grid_edge"]
        .fillna("inside its window")
        .replace({"lowest": "at its window's lowest lr", "highest": "at its window's highest lr"})
    )
    b0, lr0 = float(data["batch_size"].iloc[0]), float(data["best_lr"].iloc[0])
    grid = np.geomspace(data["batch_size"].min(), data["batch_size"].max(), 20)
    refs = pd.concat(
        [
            pd.DataFrame({"batch_size": grid, "lr": lr0 * grid / b0, "rule": "linear (lr ∝ b)"}),
            pd.DataFrame(
                {"batch_size": grid, "lr": lr0 * np.sqrt(grid / b0), "rule": "square root (lr ∝ √b)"}
            ),
        ]
    )
    x = alt.X("batch_size:Q", title="batch size (log scale)", scale=alt.Scale(type="log", nice=False))
    y_scale = alt.Scale(type="log", nice=False)
    ref = (
        alt.Chart(refs)
        .mark_line(strokeDash=[4, 4], color="gray")
        .encode(
            x=x,
            y=alt.Y("lr:Q", scale=y_scale, title="learning rate (log scale)"),
            detail="rule:N",
            tooltip=["rule:N"],
        )
    )
    line = alt.Chart(data).mark_line(color="#1f77b4").encode(x=x, y=alt.Y("best_lr:Q", scale=y_scale))
    pts = (
        alt.Chart(data)
        .mark_point(size=90, filled=True)
        .encode(
            x=x,
            y=alt.Y("best_lr:Q", scale=y_scale),
            shape=alt.Shape("where:N", title="best lr"),
            color=alt.Color("where:N", title="best lr"),
            tooltip=["batch_size:Q", "best_lr:Q", "best_val_acc:Q", "best_test_acc:Q", "where:N"],
        )
    )
    layers = ref + line + pts
    if "lr_opt" in data and data["lr_opt_lo"].notna().any():
        layers = layers + optimum_marks(data[data["at_grid_edge"].isna()], x, y_scale)
    return _spec(
        layers.properties(
            title="Best lr at each batch size (black: interpolated optimum, 95% bootstrap interval; dashed: linear and √ scaling)",
            width=CHART_WIDTH,
            height=CHART_HEIGHT,
        )
    )


# ----------------------------------------------------------------------------- tables


def html_table(frame: pd.DataFrame, css_class: str = "data") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def batch_size_table(
    cells: pd.DataFrame, settings: pd.DataFrame, best: pd.DataFrame, ref_lr: float
) -> pd.DataFrame:
    rows = []
    for r in best.itertuples():
        at_b = cells[cells["batch_size"] == r.batch_size]
        at_best = at_b[at_b["lr"] == r.best_lr]
        ref = settings[(settings["batch_size"] == r.batch_size) & (settings["lr"] == ref_lr)]
        rows.append(
            {
                "batch size": r.batch_size,
                "iterations / epoch": fmt_int(at_b["iterations_per_epoch"].iloc[0]),
                "s / epoch (median)": fmt_num(at_b["epoch_seconds"].median()),
                "samples / s (median)": fmt_int(at_b["samples_per_s"].median())
                if at_b["samples_per_s"].notna().any()
                else "n/a",
                f"oscillation at lr {ref_lr:g}": fmt_num(ref["oscillation"].iloc[0]) if len(ref) else "n/a",
                "best lr": f"{r.best_lr:g}"
                + (f" (grid's {grid_edge(r.at_grid_edge)})" if grid_edge(r.at_grid_edge) else ""),
                "validation acc at best lr": fmt_pct(r.best_val_acc),
                "test acc at best lr": fmt_pct(r.best_test_acc),
                "iterations to target": fmt_int(at_best["steps_to_target"].astype(float).mean())
                if at_best["steps_to_target"].notna().any()
                else "not reached",
            }
        )
    return pd.DataFrame(rows)


def stamp_table(stamp: dict) -> str:
    rows = [
        ("batchlab", stamp["batchlab"]),
        (
            "git commit",
            (stamp["git_commit"] or "not a git checkout")
            + (
                " (uncommitted changes)"
                if stamp["git_dirty"]
                else " (clean)"
                if stamp["git_dirty"] is False
                else ""
            ),
        ),
        ("params hash", stamp["params_hash"]),
        (
            "data (MD5 of decompressed MNIST files)",
            "; ".join(f"{k}: {v}" for k, v in stamp["data_md5"].items()),
        ),
        ("packages", ", ".join(f"{k} {v}" for k, v in stamp["packages"].items() if v)),
        ("devices", ", ".join(stamp["devices"])),
        ("host", stamp["host"]),
        ("date", stamp["date"]),
    ]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="stamp" id="version-stamp">{body}</table>'


# ----------------------------------------------------------------------------- assembly


def at_best_lr(frame: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """The rows of frame at each batch size's best learning rate."""
    keys = best[["batch_size", "best_lr"]].rename(columns={"best_lr": "lr"})
    return frame.merge(keys, on=["batch_size", "lr"])


def build_sections(
    cells: pd.DataFrame,
    settings: pd.DataFrame,
    best: pd.DataFrame,
    epochs: pd.DataFrame,
    curves: pd.DataFrame,
    config: dict,
    previous: dict | None = None,
    metrics: dict | None = None,
    probes: pd.DataFrame | None = None,
    targets: pd.DataFrame | None = None,
    analysis: dict | None = None,
) -> list[Section]:
    from batchlab import report_scaling as scaling

    all_cells, all_curves, all_epochs = cells, curves, epochs
    cells, curves, epochs = (grid_cells(f) for f in (cells, curves, epochs))
    rep = config["report"]
    lrs = sorted(settings["lr"].unique())
    ref_lr = nearest(lrs, rep["reference_lr"])
    at_ref = curves[curves["lr"] == ref_lr]
    at_best = at_best_lr(curves, best)
    epochs_best = at_best_lr(epochs, best)
    planned = config["train"]["epochs"]

    sections = [
        Section(
            "findings",
            "Findings",
            "Every sentence below is generated from this study's own numbers.",
            findings=(
                speed_findings(cells)
                + oscillation_findings(settings, ref_lr)
                + best_lr_findings(best, settings, (analysis or {}).get("lr_exponent"))
                + failure_findings(cells, planned)
                + convergence_findings(cells, best, rep["loss_target"])
            ),
        ),
        Section(
            "loss-curves",
            "Training loss, iteration by iteration",
            f"Faint lines: the training loss of every iteration (log-spaced points kept for drawing);"
            f" bold lines: its mean over the last {rep['smooth_samples']:,} samples' worth of"
            f" iterations, so every batch size is smoothed over the same amount of data, one line per"
            f" seed; shaded: the 95% interval over seeds of the smoothed loss. Left: the"
            f" learning rate held fixed at {ref_lr:g}; below: each batch size at its own best lr.",
            charts=[
                (
                    "loss-vs-iteration-fixed-lr",
                    loss_curve_chart(at_ref, "step", f"Loss against iteration, lr {ref_lr:g}"),
                    "",
                ),
                (
                    "loss-vs-epoch-fixed-lr",
                    loss_curve_chart(at_ref, "epoch", f"Loss against epoch, lr {ref_lr:g}"),
                    "",
                ),
                (
                    "loss-vs-iteration-best-lr",
                    loss_curve_chart(
                        at_best, "step", "Loss against iteration, each batch size at its best lr"
                    ),
                    "",
                ),
                (
                    "loss-vs-epoch-best-lr",
                    loss_curve_chart(at_best, "epoch", "Loss against epoch, each batch size at its best lr"),
                    "",
                ),
            ],
        ),
        Section(
            "oscillation",
            "How much the loss oscillates",
            "Oscillation of a cell = the mean absolute change of the training loss from one"
            " iteration to the next, |loss(t) − loss(t−1)|, over its last epoch (mean over seeds)."
            " Small batches estimate the gradient from few samples, so each step's loss jumps more.",
            charts=[("oscillation-vs-batch-size", oscillation_chart(settings), "")],
        ),
        Section(
            "speed",
            "Iterations and wall time per epoch",
            "Fewer, larger iterations per epoch: the per-iteration overhead is paid less often and"
            " each matrix product does more work.",
            charts=[("time-per-epoch", speed_chart(cells), "")],
        ),
        Section(
            "lr-grid",
            "Batch size × learning rate",
            selection_note(cells, config)
            + " Mean final validation accuracy over seeds. A diverged cell's training loss became non-finite"
            f" or exceeded {config['train']['divergence_loss']:g}; a collapsed cell ended an epoch"
            " at chance level, with a loss near ln 10 = 2.30, answering the same class for most images.",
            charts=[
                ("accuracy-heatmap", heatmap_chart(settings), ""),
                ("best-lr-vs-batch-size", best_lr_chart(best), ""),
                (
                    "accuracy-vs-lr-over-b",
                    lr_over_b_chart(settings),
                    "Where lines of different batch sizes fall on each other, equal lr / b gives equal"
                    " training (the noise scale of SGD is set by lr / b; Smith & Le 2018); where they part,"
                    " that view stops holding.",
                ),
            ],
            tables=[html_table(batch_size_table(cells, settings, best, ref_lr))],
        ),
        Section(
            "convergence",
            "How fast and how far",
            f"Validation accuracy after each epoch, each batch size at its best lr. 'Iterations to target'"
            f" in the table above counts iterations until the smoothed training loss first reaches"
            f" {rep['loss_target']:g}.",
            charts=[
                (
                    "validation-accuracy-vs-epoch",
                    epoch_metric_chart(
                        epochs_best,
                        "val_acc",
                        "Validation accuracy per epoch at each batch size's best lr",
                        "validation accuracy",
                    ),
                    "",
                )
            ],
        ),
    ]
    if probes is not None and targets is not None and analysis is not None:
        # JSON has no NaN: a fit that could not be made was written as null
        fit = {k: float("nan") if v is None else v for k, v in analysis.get("critical_batch", {}).items()}
        target = analysis.get("target_val_acc", rep["target_val_acc"])
        noise = scaling.noise_at_best(probes, best)
        end = scaling.b_simple_summary(all_cells, best)
        seeds = int(cells["seed"].nunique())
        sections.insert(
            1,
            scaling.verdict_section(
                scaling.verdicts(all_cells, settings, best, targets, probes, all_epochs, analysis, config),
                seeds,
            ),
        )
        sections.append(
            Section(
                "steps-to-target",
                "Steps, samples and seconds to a target",
                f"Shallue et al. (2018): how many steps (and samples, and seconds) each batch size needs to"
                f" reach {target:.1%} validation accuracy, at the learning rate that gets there fastest (mean over"
                " seeds; every seed must reach it; bars: 95% intervals; validation accuracy is measured every"
                f" {config['measure']['probe_every_samples']:,} samples and the crossing interpolated)."
                + probe_subset_note(config["measure"])
                + " On log-log axes perfect scaling (twice the batch, half the steps) is a line of slope −1;"
                " where the curve flattens, bigger batches stop saving steps.",
                charts=[
                    ("steps-vs-batch-size", scaling.steps_chart(targets, fit, "steps"), ""),
                    ("samples-vs-batch-size", scaling.steps_chart(targets, fit, "samples"), ""),
                ],
                tables=[html_table(scaling.targets_table(targets, all_cells))],
                findings=scaling.target_findings(targets, fit, target),
            )
        )
        sections.append(
            Section(
                "noise-scale",
                "Gradient noise scale and the critical batch size",
                "McCandlish et al. (2018): B_simple = tr(Σ)/|G|², the batch size at which the gradient's"
                " noise and signal are equal, predicts the critical batch size beyond which larger batches"
                " stop paying off. Estimated from squared gradient norms at two batch sizes"
                f" (B_small = {config['measure']['noise_batch'] // config['measure']['noise_micro_batches']},"
                f" B_big = {config['measure']['noise_batch']}, random training images at every probe),"
                f" each averaged over {rep['noise_smoothing_probes']} probes before the ratio is taken.",
                charts=[("noise-scale-vs-loss", scaling.noise_chart(noise), "")] if len(noise) else [],
                findings=scaling.noise_findings(noise, end, fit, all_cells),
            )
        )
        if config.get("remedies", {}).get("enabled"):
            sections.append(scaling.remedies_section(all_cells, probes, all_curves, config))
        if config.get("solution2", {}).get("enabled"):
            sections.append(scaling.solution2_section(all_cells, all_curves, analysis, config))
        sections.append(scaling.sharpness_section(all_cells, best, config))
    sections.append(
        Section(
            "changes",
            "Changes since the last version",
            "This version against the last committed one (git history of the params file and"
            " results/summary/metrics.json; for a DVC experiment, its baseline commit).",
            findings=changes_since(previous, {"params": config, "metrics": metrics}),
        )
    )
    return sections


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.sub{color:#666;margin-top:0} .charts{display:flex;flex-wrap:wrap;gap:1.5em}
figure{margin:0} ul.findings li{margin:.35em 0}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
table.data th{background:#f4f4f4} table.stamp th{background:#f4f4f4;width:16em}
nav a{margin-right:1em}
"""


def render_html(title: str, sections: list[Section], stamp: dict, vega_bundle: str) -> str:
    """One self-contained page: the Vega bundle and every chart's spec are inline.

    Element ids must be unique: vegaEmbed('#id') draws into the first element with that id, and
    a section sharing its id with a chart would be overwritten by the chart."""
    ids = [s.id for s in sections] + [c[0] for s in sections for c in s.charts] + ["version"]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"report element ids used twice: {', '.join(duplicates)}")
    nav = " ".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    parts = []
    embeds = []
    for s in sections:
        parts.append(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>')
        if s.intro:
            parts.append(f"<p>{html.escape(s.intro)}</p>")
        if s.findings:
            parts.append(
                '<ul class="findings">' + "".join(f"<li>{html.escape(f)}</li>" for f in s.findings) + "</ul>"
            )
        if s.charts:
            parts.append('<div class="charts">')
            for chart_id, spec, caption in s.charts:
                parts.append(
                    f'<figure><div class="chart" id="{chart_id}"></div>'
                    + (f"<figcaption>{html.escape(caption)}</figcaption>" if caption else "")
                    + "</figure>"
                )
                embeds.append((chart_id, spec))
            parts.append("</div>")
        parts.extend(s.tables)
        parts.append("</section>")
    specs = json.dumps({cid: spec for cid, spec in embeds}).replace("</", "<\\/")
    script = (
        "const SPECS = " + specs + ";\n"
        "for (const [id, spec] of Object.entries(SPECS)) {\n"
        "  vegaEmbed('#' + id, spec, {renderer: 'svg', actions: false})\n"
        "    .catch(err => { document.getElementById(id).textContent = 'chart failed: ' + err;"
        " console.error(err); });\n"
        "}\n"
    )
    commit = (stamp["git_commit"] or "no git")[:10] + ("+dirty" if stamp["git_dirty"] else "")
    bundle = vega_bundle.replace("</script", "<\\/script")
    stamp_json = json.dumps(stamp).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="generator" content="batchlab {html.escape(stamp["batchlab"])}">
<meta name="batchlab-version" content="{html.escape(commit)} params {html.escape(stamp["params_hash"])}">
<title>{html.escape(title)}</title>
<style>{CSS}</style>
<script>{bundle}</script>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="sub">batchlab {html.escape(stamp["batchlab"])} · commit {html.escape(commit)} ·
params {html.escape(stamp["params_hash"])} · {html.escape(stamp["date"])}</p>
<nav>{nav} <a href="#version">Version</a></nav>
{"".join(parts)}
<section id="version"><h2>Version</h2>
<p>What produced this report. The same commit, params hash and data checksums reproduce it.</p>
{stamp_table(stamp)}
<script type="application/json" id="version-stamp-json">{stamp_json}</script>
</section>
<script>
{script}</script>
</body>
</html>
"""


def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one inline script (no CDN: the page works offline)."""
    import vl_convert as vlc
    from altair.utils._importers import vl_version_for_vl_convert

    return vlc.javascript_bundle(vl_version=vl_version_for_vl_convert())


def dvc_plots_template(bundle: str) -> str:
    """An HTML template for `dvc plots show/diff` with Vega inline: DVC's default page loads
    Vega from a CDN and renders blank offline. DVC fills {plot_divs}; no {scripts} placeholder,
    so no CDN script tags are added."""
    bundle = bundle.replace("</script", "<\\/script")
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n<title>batchlab: DVC plots</title>\n'
        f"<script>{bundle}</script>\n"
        "<style>body{font-family:system-ui,sans-serif;margin:2em}</style>\n</head>\n<body>\n"
        "{plot_divs}\n</body>\n</html>\n"
    )


if __name__ == "__main__":  # PYTHONPATH=workflow/scripts python -m batchlab.report dvc-template PATH
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "dvc-template":
        sys.exit("usage: python -m batchlab.report dvc-template PATH")
    with open(sys.argv[2], "w") as handle:
        handle.write(dvc_plots_template(vega_bundle()))
