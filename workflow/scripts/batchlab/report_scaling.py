"""Report sections beyond the first observations: steps to a target, the gradient noise scale and
critical batch size, huge-batch remedies, Solution 2, sharpness, and a verdict on each claim.

Every number and every verdict is computed here from the study's own tables.
"""

from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd

from batchlab.aggregate import grid_cells
from batchlab.analysis import AGREE_REL, compare_intervals, is_finite, mean_ci
from batchlab.config import round_lr
from batchlab.report import (
    CHART_HEIGHT,
    CHART_WIDTH,
    LOSS_CLIP,
    Section,
    _spec,
    at_best_lr,
    fmt_int,
    fmt_num,
    fmt_pct,
    html_table,
    spearman,
    thin_curves,
)
from batchlab.study import remedy_cells, solution2_cells

PUBLIC_B_SIMPLE = (870, 900)  # a public replication's MNIST measurement (issue 7)
SMALL_CHART = 300
UNIT = (0.0, 1.0)  # an accuracy's range
POSITIVE = (0.0, math.inf)


def equivalent(pairs: list[dict]) -> bool:
    """Solution 2 and plain training at k x lr take the same step: after the first update their
    losses agree to float rounding in every seed."""
    return bool(pairs) and all(p["first_update_rel"] <= AGREE_REL for p in pairs)


def row_ci(row, col: str) -> dict:
    """The interval of a by-setting row's column (columns col, col_lo, col_hi)."""
    return {"mean": row[col], "lo": row[f"{col}_lo"], "hi": row[f"{col}_hi"]}


def ci_text(ci: dict, fmt=fmt_num) -> str:
    if not is_finite(ci["mean"]):
        return "n/a"
    if is_finite(ci["lo"]) and is_finite(ci["hi"]):
        return f"{fmt(ci['mean'])} [{fmt(ci['lo'])}, {fmt(ci['hi'])}]"
    return f"{fmt(ci['mean'])} (1 seed)"


def _log_x(title="batch size (log scale)"):
    return alt.X("batch_size:Q", title=title, scale=alt.Scale(type="log", nice=False))


# ----------------------------------------------------------------------------- steps to target


def steps_chart(targets: pd.DataFrame, fit: dict, what: str) -> dict:
    """Steps (or samples) to the target against batch size, log-log, with the perfect-scaling
    line, the fitted trade-off curve and the batch sizes that never reached the target."""
    reached = targets[targets["reached"].astype(bool)].copy()
    missed = targets[~targets["reached"].astype(bool)].copy()
    label = {"steps": "steps to target", "samples": "samples to target"}[what]
    y_scale = alt.Scale(type="log", nice=False)
    layers = []
    if len(reached):
        b0, s0 = float(reached["batch_size"].iloc[0]), float(reached[what].iloc[0])
        bs = np.geomspace(targets["batch_size"].min(), targets["batch_size"].max(), 40)
        ideal = s0 * b0 / bs if what == "steps" else np.full_like(bs, s0)
        lines = [pd.DataFrame({"batch_size": bs, "value": ideal, "curve": "perfect scaling"})]
        if is_finite(fit.get("b_crit", float("nan"))):
            s_fit = fit["s_min"] * (1 + fit["b_crit"] / bs)
            fitted = s_fit if what == "steps" else s_fit * bs
            lines.append(
                pd.DataFrame({"batch_size": bs, "value": fitted, "curve": "fit S_min(1 + B_crit/B)"})
            )
        ref = pd.concat(lines)
        layers.append(
            alt.Chart(ref)
            .mark_line(strokeDash=[4, 4])
            .encode(
                x=_log_x(),
                y=alt.Y("value:Q", scale=y_scale, title=f"{label} (log scale)"),
                color=alt.Color("curve:N", title="", scale=alt.Scale(range=["gray", "#ff7f0e"])),
            )
        )
        base = alt.Chart(reached).encode(x=_log_x())
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
                alt.Chart(bars)
                .mark_rule(color="#1f77b4")
                .encode(x=_log_x(), y=alt.Y(f"{what}_lo:Q", scale=y_scale), y2=f"{what}_hi:Q")
            )
    if len(missed):
        top = float(reached[what].max()) * 1.5 if len(reached) else 1.0
        missed = missed.assign(value=top, text="not reached")
        layers.append(
            alt.Chart(missed)
            .mark_point(shape="triangle-up", size=90, color="#d62728", filled=True)
            .encode(
                x=_log_x(),
                y=alt.Y("value:Q", scale=y_scale),
                tooltip=["batch_size:Q", "best_acc:Q", "text:N"],
            )
        )
    title = f"{label.capitalize()} at each batch size's best lr (red triangles: never reached)"
    return _spec(alt.layer(*layers).properties(title=title, width=SMALL_CHART + 60, height=CHART_HEIGHT))


