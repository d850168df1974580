"""Split-half replication: every verdict computed again on each half of the seeds alone (the
first half of the seed list and the second), as two studies of their own, each hypothesis tested
at 5% without the family's correction (five seeds give p >= 1/32, which Holm's correction over a
dozen hypotheses never passes). A half may be inconclusive where the whole is not; "supported"
in one half and "not supported" in the other is a disagreement."""

from __future__ import annotations

OPPOSED = {"supported": "not supported", "not supported": "supported"}


def halves(seeds) -> tuple[list[int], list[int]]:
    """The seed list split into its first and second half (None when under 4 seeds)."""
    seeds = sorted(int(s) for s in seeds)
    k = len(seeds) // 2
    return seeds[:k], seeds[k:]


def of_seeds(frame, seeds: list[int]):
    """The rows of one half's seeds."""
    return frame[frame["seed"].isin(seeds)] if frame is not None and len(frame) and "seed" in frame else frame


def compare(whole: list[dict], first: list[dict], second: list[dict], seeds: tuple[list[int], list[int]]) -> dict:
    """Per verdict: the whole study's, each half's, and whether the halves disagree."""
    by_key = [{v["key"]: v["verdict"] for v in vs} for vs in (first, second)]
    rows = []
    for v in whole:
        a, b = (h.get(v["key"], "not computed") for h in by_key)
        rows.append({"key": v["key"], "claim": v["claim"], "whole": v["verdict"], "first_half": a, "second_half": b, "disagree": OPPOSED.get(a) == b})
    return {"halves": [list(s) for s in seeds], "verdicts": rows, "agree": not any(r["disagree"] for r in rows)}
