"""Does a study replicate? The comparison with its reruns, decided both ways on synthetic runs,
and drawn in the report's method section."""

import math
import re

import pandas as pd
import pytest
import vl_convert as vlc

from batchlab.analysis.reruns import compare_runs, compatible, overlap
from batchlab.report import method
from batchlab.report.inputs import Inputs


def run(verdicts: dict, optima: dict) -> tuple[list[dict], pd.DataFrame]:
    vs = [{"key": k, "claim": f"claim {k}", "verdict": v} for k, v in verdicts.items()]
    best = pd.DataFrame([{"batch_size": b, "lr_opt": o, "lr_opt_lo": lo, "lr_opt_hi": hi} for b, (o, lo, hi) in optima.items()])
    return vs, best


def test_soft_outcomes_are_compatible_and_opposite_ones_are_not():
    assert compatible(["supported", "supported", "inconclusive"])
    assert compatible(["not supported", "depends on the lr", "not supported"])
    assert not compatible(["supported", "not supported", "supported"])
    assert overlap([(1, 3), (2, 4), (2.5, 5)]) is True and overlap([(1, 2), (3, 4)]) is False
    assert overlap([(1, math.nan), (0, 2)]) is None


def test_runs_that_replicate_and_runs_that_do_not():
    this = run({"a": "supported", "b": "not supported"}, {1: (0.004, 0.002, 0.006), 64: (0.2, 0.1, 0.4)})
    same = run({"a": "inconclusive", "b": "not supported"}, {1: (0.005, 0.003, 0.007), 64: (0.15, 0.08, 0.3)})
    out = compare_runs({"this run": this, "seeds 10-19": same})
    assert out["agree"] and out["runs"] == ["this run", "seeds 10-19"]
    assert [v["compatible"] for v in out["verdicts"]] == [True, True] and [o["overlap"] for o in out["optima"]] == [True, True]
    flipped = run({"a": "not supported", "b": "not supported"}, {1: (0.005, 0.003, 0.007), 64: (0.9, 0.7, 1.2)})
    out = compare_runs({"this run": this, "jitter": flipped})
    assert not out["agree"]
    assert [v["compatible"] for v in out["verdicts"]] == [False, True] and [o["overlap"] for o in out["optima"]] == [True, False]
    assert compare_runs({"this run": this}) == {}
    missing = compare_runs({"this run": this, "old": run({}, {1: (0.004, math.nan, math.nan)})})
    assert missing["verdicts"][0]["runs"]["old"] == "absent" and [o["overlap"] for o in missing["optima"]] == [None, None]


@pytest.mark.parametrize("agree", [True, False])
def test_the_method_section_draws_the_runs_side_by_side(agree):
    this = run({"a": "supported"}, {1: (0.004, 0.002, 0.006), 64: (0.2, 0.1, 0.4)})
    other = run({"a": "supported" if agree else "not supported"}, {1: (0.005, 0.003, 0.007), 64: (0.3, 0.1, 0.5)})
    analysis = {"family": [{"key": "a", "hypothesis": h, "p": 0.01, "level": 0.05, "adjusted_p": 0.02} for h in ("for", "against")],
                "reruns": compare_runs({"this run": this, "seeds 10-19": other})}  # fmt: skip
    empty = pd.DataFrame()
    s = method.section(Inputs(cells=empty, settings=empty, best_lr=empty, epochs=empty, curves=empty, config={}, analysis=analysis))
    assert "seeds 10-19" in s.intro and ("every verdict is compatible" in s.intro) is agree
    assert ("INCOMPATIBLE: claim a" in s.intro) is not agree
    assert any("claim a" in t and "seeds 10-19" in t for t in s.tables)
    (chart_id, spec, _), = s.charts
    svg = vlc.vegalite_to_svg(spec)
    assert chart_id == "run-to-run" and len(re.findall(r"<path", svg)) >= 4
