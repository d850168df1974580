"""How the study's verdicts are decided together: at every near-optimal lr, by exact one-sided
sign-flip tests, with Holm's correction over the family.

Each verdict decided here names its test (`primary`: the paired differences seed by seed, the
sign the claim predicts and the margin below which an effect is too small to matter), fixed
before the data:

- "for": the mean difference lies on the predicted side of 0 (p_greater of expected * d);
- "against": it falls short of the margin on the predicted side (p_less of expected * d against
  the margin): no effect that matters, or one the other way.

A verdict read at the best lr is read at every near-optimal lr (every pair, where two batch
sizes are compared). Across those readings a hypothesis counts as shown only where every one
shows it (the largest p-value: an intersection-union test, which needs no correction of its
own). The family is every verdict decided here, both hypotheses of each; Holm's step-down keeps
the chance of any false decision in it at ALPHA. Then:

- not supported: "against" is shown (at every near-optimal lr);
- supported: "for" is shown (at every near-optimal lr), and "against" is not;
- depends on the lr: neither holds at every lr, but some reading decides at its hypothesis's
  Holm level (the range of what the readings found is given);
- inconclusive: no reading decides.
"""

from __future__ import annotations

import itertools
import math

import pandas as pd

from batchlab.analysis.signflip import holm, p_greater, p_less, smallest_p

ALPHA = 0.05
MAX_READINGS = 4  # near-optimal lrs read per batch size (the best and its nearest in the set)


def primary(d, expected: int, margin: float, scale: str = "difference") -> dict:
    """The test a verdict is decided by: a Paired difference (batchlab.analysis.stats), the sign
    the claim predicts, the margin; `scale` says how to print it ('difference', 'log ratio')."""
    return {**d.as_dict(), "diffs": list(d.diffs), "expected": int(expected), "margin": float(margin), "scale": scale}


def readings(best: pd.DataFrame, near: dict[int, list[float]], sizes: list[int]) -> list[dict[int, float]]:
    """The lr choices a verdict is read at: every combination of the near-optimal lrs of
    `sizes` (each batch size's best first, then its set by distance from it on a log scale)."""
    options = []
    for b in sizes:
        chosen = float(best.loc[best["batch_size"] == b, "best_lr"].iloc[0])
        others = sorted((lr for lr in near.get(b, []) if not math.isclose(lr, chosen)), key=lambda lr: abs(math.log(lr / chosen)))
        options.append([chosen, *others][:MAX_READINGS])
    return [dict(zip(sizes, combo, strict=True)) for combo in itertools.product(*options)]


def with_lrs(best: pd.DataFrame, lrs: dict[int, float]) -> pd.DataFrame:
    """best with the lr of some batch sizes replaced."""
    out = best.copy()
    for b, lr in lrs.items():
        out.loc[out["batch_size"] == b, "best_lr"] = lr
    return out


def read_at_near_optimal(verdict, best: pd.DataFrame, near: dict[int, list[float]], sizes: list[int]) -> dict | None:
    """verdict(best) read at every near-optimal choice of the lrs of `sizes`: the record at the
    best lrs, with each reading's test under 'readings'."""
    first = verdict(best)
    if first is None or "primary" not in first:
        return first
    found = []
    for lrs in readings(best, near, [b for b in sizes if b in set(best["batch_size"])]):
        record = first if all(math.isclose(lr, float(best.loc[best["batch_size"] == b, "best_lr"].iloc[0])) for b, lr in lrs.items()) else verdict(with_lrs(best, lrs))
        if record is not None and "primary" in record:
            found.append({"lrs": {str(b): lr for b, lr in lrs.items()}, **record["primary"]})
    return {**first, "readings": found or [{"lrs": {}, **first["primary"]}]}


def p_values(test: dict) -> tuple[float, float]:
    """(p for, p against) of one reading: its own exact p-values where it has them (`p`), else
    the sign-flip tests of its paired differences."""
    if "p" in test:
        return float(test["p"][0]), float(test["p"][1])
    d = [test["expected"] * v for v in test["diffs"]]
    return p_greater(d), p_less(d, test["margin"])


