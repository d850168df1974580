"""The fitted lr response, its optimum's interval, the near-optimal set and the lr law, on
synthetic studies whose optimum and noise scale are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from batchlab.analysis.lr_law import LAWS, SURGE, fit_laws, fit_saturating, lr_law, surge_shape
from batchlab.analysis.lr_response import fit_curve, near_optimal, optimum, response_table

SEEDS = 10
X2 = [2.0**k for k in range(-4, 3)]  # a window of x2 steps around 1: 1/16 ... 4


def synthetic_cells(optima: dict[int, float], rng, fail_above: float = 6.0, seed_sd: float = 0.0012, noise_sd: float = 0.0008) -> pd.DataFrame:
    """Grid cells of a study whose validation error is exp(log 0.028 + c (log lr - log opt)^2),
    steeper above the optimum, with a per-seed offset and per-cell noise; lrs at or beyond
    fail_above x the optimum diverge."""
    rows = []
    for b, opt in optima.items():
        offsets = seed_sd * rng.standard_normal(SEEDS)
        for k in X2:
            lr = round(opt * k * 1.3, 8)  # the optimum falls between two lrs of the window
            dx = math.log(lr / opt)
            err = math.exp(math.log(0.028) + (0.08 if dx < 0 else 0.25) * dx * dx)
            for s in range(SEEDS):
                failed = lr >= fail_above * opt
                acc = 0.1 if failed else 1.0 - err + offsets[s] + noise_sd * rng.standard_normal()
                rows.append({"batch_size": b, "lr": lr, "seed": s, "final_val_acc": acc, "status": "diverged" if failed else "ok"})
    return pd.DataFrame(rows)


def test_the_two_sided_parabola_finds_a_known_vertex():
    x = np.log(np.asarray(X2))
    y = np.where(x < 0.3, 0.1, 0.6) * (x - 0.3) ** 2 - 3.5
    assert fit_curve(x, y)["vertex"] == pytest.approx(0.3, abs=0.05)


def test_the_optimum_interval_covers_the_truth_in_nine_of_ten_studies():
    rng = np.random.default_rng(1)
    covered, widths = 0, []
    for _ in range(50):
        cells = synthetic_cells({64: 0.3}, rng)
        row = response_table(cells, n_boot=150, seed=int(rng.integers(1 << 30)))[0].iloc[0]
        assert row["window_edge"] is None
        covered += row["lr_opt_lo"] <= 0.3 <= row["lr_opt_hi"]
        widths.append(row["lr_opt_hi"] / row["lr_opt_lo"])
    assert covered >= 45, covered
    assert np.median(widths) < 4  # and it says something: well inside the window's 64-fold span


def test_failures_are_a_boundary_and_an_edge_optimum_is_flagged():
    rng = np.random.default_rng(2)
    cells = synthetic_cells({16: 0.1}, rng, fail_above=2.0)
    table = response_table(cells, n_boot=50)[0].iloc[0]
    lrs = sorted(cells["lr"].unique())
    assert table["stability_limit"] == pytest.approx(min(lr for lr in lrs if lr >= 0.2))
    assert table["lr_opt"] < table["stability_limit"]
    # a window that stops below the optimum: the optimum is at its highest end, with no interval
    low = cells[cells["lr"] < 0.1]
    row = response_table(low, n_boot=50)[0].iloc[0]
    assert row["window_edge"] == "highest" and math.isnan(row["lr_opt_lo"]) and "end of the window" in row["no_interval"]


def test_the_near_optimal_set_keeps_ties_and_drops_a_clear_loss():
    lrs = [0.01, 0.02, 0.04]
    base = np.random.default_rng(3).normal(0, 0.001, (10, 1))
    acc = np.hstack([0.96 + base, 0.9700 + base, 0.9702 + base])
    failed = np.zeros_like(acc, dtype=bool)
    best, near = near_optimal(lrs, acc, failed)
    assert best == 0.04 and near == [0.02, 0.04]
    failed[:, 2] = [True] + [False] * 9
    best, near = near_optimal(lrs, acc, failed)
    assert best == 0.02 and near == [0.02]


def test_the_saturating_law_recovers_a_known_noise_scale_in_nine_of_ten_studies():
    rng = np.random.default_rng(4)
    sizes = [1, 4, 16, 64, 256, 1024, 4096]
    lr_max, b_noise = 0.6, 200.0
    covered = 0
    for _ in range(50):
        cells = synthetic_cells({b: lr_max * b / (b + b_noise) for b in sizes}, rng)
        table, reps = response_table(cells, n_boot=150, seed=int(rng.integers(1 << 30)))
        law = lr_law(table, reps)
        covered += law["b_noise"]["lo"] <= b_noise <= law["b_noise"]["hi"]
    assert covered >= 45, covered


def test_the_laws_are_told_apart_both_ways():
    sizes = np.asarray([1, 4, 16, 64, 256, 1024, 4096], dtype=float)
    wiggle = np.exp(0.05 * np.sin(np.arange(7)))
    saturating = fit_laws(sizes, 0.6 * sizes / (sizes + 200) * wiggle)
    assert max(saturating, key=lambda k: saturating[k]["weight"]) == "saturating"
    assert fit_saturating(sizes, 0.6 * sizes / (sizes + 200))["b_noise"] == pytest.approx(200, rel=0.01)
    linear = fit_laws(sizes[:5], 0.003 * sizes[:5] * wiggle[:5])
    assert max(linear, key=lambda k: linear[k]["weight"]) == "linear"
    root = fit_laws(sizes, 0.01 * np.sqrt(sizes) * wiggle)
    assert max(root, key=lambda k: root[k]["weight"]) == "square root"


def test_the_surge_law_is_told_from_the_square_root_rule_both_ways():
    """Li et al. 2024's surge (Adam's optimum rises, then falls past B_noise) against the
    square-root rule, judged on the same optima."""
    sizes = np.asarray([16, 32, 64, 128, 256, 1024, 4096], dtype=float)
    wiggle = np.exp(0.03 * np.sin(np.arange(7)))
    laws = (*LAWS, SURGE)
    surge = 0.004 / (0.5 * (np.sqrt(300 / sizes) + np.sqrt(sizes / 300)))
    fits = fit_laws(sizes, surge * wiggle, laws)
    assert max(fits, key=lambda k: fits[k]["weight"]) == SURGE
    assert fit_saturating(sizes, surge, surge_shape)["b_noise"] == pytest.approx(300, rel=0.01)
    root = fit_laws(sizes, 0.0002 * np.sqrt(sizes) * wiggle, laws)
    assert max(root, key=lambda k: root[k]["weight"]) == "square root"
    assert SURGE not in fit_laws(sizes, surge)  # only where asked


def test_one_seed_gives_a_reason_instead_of_an_interval():
    cells = synthetic_cells({64: 0.3}, np.random.default_rng(5))
    row = response_table(cells[cells["seed"] == 0], n_boot=20)[0].iloc[0]
    assert math.isnan(row["lr_opt_lo"]) and row["no_interval"] == "one seed"
    lr, edge, _ = optimum(sorted(cells["lr"].unique()), np.full((1, 7), 0.1), np.ones((1, 7), dtype=bool))
    assert math.isnan(lr) and edge == "no stable lr"


def test_a_cliff_is_a_boundary_not_data():
    """One lr above the optimum trains to 67% without a failing seed (batch 1 at lr 0.04 in the
    default study): the fit stops before it, and the optimum stays where the basin puts it."""
    rng = np.random.default_rng(6)
    cells = synthetic_cells({1: 0.003}, rng)
    lrs = sorted(cells["lr"].unique())
    cliff = lrs[-2]
    cells.loc[np.isclose(cells["lr"], cliff), "final_val_acc"] = 0.67
    cells = cells[cells["lr"] <= cliff]
    row = response_table(cells, n_boot=100)[0].iloc[0]
    assert row["window_edge"] is None and row["lr_opt_lo"] <= 0.003 <= row["lr_opt_hi"]
    assert max(p["lr"] for p in row["curve"]) < cliff


def test_a_window_with_one_stable_lr_fits_nothing():
    cells = synthetic_cells({128: 0.1}, np.random.default_rng(7), fail_above=0.7)
    stable = sorted(cells.loc[cells["status"] == "ok", "lr"].unique())
    one = cells[cells["lr"] <= stable[0] * 1.01]
    row = response_table(one, n_boot=20)[0].iloc[0]
    assert row["window_edge"] == "single lr" and row["no_interval"] == "one lr of the window trains stably"