def target_findings(targets: pd.DataFrame, fit: dict, target: float) -> list[str]:
    reached = targets[targets["reached"].astype(bool)]
    missed = targets[~targets["reached"].astype(bool)]
    out = []
    if reached.empty:
        return [
            f"No batch size reached {fmt_pct(target)} validation accuracy with every seed; lower"
            " report.target_val_acc or train longer."
        ]
    out.append(
        f"{fmt_pct(target)} validation accuracy is reached (by every seed) at batch "
        + ", ".join(
            f"{r.batch_size} in {fmt_int_safe(r.steps)} steps ({fmt_int_safe(r.samples)} samples, lr {r.lr:g})"
            for r in reached.itertuples()
        )
        + "."
    )
    if len(missed):
        out.append(
            "Never reached within the planned epochs: batch "
            + ", ".join(f"{r.batch_size} (best {fmt_pct(r.best_acc)})" for r in missed.itertuples())
            + "."
        )
    for reg in fit.get("regimes", []):
        out.append(
            f"From batch {reg['from']} to {reg['to']} the steps to target realise {reg['efficiency']:.0%}"
            f" of the ideal {reg['to'] / reg['from']:.3g}× reduction (on log scale): {reg['regime']}."
        )
    if is_finite(fit.get("b_crit", float("nan"))):
        out.append(
            f"Fitting S = S_min(1 + B_crit/B) to the steps gives S_min = {fmt_int_safe(fit['s_min'])} steps,"
            f" E_min = {fmt_int_safe(fit['e_min'])} samples and a critical batch size B_crit ="
            f" {fmt_num(fit['b_crit'])}"
            + (
                f" [{fmt_num(fit['b_crit_lo'])}, {fmt_num(fit['b_crit_hi'])}] (95% bootstrap interval over seeds)"
                if is_finite(fit.get("b_crit_lo", float("nan")))
                else ""
            )
            + f" (root-mean-square residual {fmt_num(fit['rms_log'], 2)} in log steps, {fit['n']} batch sizes)."
            + (
                " The best fit lies at the end of the search range: the data do not determine B_crit."
                if fit.get("at_search_edge")
                else ""
            )
        )
    else:
        out.append(
            f"The trade-off S = S_min(1 + B_crit/B) needs three batch sizes that reach the target; {fit.get('n', 0)} did."
        )
    return out


