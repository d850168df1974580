"""Does the optimizer change the batch-size rule? Per optimizer of the grid's optimizer axis,
the same fit as the grid's: its lr response per batch size (batchlab.analysis.lr_response), the
laws its optima follow judged by AICc (batchlab.analysis.lr_law; for Adam's kind also Li et
al. 2024's surge beside the square-root rule), each seed's exponent of optimum lr against batch
size; its steps to the target and critical batch size; and, against the study's first
optimizer, the paired difference of the exponents with a verdict on the literature's
expectation, decided in the study's family (batchlab.analysis.family).

Seed s of every optimizer starts from the same weights and sees the same data order, so two
optimizers' exponents are paired by seed.
"""

from __future__ import annotations

import math

import pandas as pd

from batchlab.analysis.aggregate import steps_to_target_table
from batchlab.analysis.claims_lr import seed_exponents
from batchlab.analysis.family import primary
from batchlab.analysis.fits import critical_batch, log_b_crit
from batchlab.analysis.lr_law import LAWS, SURGE, lr_law
from batchlab.analysis.lr_response import response_table
from batchlab.analysis.rows import shared_seeds, steps_by_seed
from batchlab.analysis.signflip import p_greater, p_less
from batchlab.analysis.stats import Paired, decide, mean_ci, paired_bootstrap, paired_difference
from batchlab.study import design, optimizers
from batchlab.train.settings import LABELS

RULES = {"linear": 1.0, "square root": 0.5}
# the literature's best-lr exponent below the critical batch size, and who found it
EXPECTED = {
    "sgd": (1.0, "linear scaling, lr ∝ b (Goyal et al. 2017; Shallue et al. 2018)"),
    "momentum": (1.0, "linear, as plain SGD, with perfect scaling up to larger batches (Shallue et al. 2018; Zhang et al. 2019)"),
    "nesterov": (1.0, "linear, as momentum SGD (Shallue et al. 2018 found the two alike)"),
    "adam": (0.5, "square-root scaling, lr ∝ √b (Malladi et al. 2022)"),
    "adamw": (0.5, "square-root scaling, lr ∝ √b (Malladi et al. 2022)"),
    "lars": (1.0, "linear scaling of the global lr (You et al. 2017)"),
    "lamb": (0.5, "square-root scaling (You et al. 2019)"),
}
ADAPTIVE = {"adam", "adamw", "lamb"}  # per-coordinate steps: the surge law is judged beside the others
SAME_MARGIN = 0.15  # exponents closer than this follow the same rule (a x2 lr window resolves about that)
B_CRIT_MARGIN = math.log(1.25)  # critical batch sizes within 25% of each other are alike
SCALING = "perfect scaling up to larger batches (Shallue et al. 2018; Zhang et al. 2019)"


def optimizer_grid(cells: pd.DataFrame, config: dict, name: str) -> pd.DataFrame:
    """The grid cells of one optimizer (every seed of grid.seeds), marked in_grid for the
    shared fits."""
    group = "optimizers" if len(optimizers(config)) > 1 else "grid"
    names = {c.name() for c in design(config) if c.in_group(group) and c.recipe.optimizer == name}
    sub = cells[cells["cell"].isin(names) & cells["seed"].isin(config["grid"]["seeds"])]
    return sub.assign(in_grid=True)


def optimizer_rule(name: str, sub: pd.DataFrame, targets: pd.DataFrame) -> dict:
    """One optimizer's lr response and laws, each seed's exponent over the batch sizes whose
    optimum lies inside its window, and its critical batch size; `targets`: its steps to the
    target (batchlab.analysis.aggregate.steps_to_target_table)."""
    response, reps = response_table(sub)
    law = lr_law(response, reps, (*LAWS, SURGE) if name in ADAPTIVE else LAWS)
    used = sorted(int(b) for b in response.loc[response["window_edge"].isna(), "batch_size"]) if len(response) else []
    slopes = seed_exponents(sub, used) if len(used) >= 2 else {}
    e = mean_ci(list(slopes.values()))
    critical = critical_batch(targets, sub) if len(targets) else {}
    lo, hi = e["lo"], e["hi"]
    expected, source = EXPECTED[name]
    agrees = bool(lo <= expected <= hi) if math.isfinite(lo) and math.isfinite(hi) else None
    return {
        "optimizer": name,
        "label": LABELS[name],
        "optima": response.drop(columns=["curve"]).to_dict("records"),
        "exponent": {"exponent": e["mean"], "lo": lo, "hi": hi, "batch_sizes": used, "seeds": {str(k): v for k, v in slopes.items()}},
        "law": law,
        "consistent_with": [r for r, k in RULES.items() if lo <= k <= hi] if math.isfinite(lo) else [],
        "expected_exponent": expected,
        "literature": source,
        "agrees_with_literature": agrees,  # its expected exponent inside the interval (None: no interval)
        "b_crit": {k: critical.get(k, math.nan) for k in ("b_crit", "b_crit_lo", "b_crit_hi", "s_min")},
        "targets": targets.to_dict("records"),
    }


