"""The interpolated optimum of a learning-rate window and the exponent of best lr against
batch size, on synthetic studies whose answers are known."""

import math

import numpy as np
import pandas as pd
import pytest

from batchlab.analysis.fits import lr_exponent, lr_optima, vertex, window_optimum

SEEDS = range(6)


def accuracy(lr, opt, seed, width=1.0, noise=0.0, rng=None):
    """A concave curve in log lr, peaking at opt, plus a seed effect shared by every lr."""
    jitter = noise * rng.standard_normal() if rng is not None else 0.0
    return 0.97 - 0.02 * (math.log(lr / opt) / width) ** 2 + 0.003 * seed + jitter


def study(opt_of_b, windows, noise=0.0, seeds=SEEDS):
    rng = np.random.default_rng(0)
    rows = []
    for b, lrs in windows.items():
        for lr in lrs:
            for s in seeds:
                rows.append({"batch_size": b, "lr": lr, "seed": s, "final_val_acc": accuracy(lr, opt_of_b(b), s, noise=noise, rng=rng)})
    return pd.DataFrame(rows)


def window(center, n=5):
    return [center * 2.0 ** (k - n // 2) for k in range(n)]


def test_the_vertex_of_a_log_quadratic_is_its_peak():
    lrs = [0.01, 0.02, 0.04, 0.08]
    means = np.array([accuracy(lr, 0.03, 0) for lr in lrs])
    opt, edge = vertex(lrs, means)
    assert edge is None and opt == pytest.approx(0.03, rel=1e-6)  # between grid points, exactly
    assert vertex(lrs, means[::-1] * 0 + np.array([0.9, 0.8, 0.7, 0.6])) == (0.01, "lowest")
    assert vertex(lrs, np.array([0.6, 0.7, 0.8, 0.9])) == (0.08, "highest")


def test_the_window_optimum_has_a_bootstrap_interval_and_names_tied_neighbours():
    lrs = window(0.02)
    rng = np.random.default_rng(3)
    acc = np.array([[accuracy(lr, 0.025, s, noise=0.002, rng=rng) for lr in lrs] for s in SEEDS])
    out = window_optimum(lrs, list(SEEDS), acc)
    assert out["window_edge"] is None and out["lr_opt_lo"] < 0.025 < out["lr_opt_hi"]
    assert out["lr_opt_hi"] / out["lr_opt_lo"] < 2  # far tighter than the window's x2 step
    # a flat top: the neighbours cannot be told from the best
    flat = np.array([[0.95 + 0.003 * s + 0.001 * rng.standard_normal() for _ in lrs] for s in SEEDS])
    assert len(window_optimum(lrs, list(SEEDS), flat)["tied_with"]) >= 1
    # a sharp peak: no tie
    sharp = np.array([[accuracy(lr, 0.02, s, width=0.3) for lr in lrs] for s in SEEDS])
    assert window_optimum(lrs, list(SEEDS), sharp)["tied_with"] == []


def test_an_optimum_at_a_window_edge_is_flagged_and_left_out_of_the_fit():
    windows = {1: window(0.001), 4: window(0.004), 16: window(0.016), 64: window(0.002)}  # 64 lies too low
    cells = study(lambda b: 0.001 * b, windows)
    optima = lr_optima(cells).set_index("batch_size")
    assert optima.loc[64, "window_edge"] == "highest"
    assert optima.loc[[1, 4, 16], "window_edge"].isna().all()
    fit = lr_exponent(cells, optima.reset_index(), b_crit=None)
    assert fit["batch_sizes"] == [1, 4, 16]


@pytest.mark.parametrize("exponent", [1.0, 0.5])
def test_a_known_exponent_is_recovered_within_its_interval(exponent, monkeypatch):
    """Over 20 synthetic studies (6 seeds, noise on every point) the 95% interval holds the true
    exponent in most, and never admits the other scaling rule."""
    import batchlab.analysis.fits

    monkeypatch.setattr(batchlab.analysis.fits, "N_BOOT", 300)
    other = 0.5 if exponent == 1.0 else 1.0
    covered = 0
    for r in range(20):
        rng = np.random.default_rng(100 + r)
        rows = []
        for b in (1, 4, 16, 64, 256):
            opt = 0.001 * b**exponent
            for lr in window(opt * 1.3):
                for s in SEEDS:
                    rows.append({"batch_size": b, "lr": lr, "seed": s, "final_val_acc": accuracy(lr, opt, s, noise=0.002, rng=rng)})
        cells = pd.DataFrame(rows)
        fit = lr_exponent(cells, lr_optima(cells), b_crit=None)
        covered += fit["lo"] <= exponent <= fit["hi"]
        assert not fit["lo"] <= other <= fit["hi"]
    assert covered >= 16  # a 95% interval; 16 of 20 fails by chance with probability < 2%


def test_the_fit_stops_below_the_critical_batch_size():
    windows = {b: window(min(0.001 * b, 0.064)) for b in (1, 4, 16, 64, 256, 1024)}
    cells = study(lambda b: min(0.001 * b, 0.064), windows)  # the optimum stops growing at 64
    optima = lr_optima(cells)
    everything = lr_exponent(cells, optima, b_crit=None)
    below = lr_exponent(cells, optima, b_crit=100.0)
    assert below["batch_sizes"] == [1, 4, 16, 64] and below["exponent"] == pytest.approx(1.0, abs=0.02)
    assert everything["exponent"] < 0.9


def test_a_failed_neighbour_is_not_interpolated_through():
    lrs = window(0.02)
    acc = np.array([[accuracy(lr, 0.03, s) for lr in lrs] for s in SEEDS])
    acc[:, 3] = 0.1  # every seed collapsed at 0.04, next to the best lr 0.02
    smooth = window_optimum(lrs, list(SEEDS), acc)  # as if it had merely done badly
    honest = window_optimum(lrs, list(SEEDS), acc, failed=frozenset({3}))
    assert smooth["interpolated"] and smooth["lr_opt"] != 0.02
    assert not honest["interpolated"] and honest["lr_opt"] == 0.02 and honest["window_edge"] is None