def targets_table(targets: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """Per batch size: the fastest lr's steps, samples and seconds, and what became of all its
    grid cells (reached the target, never reached it, diverged or collapsed)."""
    grid = grid_cells(cells)
    rows = []
    for r in targets.itertuples():
        at = grid[grid["batch_size"] == r.batch_size]
        failed = at["status"].isin(["diverged", "collapsed"])
        reached = at["steps_to_acc"].notna()
        fate = f"{int(reached.sum())} reached, {int((~reached & ~failed).sum())} did not, {int(failed.sum())} failed"
        row = {
            "batch size": r.batch_size,
            "best lr": "—",
            "steps": "not reached",
            "samples": "",
            "seconds": "",
        }
        if r.reached:
            row = {
                "batch size": r.batch_size,
                "best lr": f"{r.lr:g}",
                "steps": ci_text({"mean": r.steps, "lo": r.steps_lo, "hi": r.steps_hi}, fmt_int_safe),
                "samples": ci_text({"mean": r.samples, "lo": r.samples_lo, "hi": r.samples_hi}, fmt_int_safe),
                "seconds": ci_text({"mean": r.seconds, "lo": r.seconds_lo, "hi": r.seconds_hi}),
            }
        rows.append({**row, "its cells, all lrs and seeds (failed: diverged or collapsed)": fate})
    return pd.DataFrame(rows)


def fmt_int_safe(x) -> str:
    return fmt_int(round(x)) if x is not None and is_finite(x) else "n/a"


# ----------------------------------------------------------------------------- noise scale


def noise_at_best(probes: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    data = at_best_lr(grid_cells(probes), best)
    return data[np.isfinite(data["b_simple"]) & (data["b_simple"] > 0)]


def noise_chart(data: pd.DataFrame) -> dict:
    sort = sorted(data["batch_size"].unique())
    chart = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X(
                "recent_train_loss:Q",
                title="training loss (log scale, falling to the right)",
                scale=alt.Scale(type="log", reverse=True, nice=False),
            ),
            y=alt.Y(
                "b_simple:Q",
                title="B_simple = tr(Σ)/|G|² (log scale)",
                scale=alt.Scale(type="log", nice=False),
            ),
            color=alt.Color("batch_size:O", title="batch size", sort=sort, scale=alt.Scale(scheme="viridis")),
            detail="seed:N",
            tooltip=["batch_size:O", "lr:Q", "seed:N", "epoch:Q", "recent_train_loss:Q", "b_simple:Q"],
        )
    )
    return _spec(
        chart.properties(
            title="Gradient noise scale as the loss falls (each batch size at its best lr)",
            width=CHART_WIDTH,
            height=CHART_HEIGHT,
        )
    )


def b_simple_summary(cells: pd.DataFrame, best: pd.DataFrame) -> dict:
    """B_simple at the end of training over the grid's finished cells at their best lr."""
    at = at_best_lr(grid_cells(cells), best)
    at = at[at["status"] == "ok"]
    return mean_ci(at["b_simple_end"], POSITIVE)


def noise_findings(data: pd.DataFrame, end: dict, fit: dict, cells: pd.DataFrame) -> list[str]:
    if data.empty:
        return ["No probe gave a usable noise-scale estimate (the smoothed |G|² was never positive)."]
    out = []
    rho = spearman(data["recent_train_loss"], data["b_simple"])
    early = data[data["recent_train_loss"] >= data["recent_train_loss"].quantile(0.75)]["b_simple"].median()
    late = data[data["recent_train_loss"] <= data["recent_train_loss"].quantile(0.25)]["b_simple"].median()
    trend = "grows" if rho < -0.3 else "shrinks" if rho > 0.3 else "does not change steadily"
    out.append(
        f"B_simple {trend} as the training loss falls: median {fmt_num(early)} over the probes with the"
        f" highest quarter of losses and {fmt_num(late)} over the lowest quarter (Spearman between loss"
        f" and B_simple {fmt_num(rho, 2)})."
    )
    final_loss = float(
        data.sort_values("step").groupby(["batch_size", "seed"])["recent_train_loss"].last().median()
    )
    out.append(
        f"At the end of training (median training loss {fmt_num(final_loss)}), B_simple is"
        f" {ci_text(end)} (mean and 95% interval over the finished cells at each batch size's best lr)."
    )
    lo, hi = PUBLIC_B_SIMPLE
    if is_finite(end["mean"]):
        ratio = end["mean"] / ((lo + hi) / 2)
        out.append(
            f"A public replication measured B_simple of about {lo}-{hi} on MNIST; ours is {ratio:.2g}× that."
            f" B_simple depends on how far training has gone (here it moved from {fmt_num(early)} to"
            f" {fmt_num(late)} as the loss fell), on the model and on the learning rate, so a study that"
            " trains longer, or another network, lands elsewhere."
        )
    if is_finite(fit.get("b_crit", float("nan"))) and is_finite(end["mean"]):
        out.append(
            f"The two estimates of the critical batch size: B_simple {fmt_num(end['mean'])} from the"
            f" gradient noise, B_crit {fmt_num(fit['b_crit'])} from the steps-to-target trade-off"
            f" ({max(end['mean'], fit['b_crit']) / min(end['mean'], fit['b_crit']):.2g}× apart; McCandlish"
            " et al. find B_simple a rough, usually within an order of magnitude, predictor of B_crit)."
        )
    share = cells["measure_share"].dropna()
    if len(share):
        out.append(
            f"Measuring the noise scale and the sharpness took {fmt_pct(share.median())} of a cell's"
            f" training time (median; at most {fmt_pct(share.max())})."
        )
    return out


