"""The exact sign-flip test, Holm's correction and the family decision, on hand-computed cases
and synthetic studies whose answer is known both ways."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from batchlab.analysis.family import decide_family, primary, read_at_near_optimal, readings
from batchlab.analysis.replication import compare, halves
from batchlab.analysis.signflip import holm, p_greater, p_less, smallest_p
from batchlab.analysis.stats import paired_difference


def test_sign_flip_matches_hand_counts():
    # all five positive: only the all-plus assignment reaches the observed mean
    assert p_greater([1, 2, 3, 4, 5]) == pytest.approx(1 / 32)
    # [3, -1, 1]: sign assignments with mean >= 1: (+,+,+) 3, (+,-,+) 5/3... counted by hand
    sums = [a * 3 + b * 1 + c * 1 for a in (1, -1) for b in (1, -1) for c in (1, -1)]
    assert p_greater([3, -1, 1]) == pytest.approx(sum(s >= 3 for s in sums) / 8)
    assert p_less([1, 2, 3, 4, 5]) == pytest.approx(1.0)
    # against a margin: differences 1..5 are not below 0.5 (shift), and are below 10
    assert p_less([1, 2, 3, 4, 5], 10.0) == pytest.approx(1 / 32)
    assert smallest_p(10) == pytest.approx(1 / 1024)
    assert math.isnan(p_greater([]))


def test_holm_matches_hand_computation():
    # m = 4: sorted 0.01 (level 0.0125, rejected), 0.02 (0.0167, fails) -> stop
    out = holm({"a": 0.01, "b": 0.04, "c": 0.02, "d": 0.5})
    assert out["a"][2] and not out["c"][2] and not out["b"][2] and not out["d"][2]
    assert out["a"][1] == pytest.approx(0.05 / 4) and out["c"][1] == pytest.approx(0.05 / 3)
    assert out["a"][0] == pytest.approx(0.04) and out["c"][0] == pytest.approx(0.06) and out["b"][0] == pytest.approx(0.08)
    # a p that would pass its own level is not rejected once an earlier one failed
    out = holm({"a": 0.03, "b": 0.03})
    assert not out["a"][2] and not out["b"][2]
    out = holm({"a": 0.01, "b": 0.03})
    assert out["a"][2] and out["b"][2]


def _verdict(key, diffs, expected=1, margin=0.1):
    d = paired_difference(dict(enumerate(diffs)), {i: 0.0 for i in range(len(diffs))})
    return {"key": key, "claim": key, "verdict": "inconclusive", "evidence": "", "primary": primary(d, expected, margin)}


def test_family_decides_both_ways_and_corrects():
    up = _verdict("up", [0.5 + 0.01 * i for i in range(10)])  # clearly above 0
    flat = _verdict("flat", [0.01 * (-1) ** i for i in range(10)])  # clearly short of the margin 0.1
    noise = _verdict("noise", [0.3 * (-1) ** i + 0.05 for i in range(10)])  # neither
    out = {v["key"]: v for v in decide_family([up, flat, noise])}
    assert out["up"]["verdict"] == "supported"
    assert out["flat"]["verdict"] == "not supported"
    assert out["noise"]["verdict"] == "inconclusive"
    assert out["up"]["decision"]["family_size"] == 6
    # five seeds cannot pass Holm over six hypotheses (1/32 > 0.05/6): inconclusive, said why
    five = decide_family([_verdict("up", [0.5] * 5), _verdict("x", [0.5] * 5), _verdict("y", [0.5] * 5)])
    assert all(v["verdict"] == "inconclusive" for v in five)
    assert "cannot reach p below" in five[0]["why"]


def _best(lrs: dict[int, float]) -> pd.DataFrame:
    return pd.DataFrame({"batch_size": list(lrs), "best_lr": list(lrs.values())})


def test_a_flat_top_with_a_cliff_gives_depends_on_the_lr_and_never_flips():
    """Two near-optimal lrs at batch 1024: at one the small batch oscillates far more, at the
    other (next to the cliff) the large batch does. The readings disagree: 'depends on the lr'."""
    rng = np.random.default_rng(0)
    effect = {0.32: 0.8, 0.64: -0.8}  # the log ratio at each of batch 1024's near-optimal lrs

    def verdict(best):
        lr = float(best.loc[best["batch_size"] == 1024, "best_lr"].iloc[0])
        d = effect[lr] + 0.05 * rng.standard_normal(10)
        return _verdict("oscillation", list(d), margin=math.log(1.1))

    best = _best({1: 0.005, 1024: 0.64})
    near = {1: [0.005], 1024: [0.32, 0.64]}
    read = read_at_near_optimal(verdict, best, near, [1, 1024])
    assert len(read["readings"]) == 2
    (out,) = decide_family([read])
    assert out["verdict"] == "depends on the lr"
    assert sorted(out["decision"]["outcomes"]) == ["not supported", "supported"]
    lo, hi = out["decision"]["range"]
    assert lo < 0 < hi
    # one near-optimal lr alone: a plain decision
    (alone,) = decide_family([read_at_near_optimal(verdict, best, {1: [0.005], 1024: [0.64]}, [1, 1024])])
    assert alone["verdict"] == "not supported"


def test_one_reading_that_holms_descent_never_reaches_is_inconclusive_not_lr_dependent():
    """26 claims, each read once, every seed on its side: p = 1/1024 each, below the level of
    the later ranks but not the first's (0.05 / 52): the descent stops at once, and a claim with
    one reading has no lr to depend on."""
    claims = [_verdict(f"c{i}", [0.01 + 0.001 * j for j in range(10)], margin=0.002) for i in range(26)]
    out = decide_family(claims)
    assert {v["verdict"] for v in out} == {"inconclusive"}


def test_readings_start_at_the_best_and_cap_each_batch_size():
    best = _best({1: 0.01, 4: 0.04})
    near = {1: [0.0025, 0.005, 0.01, 0.02, 0.04, 0.08], 4: [0.04]}
    got = readings(best, near, [1, 4])
    assert got[0] == {1: 0.01, 4: 0.04}
    assert [r[1] for r in got] == [0.01, 0.005, 0.02, 0.0025]  # the best, then nearest on a log scale


def test_split_half_flags_a_disagreement_only_between_opposite_decisions():
    assert halves([3, 1, 2, 0]) == ([0, 1], [2, 3])
    whole = [{"key": "a", "claim": "A", "verdict": "supported"}, {"key": "b", "claim": "B", "verdict": "supported"}]
    first = [{"key": "a", "verdict": "supported"}, {"key": "b", "verdict": "inconclusive"}]
    second = [{"key": "a", "verdict": "not supported"}, {"key": "b", "verdict": "supported"}]
    rep = compare(whole, first, second, ([0, 1], [2, 3]))
    assert [r["disagree"] for r in rep["verdicts"]] == [True, False]
    assert not rep["agree"]