def exponent_gap(a: pd.DataFrame, b: pd.DataFrame, used: list[int]) -> Paired:
    """Each seed's exponent under a minus its exponent under b, over the batch sizes `used`."""
    if len(used) < 2:
        return Paired(math.nan, math.nan, math.nan, 0, ())
    return paired_difference(seed_exponents(a, used), seed_exponents(b, used))


def b_crit_gap(a: dict[int, pd.Series], b: dict[int, pd.Series], n_boot: int = 300, seed: int = 0) -> Paired:
    """log B_crit(a) - log B_crit(b) from their steps by seed (batchlab.analysis.rows.steps_by_seed;
    as many resamples as B_crit's own interval)."""
    if len(a) < 3 or len(b) < 3:
        return Paired(math.nan, math.nan, math.nan, 0, ())
    shared = shared_seeds([*a.values(), *b.values()])
    return paired_bootstrap(shared, lambda pick: log_b_crit(a, pick) - log_b_crit(b, pick), n_boot, seed)


def compare_optimizers(cells: pd.DataFrame, config: dict) -> dict | None:
    """Every optimizer's rule, and each against the first; None for a one-optimizer study."""
    names = optimizers(config)
    if len(names) < 2 or "cell" not in cells:
        return None
    subs = {n: optimizer_grid(cells, config, n) for n in names}
    subs = {n: sub for n, sub in subs.items() if len(sub)}
    targets = {n: steps_to_target_table(sub) for n, sub in subs.items()}
    steps = {n: steps_by_seed(targets[n], sub) for n, sub in subs.items()}
    rules = {n: optimizer_rule(n, sub, targets[n]) for n, sub in subs.items()}
    ref, gaps = names[0], []
    for name, rule in rules.items():
        if name == ref or ref not in rules:
            continue
        used = sorted(set(rule["exponent"].get("batch_sizes") or []) & set(rules[ref]["exponent"].get("batch_sizes") or []))
        gap = exponent_gap(subs[name], subs[ref], used)
        gaps.append({"optimizer": name, "reference": ref, "batch_sizes": used, "gap": {**gap.as_dict(), "diffs": list(gap.diffs)},
                     "log_b_crit_gap": b_crit_gap(steps[name], steps[ref]).as_dict()})  # fmt: skip
    return {"reference": ref, "rules": list(rules.values()), "gaps": gaps}


def optimizer_verdicts(comparison: dict | None) -> list[dict]:
    """Per optimizer against the first: the literature's expectation for the two exponents and
    for the two critical batch sizes, each decided on a paired difference."""
    if not comparison:
        return []
    rules = {r["optimizer"]: r for r in comparison["rules"]}
    out = []
    for g in comparison["gaps"]:
        mine, theirs = rules[g["optimizer"]], rules[g["reference"]]
        out.append(exponent_verdict(g, mine, theirs))
        if "log_b_crit_gap" in g and g["optimizer"] != "sgd":
            out.append(b_crit_verdict(g, mine, theirs))
    return out