# ----------------------------------------------------------------------------- remedies


def remedy_variants(config: dict) -> list[dict]:
    return [
        {"batch_size": c.batch_size, "lr": c.lr, "recipe": c.recipe.suffix(), "variant": c.variant}
        for c in remedy_cells(config)
    ]


def select(frame: pd.DataFrame, b: int, lr: float, recipe: str) -> pd.DataFrame:
    return frame[
        (frame["batch_size"] == b) & np.isclose(frame["lr"], lr) & (frame["recipe"].fillna("") == recipe)
    ]


def smoothed_loss_at(curves: pd.DataFrame, step: float) -> float:
    """The seed-mean smoothed training loss at an iteration, interpolated on log(iteration)."""
    values = []
    for _, c in curves.groupby("seed"):
        c = c.sort_values("step")
        if c["step"].max() < step:
            continue
        values.append(float(np.interp(np.log(step), np.log(c["step"]), c["loss_smooth"])))
    return float(np.mean(values)) if values else float("nan")


def remedies_section(cells, probes, curves, config) -> Section:
    rem = config["remedies"]
    ref_b, ref_lr = rem["reference_batch_size"], rem["reference_lr"]
    ref_cells = select(cells, ref_b, ref_lr, "")
    ref_curves = select(curves, ref_b, ref_lr, "")
    rows, acc_frames, loss_frames, findings = [], [], [], []
    planned = config["train"]["epochs"]
    if len(ref_cells):
        acc = select(probes, ref_b, ref_lr, "").assign(variant=f"reference: batch {ref_b}, lr {ref_lr:g}")
        acc_frames.append(acc.assign(panel="reference"))
    for v in remedy_variants(config):
        c = select(cells, v["batch_size"], v["lr"], v["recipe"])
        if c.empty:
            continue
        ci = mean_ci(c["final_val_acc"], UNIT)
        failed = int(c["status"].isin(["diverged", "collapsed"]).sum())
        steps = int(c["iterations_per_epoch"].iloc[0]) * planned
        cur = select(curves, v["batch_size"], v["lr"], v["recipe"])
        rows.append(
            {
                "batch size": v["batch_size"],
                "variant": v["variant"],
                "lr": f"{v['lr']:g}",
                "validation acc after all epochs": ci_text(ci, fmt_pct),
                "failed seeds": f"{failed}/{len(c)}",
                "train loss at its last step": fmt_num(smoothed_loss_at(cur, steps)),
                f"batch {ref_b} at the same step": fmt_num(smoothed_loss_at(ref_curves, steps)),
                "_acc": ci,
            }
        )
        label = f"{v['variant']} (lr {v['lr']:g})"
        acc_frames.append(select(probes, v["batch_size"], v["lr"], v["recipe"]).assign(variant=label))
        loss_frames.append(cur.assign(variant=label))
    table = pd.DataFrame(rows)
    if len(ref_cells):
        findings.append(
            f"Reference: batch {ref_b} at lr {ref_lr:g} reaches {ci_text(mean_ci(ref_cells['final_val_acc'], UNIT), fmt_pct)}"
            f" validation accuracy after {planned} epochs."
        )
    for b, at in table.groupby("batch size") if len(table) else []:
        plain = at[at["variant"] == "none scaling"]
        best = at.loc[at["_acc"].map(lambda c: c["mean"] if is_finite(c["mean"]) else -1).idxmax()]
        text = (
            f"Batch {b}: with no remedy (lr {plain['lr'].iloc[0] if len(plain) else '?'}) validation accuracy is "
            + (ci_text(plain["_acc"].iloc[0], fmt_pct) if len(plain) else "n/a")
        )
        text += (
            f"; the best remedy is {best['variant']} at lr {best['lr']} with {ci_text(best['_acc'], fmt_pct)}"
        )
        if len(plain):
            sep = compare_intervals(best["_acc"], plain["_acc"].iloc[0])
            text += {
                1: " (the intervals do not overlap: it helps)",
                0: " (the intervals overlap: not a clear gain)",
                -1: "",
                None: " (one seed: no interval)",
            }[sep]
        lin = at[at["variant"] == "linear scaling"]
        lin_w = at[at["variant"].str.startswith("linear scaling +")]
        if len(lin) and len(lin_w):
            text += (
                f". Linear scaling alone: {ci_text(lin['_acc'].iloc[0], fmt_pct)} ({lin['failed seeds'].iloc[0]} seeds failed);"
                f" with warm-up: {ci_text(lin_w['_acc'].iloc[0], fmt_pct)} ({lin_w['failed seeds'].iloc[0]} failed)"
            )
        findings.append(text + ".")
    charts = []
    ref_label = f"reference: batch {ref_b}, lr {ref_lr:g}"
    ref_acc = pd.concat(acc_frames[:1]) if len(ref_cells) else pd.DataFrame()
    for b in sorted(rem["batch_sizes"]):
        mine = [f for f in acc_frames[1:] if len(f) and f["batch_size"].iloc[0] == b]
        if mine:
            acc = pd.concat([ref_acc.assign(variant=ref_label), *mine], ignore_index=True)
            charts.append(
                (
                    f"remedies-accuracy-bs{b}",
                    variant_chart(
                        acc,
                        "epoch",
                        "val_acc",
                        f"Batch {b}: validation accuracy against epoch (equal epochs)",
                        "validation accuracy",
                    ),
                    "",
                )
            )
        mine = [f for f in loss_frames if len(f) and f["batch_size"].iloc[0] == b]
        if mine:
            loss = thin_curves(pd.concat([ref_curves.assign(variant=ref_label), *mine], ignore_index=True))
            charts.append(
                (
                    f"remedies-loss-bs{b}",
                    variant_chart(
                        loss,
                        "step",
                        "loss_smooth",
                        f"Batch {b}: smoothed training loss against iteration (equal steps)",
                        "training loss",
                        log_x=True,
                    ),
                    "",
                )
            )
    return Section(
        "remedies",
        "When a huge batch cannot be avoided",
        f"Goyal et al. (2017): scale the learning rate with the batch size (lr = {ref_lr:g} ×"
        f" (b/{ref_b})^p, p = 0 none, ½ square root, 1 linear) and warm it up linearly over the first"
        f" {rem['warmup_epochs']:g} epoch(s). Compared at equal epochs (accuracy after all epochs) and at"
        f" equal steps (the smoothed training loss of the reference batch {ref_b} at the large batch's"
        " last step).",
        charts=charts,
        tables=[html_table(table.drop(columns=["_acc"]))] if len(table) else [],
        findings=findings,
    )


