"""Does my optimizer change the batch-size rule? Each optimizer of the grid's optimizer axis: its
best lr against batch size with the fitted exponent beside the linear and square-root rules,
its steps to the target and critical batch size, and the literature's expectation (numbers
from batchlab.analysis.claims_optimizers)."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from batchlab.analysis.stats import is_finite
from batchlab.report.encodings import HEIGHT, WIDTH, batch_x, log_scale, spec
from batchlab.report.fmt import fmt_int, html_table
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section


def _positive(v) -> bool:
    """Drawable on a log axis."""
    return is_finite(v) and v > 0


def _interval(value, lo, hi, digits=2) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if lo is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _row(rule: dict) -> dict:
    e, bc = rule["exponent"], rule["b_crit"]
    optima = ", ".join(
        f"{int(o['batch_size'])}: {o['lr_opt']:.3g}" + (" (edge)" if isinstance(o.get("window_edge"), str) else "")
        for o in rule["optima"]
    )
    return {
        "optimizer": rule["label"],
        "best lr by batch size (validation)": optima,
        "exponent k, best lr ∝ b^k [95%]": _interval(e.get("exponent"), e.get("lo"), e.get("hi")),
        "rules its interval holds": " and ".join(rule["consistent_with"]) or "neither",
        "laws, AICc weight": _laws(rule.get("law") or {}),
        "the literature expects": rule["literature"],
        "this study agrees": {True: "yes", False: "no", None: "n/a"}[rule.get("agrees_with_literature")],
        "critical batch size [95%]": _b_crit(bc),
    }


def _laws(law: dict) -> str:
    laws = law.get("laws") or {}
    if not laws:
        return f"not fitted ({law.get('why_not', 'too few optima')})"
    ranked = sorted(laws.items(), key=lambda kv: -kv[1].get("weight", 0.0) if is_finite(kv[1].get("weight")) else 1.0)
    return ", ".join(f"{k} {v['weight']:.2f}" if is_finite(v.get("weight")) else f"{k} n/a" for k, v in ranked)


def _b_crit(bc: dict) -> str:
    v, lo, hi = (bc.get(k) for k in ("b_crit", "b_crit_lo", "b_crit_hi"))
    if v is None or not math.isfinite(v):
        return "not fitted"
    if lo is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return fmt_int(v)
    return f"{fmt_int(v)} [{fmt_int(lo)}, {fmt_int(hi)}]"


RULE_DASH = {"linear": [6, 3], "square root": [2, 2]}


def best_lr_chart(rules: list[dict]) -> dict:
    """Each optimizer's interpolated optima against batch size (log-log, 95% bars), with the
    linear and square-root rules drawn through its smallest batch size's optimum."""
    points, guides = [], []
    for r in rules:
        opt = [o for o in r["optima"] if math.isfinite(o.get("lr_opt", math.nan))]
        for o in opt:
            points.append({"optimizer": r["label"], "batch_size": o["batch_size"], "lr": o["lr_opt"],
                           "lo": o["lr_opt_lo"], "hi": o["lr_opt_hi"]})  # fmt: skip
        if opt:
            b0, lr0 = opt[0]["batch_size"], opt[0]["lr_opt"]
            for name, k in (("linear", 1.0), ("square root", 0.5)):
                for o in opt:
                    guides.append({"optimizer": r["label"], "rule": f"{r['label']}: {name}", "batch_size": o["batch_size"],
                                   "lr": lr0 * (o["batch_size"] / b0) ** k, "dash": name})  # fmt: skip
    data, lines = pd.DataFrame(points), pd.DataFrame(guides)
    y = alt.Y("lr:Q", title="best learning rate (log scale)", scale=log_scale())
    color = alt.Color("optimizer:N", title="optimizer")
    base = alt.Chart(data).encode(x=batch_x(), y=y, color=color)
    dash = alt.StrokeDash("dash:N", title="rule", scale=alt.Scale(domain=list(RULE_DASH), range=list(RULE_DASH.values())))
    layers = [
        alt.Chart(lines).mark_line(opacity=0.45, strokeWidth=1.5).encode(x=batch_x(), y=y, color=color, detail="rule:N", strokeDash=dash),
        base.mark_line(point=True, strokeWidth=2.5).encode(tooltip=["optimizer:N", "batch_size:Q", "lr:Q", "lo:Q", "hi:Q"]),
    ]
    bars = data[data["lo"].map(_positive) & data["hi"].map(_positive)] if len(data) else data  # log axis
    if len(bars):
        low = alt.Y("lo:Q", title="best learning rate (log scale)", scale=log_scale())
        layers.append(alt.Chart(bars).mark_rule().encode(x=batch_x(), y=low, y2="hi:Q", color=color))
    return spec(alt.layer(*layers).properties(title="Best lr against batch size, per optimizer", width=WIDTH, height=HEIGHT))