def decide_family(verdicts: list[dict], alpha: float = ALPHA, corrected: bool = True) -> list[dict]:
    """The verdicts with a `primary` test decided together (module docstring); the others
    (decided by their own rule) pass through. corrected=False tests every hypothesis at alpha
    alone (the split-half check: five seeds can never pass the family's correction)."""
    tested = [v for v in verdicts if "primary" in v]
    table = {}
    for v in tested:
        reads = v.get("readings") or [{"lrs": {}, **v["primary"]}]
        ps = [p_values(t) for t in reads]
        table[v["key"]] = (reads, ps, max(p[0] for p in ps), max(p[1] for p in ps))
    family = {f"{k}:{side}": row[2 + i] for k, row in table.items() for i, side in enumerate(("for", "against"))}
    held = holm(family, alpha) if corrected else {k: (p, alpha, p <= alpha) for k, p in family.items()}
    out = []
    for v in verdicts:
        if v["key"] in table:
            v = _decided(v, *table[v["key"]], held[f"{v['key']}:for"], held[f"{v['key']}:against"], len(family))
        out.append(v)
    return out


def _decided(v: dict, reads, ps, p_for, p_against, h_for, h_against, m: int) -> dict:
    n = min(t["n"] for t in reads)
    where = f" at every near-optimal lr ({len(reads)} readings)" if len(reads) > 1 else ""
    outcomes = ["not supported" if pa <= h_against[1] else "supported" if pf <= h_for[1] else "inconclusive" for pf, pa in ps]
    exact = "p" in reads[0]  # a count of seeds with its own exact p-values, not a paired difference
    if n < 2 and not exact:
        verdict, why = "inconclusive", f"only {n} paired seed(s)"
    elif h_against[2]:
        verdict, why = "not supported", f"short of the margin{where} (p = {p_against:.2g}, Holm level {h_against[1]:.2g})"
    elif h_for[2]:
        verdict, why = "supported", f"on the predicted side{where} (p = {p_for:.2g}, Holm level {h_for[1]:.2g})"
    elif len(reads) > 1 and set(outcomes) - {"inconclusive"}:  # one reading: no lr to depend on
        found = "; ".join(f"{_lrs_text(t['lrs'])}: {o} ({_value_text(t)})" for t, o in zip(reads, outcomes, strict=True))
        verdict, why = "depends on the lr", f"the near-optimal lrs disagree: {found}"
    else:
        verdict, why = "inconclusive", f"neither side shown (p for {p_for:.2g}, against {p_against:.2g}; Holm levels {h_for[1]:.2g}, {h_against[1]:.2g})"
    if n >= 2 and not exact and smallest_p(n) > min(h_for[1], h_against[1]):
        why += f"; {n} seeds cannot reach p below {smallest_p(n):.2g}"
    means = [t["mean"] for t in reads if math.isfinite(t["mean"])]
    return {
        **v,
        "verdict": verdict,
        "why": why,
        "evidence": f"{v['evidence']} Decided: {why}.",
        "decision": {
            "p_for": p_for, "p_against": p_against, "holm_for": h_for[1], "holm_against": h_against[1],
            "adjusted_for": h_for[0], "adjusted_against": h_against[0], "family_size": m,
            "readings": len(reads), "outcomes": outcomes,
            "range": [min(means), max(means)] if means else [math.nan, math.nan],
        },
    }  # fmt: skip


def _lrs_text(lrs: dict) -> str:
    return ", ".join(f"batch {b} at lr {lr:g}" for b, lr in lrs.items()) or "the best lrs"


def _value_text(test: dict) -> str:
    """One reading's estimate on its own scale."""
    if test.get("scale") == "log ratio":
        return f"×{math.exp(test['mean']):.3g}"
    return f"{test['mean']:+.3g}"