def variant_chart(data: pd.DataFrame, x: str, y: str, title: str, y_title: str, log_x: bool = False) -> dict:
    data = data.replace([np.inf, -np.inf], np.nan).dropna(subset=[x, y]).copy()
    if y == "loss_smooth":
        data[y] = data[y].clip(upper=LOSS_CLIP)
        y_title = f"{y_title} (clipped at {LOSS_CLIP:g})"
    x_enc = alt.X(
        f"{x}:Q",
        title={"epoch": "epoch", "step": "iteration (log scale)"}[x],
        scale=alt.Scale(type="log", nice=False) if log_x else alt.Scale(),
    )
    chart = (
        alt.Chart(data)
        .mark_line(point=x == "epoch")
        .encode(
            x=x_enc,
            y=alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(zero=y == "loss_smooth")),
            color=alt.Color(
                "variant:N", title="", legend=alt.Legend(orient="bottom", columns=2, labelLimit=400)
            ),
            detail="seed:N",
            tooltip=["variant:N", "seed:N", f"{x}:Q", f"{y}:Q"],
        )
    )
    return _spec(chart.properties(title=title, width=CHART_WIDTH, height=CHART_HEIGHT))


# ----------------------------------------------------------------------------- Solution 2


def solution2_section(cells, curves, analysis, config) -> Section:
    sol = config["solution2"]
    b, k, lr = sol["batch_size"], sol["splits"], sol["lr"]
    klr = round_lr(k * lr)
    base_m = config["train"]["momentum"]
    rows, charts, findings = [], [], []
    for m in sol["momentum"]:
        mom = None if m == base_m else m
        variants = [
            (c.variant.split(": ", 1)[1], c.lr, c.recipe.suffix())
            for c in solution2_cells(config)
            if c.recipe.momentum == mom
        ]
        frames = []
        for label, lr_i, recipe in variants:
            c = select(cells, b, lr_i, recipe)
            if c.empty:
                continue
            rows.append(
                {
                    "momentum": f"{m:g}",
                    "training": label,
                    "updates per batch": k if "Solution" in label else 1,
                    "validation acc after all epochs": ci_text(mean_ci(c["final_val_acc"], UNIT), fmt_pct),
                    "final train loss": ci_text(mean_ci(c["final_train_loss"], POSITIVE)),
                    "failed seeds": f"{int(c['status'].isin(['diverged', 'collapsed']).sum())}/{len(c)}",
                }
            )
            frames.append(select(curves, b, lr_i, recipe).assign(variant=label))
        if frames:
            charts.append(
                (
                    f"solution2-m{m:g}".replace(".", "_"),
                    variant_chart(
                        thin_curves(pd.concat(frames, ignore_index=True)),
                        "step",
                        "loss_smooth",
                        f"Batch {b}, momentum {m:g}: smoothed training loss",
                        "training loss",
                        log_x=True,
                    ),
                    "",
                )
            )
    for m in sol["momentum"]:
        pairs = [e for e in analysis.get("solution2_equivalence", []) if e["momentum"] == m]
        if not pairs:
            continue
        first = max(p["first_update_rel"] for p in pairs)
        agree = [p["agree_steps"] for p in pairs]
        span = f"{min(agree)}" if min(agree) == max(agree) else f"{min(agree)}-{max(agree)}"
        together = (
            "they agree only before the first update"
            if max(agree) <= 1
            else f"they agree within {AGREE_REL:g} for the first {span} of {pairs[0]['steps']:,} iterations"
        )
        text = (
            f"Momentum {m:g}: after the first update the training losses of Solution 2 (k = {k}, lr"
            f" {lr:g}) and of plain training at lr {klr:g} differ by {first:.1g} (relative, largest over"
            f" {len(pairs)} seed(s)); {together}"
        )
        if equivalent(pairs):
            text += ": the same step, to float rounding." + (
                f" Rounding differences then grow at this large lr (largest difference"
                f" {max(p['max_abs'] for p in pairs):.2g} by the end), as between any two"
                " summation orders."
                if min(agree) < pairs[0]["steps"]
                else ""
            )
        else:
            text += ": a different step from the first update on; the equivalence does not hold."
        findings.append(text)
    return Section(
        "solution2",
        "Solution 2: one forward pass, k updates",
        f"One forward pass over a batch of {b}, then k = {k} updates, each from the mean loss of one"
        f" k-th of it. The naive version fails in PyTorch: after the first optimizer.step() the weights"
        f" saved in the graph have changed in place. batchlab takes all k gradients from the graph first,"
        f" then applies them in turn. All k gradients are therefore taken at the same weights: for plain"
        f" SGD the k updates sum to lr × Σ g_j = (k × lr) × g_batch, one full-batch step with k times the"
        f" learning rate (here {klr:g}). With momentum the velocity grows between the k updates, so the"
        " equivalence is no longer exact.",
        charts=charts,
        tables=[html_table(pd.DataFrame(rows))] if rows else [],
        findings=findings,
    )


