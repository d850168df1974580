"""The paired comparison and the verdict rule, on numbers where the answer is known every way."""

import math

import numpy as np
import pytest

from batchlab.analysis.stats import MIN_SEEDS, bootstrap_interval, decide, paired_difference


def test_the_paired_difference_uses_shared_finite_seeds_only():
    a = {0: 0.95, 1: 0.96, 2: 0.94, 3: float("nan"), 4: 0.97}
    b = {0: 0.93, 1: 0.95, 2: 0.92, 3: 0.90, 5: 0.10}
    d = paired_difference(a, b)
    assert d.seeds == (0, 1, 2) and d.n == 3
    diffs = np.array([0.02, 0.01, 0.02])
    assert d.mean == pytest.approx(diffs.mean())
    assert d.hi - d.mean == pytest.approx(4.303 * diffs.std(ddof=1) / math.sqrt(3))


def test_pairing_finds_a_difference_that_unpaired_intervals_would_miss():
    # seed effects much larger than the setting effect: every seed gains 0.004
    base = {s: 0.90 + 0.02 * s for s in range(5)}
    better = {s: v + 0.004 + 0.0005 * (-1) ** s for s, v in base.items()}
    d = paired_difference(better, base)
    assert d.sign() == 1
    assert decide(d, expected=1, margin=0.002)[0] == "supported"
    assert decide(d, expected=-1, margin=0.002)[0] == "not supported"


def test_a_verdict_comes_out_every_way():
    rng = np.random.default_rng(0)
    seeds = range(6)
    base = {s: 0.9 + 0.01 * rng.standard_normal() for s in seeds}

    def shifted(delta, noise):
        return {s: v + delta + noise * rng.standard_normal() for s, v in base.items()}

    assert decide(paired_difference(shifted(0.01, 0.001), base), 1, 0.003)[0] == "supported"
    assert decide(paired_difference(shifted(-0.01, 0.001), base), 1, 0.003)[0] == "not supported"
    # no effect, measured precisely: not supported (it lies inside the margin)
    verdict, why = decide(paired_difference(shifted(0.0, 0.0005), base), 1, 0.003)
    assert verdict == "not supported" and "within ±0.003" in why
    # no clear effect, measured loosely: inconclusive
    verdict, why = decide(paired_difference(shifted(0.002, 0.02), base), 1, 0.003)
    assert verdict == "inconclusive" and "holds 0" in why


def test_fewer_than_three_seeds_is_always_inconclusive():
    assert MIN_SEEDS == 3
    two = paired_difference({0: 0.99, 1: 0.98}, {0: 0.10, 1: 0.11})  # a huge, consistent gap
    assert two.sign() is None
    verdict, why = decide(two, 1, 0.01)
    assert verdict == "inconclusive" and "2 shared seed(s)" in why


def test_identical_differences_are_exact():
    # every seed gains exactly the same: a zero-width interval that excludes 0 (not a tie)
    d = paired_difference({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.5, 1: 1.5, 2: 2.5})
    assert (d.lo, d.mean, d.hi) == (0.5, 0.5, 0.5) and d.sign() == 1
    tie = paired_difference({0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.0, 1: 2.0, 2: 3.0})
    assert tie.sign() == 0 and decide(tie, 1, 0.01)[0] == "not supported"


def test_the_bootstrap_interval_covers_the_mean_and_shrinks_with_more_seeds():
    rng = np.random.default_rng(1)
    small = rng.normal(1.0, 0.1, 5)
    large = rng.normal(1.0, 0.1, 50)
    lo5, hi5 = bootstrap_interval(small, np.mean)
    lo50, hi50 = bootstrap_interval(large, np.mean)
    assert lo5 < small.mean() < hi5 and lo50 < large.mean() < hi50
    assert hi50 - lo50 < hi5 - lo5
    assert bootstrap_interval(small, np.mean) == (lo5, hi5)  # seeded: the same every run
    assert all(math.isnan(v) for v in bootstrap_interval(small[:1], np.mean))
