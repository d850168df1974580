"""Does the study replicate? Its verdicts and fitted optima beside those of reruns of it (the same
design on other seeds, or the same seeds under other float rounding), each rerun a committed
study folder (its analysis.json and best_lr.csv). A verdict replicates where every run reaches it,
or where a run that differs says "depends on the lr" or "inconclusive"; "supported" in one run and
"not supported" in another is a failure. An optimum replicates where every run's interval overlaps
every other's."""

from __future__ import annotations

import math

import pandas as pd

SOFT = {"depends on the lr", "inconclusive"}


def compatible(verdicts: list[str]) -> bool:
    """Whether a verdict's outcomes across runs agree (at most one outcome that is not soft)."""
    return len(set(verdicts) - SOFT) <= 1


def overlap(intervals: list[tuple[float, float]]) -> bool | None:
    """Whether the intervals share a point; None where one of them is missing."""
    if not intervals or not all(math.isfinite(lo) and math.isfinite(hi) for lo, hi in intervals):
        return None
    return max(lo for lo, _ in intervals) <= min(hi for _, hi in intervals)


def compare_runs(runs: dict[str, tuple[list[dict], pd.DataFrame]]) -> dict:
    """runs: {name: (verdicts, best lr table)}, this study first. Per verdict each run's outcome
    and whether they are compatible; per batch size each run's fitted optimum with its interval
    and whether the intervals overlap."""
    names = list(runs)
    if len(names) < 2:
        return {}
    first_verdicts, first_best = runs[names[0]]
    verdicts = []
    for v in first_verdicts:
        found = {n: next((w["verdict"] for w in runs[n][0] if w["key"] == v["key"]), "absent") for n in names}
        verdicts.append({"key": v["key"], "claim": v["claim"], "runs": found, "compatible": compatible(list(found.values()))})
    optima = []
    for b in first_best["batch_size"]:
        at = {n: optimum_of(runs[n][1], int(b)) for n in names}
        both = overlap([(o["lo"], o["hi"]) for o in at.values()]) if all(at.values()) else None
        optima.append({"batch_size": int(b), "runs": at, "overlap": both})
    agree = all(v["compatible"] for v in verdicts) and not any(o["overlap"] is False for o in optima)
    return {"runs": names, "verdicts": verdicts, "optima": optima, "agree": agree}


def optimum_of(best: pd.DataFrame, b: int) -> dict | None:
    """A run's fitted optimum at batch size b with its interval (NaN where it has none)."""
    row = best[best["batch_size"] == b]
    if row.empty or "lr_opt" not in row:
        return None
    r = row.iloc[0]
    return {k: float(r[c]) if pd.notna(r[c]) else math.nan for k, c in (("lr_opt", "lr_opt"), ("lo", "lr_opt_lo"), ("hi", "lr_opt_hi"))}