# ----------------------------------------------------------------------------- sharpness


def sharpness_table(cells: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    at = at_best_lr(grid_cells(cells), best)
    at = at[at["status"] == "ok"]
    rows = []
    for b, g in at.groupby("batch_size"):
        s, gap = mean_ci(g["final_sharpness"]), mean_ci(g["generalization_gap"], (-1.0, 1.0))
        rows.append(
            {
                "batch_size": int(b),
                "lr": float(g["lr"].iloc[0]),
                "sharpness": s["mean"],
                "sharpness_lo": s["lo"],
                "sharpness_hi": s["hi"],
                "gap": gap["mean"],
                "gap_lo": gap["lo"],
                "gap_hi": gap["hi"],
                "seeds": s["n"],
                # sharpness x lr / 2: above 1, plain SGD's step overshoots along the sharpest direction
                "stability": float(g["sharpness_lr_ratio"].mean()) if "sharpness_lr_ratio" in g else float("nan"),
                "change": float(g["sharpness_change"].max()) if "sharpness_change" in g else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def ci_chart(data: pd.DataFrame, y: str, title: str, y_title: str, log_y: bool) -> dict:
    scale = alt.Scale(type="log", nice=False) if log_y else alt.Scale(zero=False)
    base = alt.Chart(data).encode(x=_log_x())
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
        layers.append(
            alt.Chart(bars)
            .mark_rule(clip=True)
            .encode(x=_log_x(), y=alt.Y(f"{y}_lo:Q", scale=scale), y2=f"{y}_hi:Q")
        )
    return _spec(alt.layer(*layers).properties(title=title, width=SMALL_CHART, height=220))


def stability_findings(table: pd.DataFrame, iterations: int) -> list[str]:
    """Sharpness against plain SGD's 2 / lr limit, and whether the power iteration converged."""
    out = []
    if table["stability"].notna().any():
        out.append(
            "Against plain SGD's stability limit 2 / lr (sharpness × lr / 2 above 1: a step overshoots"
            " along the sharpest direction): "
            + ", ".join(f"{r.stability:.2f} at batch {int(r.batch_size)}" for r in table.itertuples())
            + "."
        )
    if table["change"].notna().any():
        worst = table["change"].max()
        state = "(converged)." if worst <= 1e-3 else f"(not converged in {iterations} steps: the sharpness is an estimate)."
        out.append(f"The power iteration's last relative change was at most {worst:.1e} {state}")
    return out


def sharpness_section(cells: pd.DataFrame, best: pd.DataFrame, config: dict) -> Section:
    table = sharpness_table(cells, best)
    findings, charts = [], []
    if len(table) >= 2:
        first, last = table.iloc[0], table.iloc[-1]
        for col, name in (
            ("sharpness", "Sharpness (top Hessian eigenvalue)"),
            ("gap", "The generalization gap (train − test accuracy)"),
        ):
            rho = spearman(table["batch_size"], table[col])
            basis = f"Spearman {fmt_num(rho, 2)}"
            if not is_finite(rho) and len(table) == 2:  # two batch sizes: the one step decides
                rho = 1.0 if last[col] > first[col] else -1.0 if last[col] < first[col] else 0.0
                basis = "two batch sizes"
            way = "grows" if rho >= 0.5 else "falls" if rho <= -0.5 else "shows no steady trend"
            fmt = fmt_num if col == "sharpness" else (lambda v: f"{100 * v:+.2f} points")
            findings.append(
                f"{name} {way} with batch size ({basis}): {fmt(first[col])} at batch"
                f" {int(first['batch_size'])} and {fmt(last[col])} at batch {int(last['batch_size'])},"
                " each at its best lr."
            )
        findings += stability_findings(table, config["measure"]["sharpness_iterations"])
        charts = [
            (
                "sharpness-vs-batch-size",
                ci_chart(
                    table,
                    "sharpness",
                    "Sharpness of the final model",
                    "top Hessian eigenvalue (log scale)",
                    True,
                ),
                "",
            ),
            (
                "gap-vs-batch-size",
                ci_chart(
                    table, "gap", "Generalization gap of the final model", "train − test accuracy", False
                ),
                "",
            ),
        ]
    mea = config["measure"]
    return Section(
        "sharpness",
        "Sharpness and the generalization gap",
        "Keskar et al. (2017) argue that large batches converge to sharp minima that generalize worse."
        f" Sharpness here is the largest eigenvalue of the Hessian of the training loss on the first"
        f" {mea['sharpness_subset']:,} training images (power iteration on Hessian-vector products,"
        f" {mea['sharpness_iterations']} steps at most); the gap is training accuracy (first"
        f" {mea['train_eval_size']:,} images) minus test accuracy. Each batch size at its best lr; bars: 95% intervals over seeds.",
        charts=charts,
        findings=findings,
    )


# ----------------------------------------------------------------------------- verdicts


def _verdict(direction_ok: bool | None, sep: int | None, want: int = 1) -> str:
    """supported: the direction agrees and the intervals separate; not supported: the intervals
    separate the other way; inconclusive: they overlap (or there is one seed)."""
    if direction_ok is None:
        return "inconclusive"
    if not direction_ok:
        return "not supported" if sep == -want else "inconclusive"
    if sep is None:
        return "inconclusive"
    return "supported" if sep == want else "inconclusive"


def verdicts(cells, settings, best, targets, probes, epochs, analysis, config) -> list[dict]:
    """Each claim of the original post, with a verdict computed from the data: supported, not
    supported, mixed (the data point both ways) or inconclusive (the 95% intervals over seeds
    cannot separate what the claim says; more seeds would decide)."""
    paired = {v["key"]: v for v in (analysis or {}).get("verdicts", [])}
    order = ["oscillation", "epoch_time", "gradient", "local_minima", "late_blowup", "lr_follows_batch", "solution2"]
    return [paired[k] for k in order if k in paired]


def verdict_section(items: list[dict], n_seeds: int) -> Section:
    table = pd.DataFrame(items, columns=["claim", "verdict", "evidence", "test"]).rename(
        columns={"test": "what this test can and cannot show"}
    )
    return Section(
        "verdicts",
        "Verdicts on the original claims",
        "Each claim of the original post, tested on this study's data over its"
        f" {n_seeds} seed(s). Where two settings are compared, the test is the paired difference over"
        " their shared seeds (95% t-interval; seeds share initial weights and data order across"
        " cells): 'supported' when it excludes 0 on the claim's side, 'not supported' when it"
        " excludes 0 on the other or lies within a margin too small to matter, 'inconclusive' when it"
        " holds 0 and reaches beyond that margin or fewer than 3 seeds are shared; 'mixed' when the"
        " data point both ways. Best lrs are chosen on the validation set and compared on the test set.",
        tables=[html_table(table, css_class="data verdicts")],
    )
