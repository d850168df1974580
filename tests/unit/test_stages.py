"""Comparisons at matched stage: where each seed's tracked training loss reaches each level, its
oscillation and validation accuracy there, and two settings compared at the lowest level both
reach, on synthetic runs where the answer is known both ways."""

import math

import numpy as np
import pandas as pd
import pytest

from batchlab.analysis.stages import LEVELS, WINDOW, at_levels, column, matched_level
from batchlab.analysis.verdict_tools import matched_stage


def track(final: float, wiggle: float, n: int = 60, start: float = 2.3):
    """A tracked loss falling geometrically from `start` to `final`, zigzagging by ±wiggle
    (relative), one point every 100 steps."""
    base = start * (final / start) ** (np.arange(n) / (n - 1))
    return [[100 * (i + 1), float(v * (1 + wiggle * (-1) ** i))] for i, v in enumerate(base)]


def probes(acc_at_end: float, n: int = 60):
    steps = 100 * np.arange(1, n + 1)
    return pd.DataFrame({"step": steps, "val_acc": np.linspace(0.5, acc_at_end, n)})


def test_each_level_is_read_around_its_first_crossing():
    t = track(0.04, 0.0)
    out = at_levels(t, probes(0.98))
    reached = [lvl for lvl in LEVELS if math.isfinite(out[column("osc", lvl)])]
    assert reached == [lvl for lvl in LEVELS if lvl >= 0.04]  # never below its final loss
    wiggly = at_levels(track(0.04, 0.05), probes(0.98))
    # a smooth fall oscillates far less than the same fall zigzagging by 5%, at every level
    assert all(out[column("osc", lvl)] < 0.1 * wiggly[column("osc", lvl)] for lvl in reached)
    # the validation accuracy where the loss first reaches 0.1, interpolated between probes
    i = next(k for k, (_, v) in enumerate(t) if v <= 0.1)
    assert out[column("val_acc", 0.1)] == pytest.approx(np.linspace(0.5, 0.98, 60)[i])
    assert math.isnan(at_levels(t[: WINDOW - 1], probes(0.98))[column("osc", 0.5)])  # too few points
    assert at_levels([], probes(0.9))[column("val_acc", 0.5)] != at_levels([], probes(0.9))[column("val_acc", 0.5)]


def cells(final_a, wiggle_a, acc_a, final_b, wiggle_b, acc_b, seeds=range(10)):
    rows = []
    for b, final, wiggle, acc in ((1, final_a, wiggle_a, acc_a), (4096, final_b, wiggle_b, acc_b)):
        for s in seeds:
            w = wiggle * (1 + 0.05 * s)
            rows.append({"batch_size": b, "lr": 0.1, "recipe": "", "seed": s, **at_levels(track(final, w), probes(acc + 0.001 * s))})
    return pd.DataFrame(rows)


def test_the_lowest_level_both_reach_is_where_they_are_compared():
    g = cells(0.01, 0.05, 0.98, 0.2, 0.01, 0.95)
    a, b = g[g["batch_size"] == 1], g[g["batch_size"] == 4096]
    assert matched_level(a, b, "osc") == 0.2  # the large batch gets no lower
    assert matched_level(a, a, "osc") == 0.01


@pytest.mark.parametrize("wiggles, more", [((0.05, 0.01), True), ((0.01, 0.05), False)])
def test_oscillation_at_matched_stage_comes_out_either_way(wiggles, more):
    g = cells(0.02, wiggles[0], 0.98, 0.1, wiggles[1], 0.95)
    stage = matched_stage(g, (1, 0.1, None), (4096, 0.1, None), "osc", +1, log=True)
    assert stage["level"] == 0.1 and stage["n"] == 10
    assert (stage["mean"] > 0) is more
    assert (stage["p"] < 0.01) is more and (stage["p"] > 0.99) is not more


def test_validation_accuracy_at_matched_stage_and_no_shared_level():
    g = cells(0.02, 0.01, 0.99, 0.05, 0.01, 0.85)  # batch 1 is at 0.90 when it reaches 0.05
    stage = matched_stage(g, (4096, 0.1, None), (1, 0.1, None), "val_acc", -1)
    assert stage["level"] == 0.05 and stage["mean"] < 0 and stage["p"] < 0.01
    never = g.copy()
    never.loc[never["batch_size"] == 4096, [column("osc", lvl) for lvl in LEVELS]] = np.nan
    assert matched_stage(never, (1, 0.1, None), (4096, 0.1, None), "osc", +1) is None