def _paired(record: dict) -> Paired:
    return Paired(**{**record, "seeds": tuple(record["seeds"])})


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def exponent_verdict(g: dict, mine: dict, theirs: dict) -> dict:
    """The literature's expectation for two optimizers' exponents, decided in the family on the
    per-seed differences: "grows more slowly" one-sided (below 0; against: short of -SAME_MARGIN),
    "the same rule" as an equivalence (for: within ±SAME_MARGIN, two one-sided tests; against:
    beyond it either way)."""
    d = _paired(g["gap"])
    if mine["expected_exponent"] < theirs["expected_exponent"]:
        claim = f"{_capital(mine['label'])}'s best lr grows more slowly with batch size than {theirs['label']}'s."
        test = primary(d, -1, SAME_MARGIN)
        rule = f"One-sided, per seed: the difference below 0 (supported) or short of -{SAME_MARGIN:g} (not supported)."
    else:
        claim = f"{_capital(mine['label'])}'s best lr follows the same batch-size rule as {theirs['label']}'s."
        diffs = list(d.diffs)
        within = max(p_greater(diffs, -SAME_MARGIN), p_less(diffs, SAME_MARGIN))
        beyond = min(1.0, 2 * min(p_greater(diffs, SAME_MARGIN), p_less(diffs, -SAME_MARGIN)))
        test = {**primary(d, +1, SAME_MARGIN), "p": [within, beyond]}
        rule = f"Equivalence, per seed: the difference within ±{SAME_MARGIN:g} (supported, two one-sided tests) or beyond it (not supported)."
    text = f"{d.mean:+.2f} [{d.lo:+.2f}, {d.hi:+.2f}]" if math.isfinite(d.lo) else "not fitted"
    return {
        "key": f"optimizer_rule:{mine['optimizer']}",
        "claim": claim,
        "verdict": "inconclusive",
        "headline": f"exponent {mine['label']} − {theirs['label']}: {text}",
        "difference": g["gap"],
        "primary": test,
        "evidence": f"Each seed's exponent of its fitted optimum lr against batch size: {_exponent_text(mine)} for"
        f" {mine['label']} (batch sizes {_used(mine)}), {_exponent_text(theirs)} for {theirs['label']} ({_used(theirs)});"
        f" over the batch sizes both fit, {g['batch_sizes']}, the paired difference is {text} over {d.n} seeds. Laws:"
        f" {_law_text(mine)} for {mine['label']}; {_law_text(theirs)} for {theirs['label']}. The literature:"
        f" {mine['label']}, {mine['literature']}; {theirs['label']}, {theirs['literature']}.",
        "test": f"{rule} Seed s of each optimizer starts from the same weights; exponents within ±{SAME_MARGIN:g} count as one rule.",
    }


def _law_text(rule: dict) -> str:
    laws = (rule.get("law") or {}).get("laws") or {}
    if not laws:
        return "no law fitted"
    return f"preferred {rule['law']['preferred']} (" + ", ".join(f"{k} {v.get('weight', math.nan):.2f}" for k, v in laws.items()) + ")"


def b_crit_verdict(g: dict, mine: dict, theirs: dict) -> dict:
    """Momentum and adaptive methods extend perfect scaling (Shallue et al. 2018; Zhang et al.
    2019): a larger critical batch size, decided on the paired log ratio."""
    d = _paired(g["log_b_crit_gap"])
    if math.isfinite(d.lo):
        verdict, why = decide(d, +1, B_CRIT_MARGIN)
        text = f"×{math.exp(d.mean):.2f} [{math.exp(d.lo):.2f}, {math.exp(d.hi):.2f}]"
    else:
        verdict, why, text = "inconclusive", "a critical batch size could not be fitted for both (fewer than three batch sizes reached the target)", "not fitted"
    return {
        "key": f"optimizer_b_crit:{mine['optimizer']}",
        "claim": f"{_capital(mine['label'])} keeps perfect scaling to larger batches than {theirs['label']}: a larger critical batch size.",
        "verdict": verdict,
        "headline": f"B_crit {mine['label']} / {theirs['label']}: {text}",
        "difference": g["log_b_crit_gap"],
        "evidence": f"Critical batch size (S = S_min (1 + B_crit / B) fitted to the steps to the target): {_b_crit_text(mine)}"
        f" for {mine['label']}, {_b_crit_text(theirs)} for {theirs['label']}; their ratio, paired over {d.n} seeds:"
        f" {text} ({why}; ratios within ×{math.exp(B_CRIT_MARGIN):g} count as alike). The literature: {SCALING}.",
        "test": "A paired bootstrap over seeds of the log ratio of the two fitted critical batch sizes, each optimizer"
        " at the lr that reaches the target in the fewest steps at each batch size.",
    }


def _used(rule: dict) -> str:
    return ", ".join(str(b) for b in rule["exponent"].get("batch_sizes") or []) or "none"


def _b_crit_text(rule: dict) -> str:
    bc = rule["b_crit"]
    if not math.isfinite(bc.get("b_crit", math.nan)):
        return "not fitted"
    if not math.isfinite(bc.get("b_crit_lo", math.nan)):
        return f"{bc['b_crit']:.0f}"
    return f"{bc['b_crit']:.0f} [{bc['b_crit_lo']:.0f}, {bc['b_crit_hi']:.0f}]"


def _exponent_text(rule: dict) -> str:
    e = rule["exponent"]
    if not math.isfinite(e.get("lo", math.nan)):
        return "not fitted"
    return f"{e['exponent']:.2f} [{e['lo']:.2f}, {e['hi']:.2f}]"
