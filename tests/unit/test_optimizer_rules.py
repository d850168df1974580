"""Does the optimizer change the batch-size rule? On synthetic studies whose exponents are known:
each optimizer's exponent is recovered within its interval, and the paired verdict on two
optimizers comes out supported, not supported and inconclusive as it should."""

import math

import numpy as np
import pandas as pd
import pytest

from batchlab.analysis.claims_optimizers import compare_optimizers, optimizer_verdicts
from batchlab.analysis.family import decide_family
from batchlab.cells import Cell, Recipe

BATCH_SIZES = [16, 64, 256]
SEEDS = list(range(8))  # an exact test on 6 could not reach the Holm levels two-sided
CONFIG = {"grid": {"batch_sizes": BATCH_SIZES, "seeds": SEEDS, "optimizers": ["sgd", "adam"]}}


def config_with(windows: dict) -> dict:
    """grid and optimizers groups whose windows (x2 apart, centred on each known optimum) bracket
    every optimum."""
    return {
        "grid": {**CONFIG["grid"], "learning_rates": windows["sgd"], "optimizers": list(windows)},
        "optimizers": {name: {"learning_rates": w} for name, w in windows.items()},
    }


def window(peak: float) -> list[float]:
    return [float(f"{peak * 2.0**k:.6g}") for k in (-2, -1, 0, 1, 2)]


def study(exponents: dict, noise=0.0005, seed_shift=0.3, own_shift=0.0):
    """Cells whose validation accuracy peaks, in log lr, at lr*(b) = c (b/16)^k for each optimizer;
    each seed's optimum is shifted by its own factor (the same for every optimizer and batch size,
    as seed s shares its initial weights), by `own_shift` apart per optimizer, seed and batch
    size, plus independent noise."""
    rng = np.random.default_rng(1)
    shift = {s: seed_shift * rng.standard_normal() for s in SEEDS}
    windows, rows = {}, []
    for name, (c, k) in exponents.items():
        windows[name] = {}
        for b in BATCH_SIZES:
            peak = c * (b / 16) ** k
            windows[name][b] = window(peak)
            for lr in windows[name][b]:
                for s in SEEDS:
                    x = math.log(lr / peak) - 0.1 * shift[s] - own_shift * rng.standard_normal()
                    acc = 0.97 - 0.01 * x * x + noise * rng.standard_normal()
                    cell = Cell(b, lr, Recipe(optimizer=name)).name()
                    rows.append({"cell": cell, "batch_size": b, "lr": lr, "seed": s, "recipe": Recipe(optimizer=name).suffix(),
                                 "status": "ok", "failed_to_learn": False, "final_val_acc": acc, "final_test_acc": acc,
                                 "steps_to_acc": math.nan, "best_val_acc": acc})  # fmt: skip
    return pd.DataFrame(rows), config_with(windows)


@pytest.mark.parametrize("k_adam", [0.5, 1.0])
def test_each_optimizers_exponent_is_recovered_within_its_interval(k_adam):
    cells, config = study({"sgd": (0.04, 1.0), "adam": (0.0005, k_adam)})
    comparison = compare_optimizers(cells, config)
    rules = {r["optimizer"]: r for r in comparison["rules"]}
    for name, k in (("sgd", 1.0), ("adam", k_adam)):
        e = rules[name]["exponent"]
        assert e["lo"] <= k <= e["hi"] and e["hi"] - e["lo"] < 0.3, (name, e)
        assert e["batch_sizes"] == BATCH_SIZES
    assert rules["sgd"]["consistent_with"] == ["linear"] and rules["sgd"]["agrees_with_literature"] is True
    assert rules["adam"]["agrees_with_literature"] is (k_adam == 0.5)  # the literature: √b
    assert rules["adam"]["consistent_with"] == (["square root"] if k_adam == 0.5 else ["linear"])
    (gap,) = comparison["gaps"]
    assert gap["gap"]["lo"] <= k_adam - 1.0 <= gap["gap"]["hi"]


def decided(cells, config) -> list[dict]:
    """The optimizer verdicts, decided as the study decides them (in its family)."""
    return decide_family(optimizer_verdicts(compare_optimizers(cells, config)))


def test_the_verdict_on_adam_comes_out_both_ways_and_inconclusive():
    sqrt = decided(*study({"sgd": (0.04, 1.0), "adam": (0.0005, 0.5)}))
    same = decided(*study({"sgd": (0.04, 1.0), "adam": (0.0005, 1.0)}))
    noisy = decided(*study({"sgd": (0.04, 1.0), "adam": (0.0005, 0.8)}, own_shift=0.6))
    assert [v["key"] for v in sqrt] == ["optimizer_rule:adam", "optimizer_b_crit:adam"]
    assert "grows more slowly" in sqrt[0]["claim"] and "Malladi" in sqrt[0]["evidence"]
    assert sqrt[0]["verdict"] == "supported"
    assert same[0]["verdict"] == "not supported"
    assert noisy[0]["verdict"] == "inconclusive"


def test_momentum_is_expected_to_follow_sgds_rule():
    same = decided(*study({"sgd": (0.04, 1.0), "momentum": (0.004, 1.0)}))
    apart = decided(*study({"sgd": (0.04, 1.0), "momentum": (0.004, 0.4)}))
    assert "same batch-size rule" in same[0]["claim"]
    assert same[0]["verdict"] == "supported" and apart[0]["verdict"] == "not supported"


def test_one_optimizer_is_no_comparison():
    cells, config = study({"sgd": (0.04, 1.0)})
    assert compare_optimizers(cells, config) is None and optimizer_verdicts(None) == []


def with_steps(cells: pd.DataFrame, b_crit: dict, noise=0.02, s_min=100.0) -> pd.DataFrame:
    """Steps to the target at every cell: S = S_min (1 + B_crit / B) for each optimizer, times a
    seed's own factor (the same for every optimizer) and independent noise."""
    rng = np.random.default_rng(2)
    seed_factor = {s: math.exp(0.05 * rng.standard_normal()) for s in SEEDS}
    out = cells.copy()
    name = out["recipe"].map(lambda r: r.lstrip("_") or "sgd")
    steps = [
        s_min * (1 + b_crit[n] / b) * seed_factor[s] * math.exp(noise * rng.standard_normal())
        for n, b, s in zip(name, out["batch_size"], out["seed"], strict=True)
    ]
    return out.assign(steps_to_acc=steps, samples_to_acc=np.asarray(steps) * out["batch_size"], seconds_to_acc=steps)


def test_the_critical_batch_size_verdict_comes_out_both_ways():
    base = {"sgd": (0.04, 1.0), "momentum": (0.004, 1.0)}
    cells, config = study(base)
    larger = optimizer_verdicts(compare_optimizers(with_steps(cells, {"sgd": 50, "momentum": 400}), config))
    alike = optimizer_verdicts(compare_optimizers(with_steps(cells, {"sgd": 100, "momentum": 100}), config))
    unknown = optimizer_verdicts(compare_optimizers(cells, config))  # no cell reached the target
    pick = {v["key"]: v for v in larger}
    assert pick["optimizer_b_crit:momentum"]["verdict"] == "supported", pick["optimizer_b_crit:momentum"]["evidence"]
    assert "×" in pick["optimizer_b_crit:momentum"]["headline"]
    assert {v["key"]: v for v in alike}["optimizer_b_crit:momentum"]["verdict"] == "not supported"
    assert {v["key"]: v for v in unknown}["optimizer_b_crit:momentum"]["verdict"] == "inconclusive"