def steps_chart(rules: list[dict], target: float) -> dict | None:
    rows = [
        {"optimizer": r["label"], "batch_size": t["batch_size"], "steps": t["steps"], "lo": t["steps_lo"], "hi": t["steps_hi"]}
        for r in rules
        for t in r["targets"]
        if t.get("reached") and is_finite(t.get("steps"))
    ]
    if not rows:
        return None
    data = pd.DataFrame(rows)
    y = alt.Y("steps:Q", title="steps (log scale)", scale=log_scale())
    layers = [alt.Chart(data).mark_line(point=True).encode(x=batch_x(), y=y, color="optimizer:N", tooltip=["optimizer:N", "batch_size:Q", "steps:Q"])]
    bars = data[data["lo"].map(_positive) & data["hi"].map(_positive)]  # a t-interval can reach below 0
    if len(bars):
        layers.append(alt.Chart(bars).mark_rule().encode(x=batch_x(), y=alt.Y("lo:Q", title="steps (log scale)", scale=log_scale()), y2="hi:Q", color="optimizer:N"))
    chart = alt.layer(*layers)
    return spec(chart.properties(title=f"Steps to {100 * target:g}% validation accuracy (best lr of each)", width=WIDTH, height=HEIGHT))


def section(study: Inputs) -> Section | None:
    comparison = study.analysis.get("optimizers")
    if not comparison or not comparison.get("rules"):
        return None
    rules = comparison["rules"]
    figures = [("optimizers-best-lr", best_lr_chart(rules), "Dashed: the linear and square-root rules through each optimizer's first optimum.")]
    steps = steps_chart(rules, study.analysis.get("target_val_acc", 0.95))
    if steps is not None:
        figures.append(("optimizers-steps", steps, "Each optimizer at the lr that reaches the target in the fewest steps; bars: 95% intervals over seeds."))
    verdicts = [v for v in study.verdicts if v["key"].split(":")[0] in ("optimizer_rule", "optimizer_b_crit")]
    findings = [f"{v['claim']} Verdict: {v['verdict']}. {v['evidence']}" for v in verdicts]
    return Section(
        "optimizers",
        "Does the optimizer change the batch-size rule?",
        "Every optimizer trained the whole grid, each over its own windows of learning rates, and gets the grid's own"
        " fit: its lr response per batch size (the optimum with an interval from seeds resampled through the fit),"
        " the laws its optima follow judged by AICc weights (saturating, linear, square root, a free power; for"
        " Adam's kind also Li et al. 2024's surge, whose optimum falls again past B_noise), and each seed's exponent"
        " k of optimum lr ∝ b^k over the batch sizes whose optimum lies inside its window. Seed s of every optimizer"
        f" starts from the same weights, so two optimizers' exponents are compared seed by seed. The first,"
        f" {rules[0]['label']}, is the study's own.",
        charts=figures,
        tables=[html_table(pd.DataFrame([_row(r) for r in rules]))],
        findings=findings,
        tables_first=True,
    )
