"""The batch-size measures on synthetic problems with known answers."""

import math

import numpy as np
import pytest

from batchlab.analysis.cell_summary import first_reach
from batchlab.analysis.fits import (
    fit_critical_batch,
    gradient_cosine_sq,
    noise_components,
    noise_scale,
    scaling_regimes,
)
from batchlab.analysis.stats import compare_intervals, mean_ci, series_difference, t_quantile


def test_mean_ci_is_the_student_t_interval():
    ci = mean_ci([1.0, 2.0, 3.0])
    half = 4.303 * 1.0 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert ci["mean"] == 2.0 and ci["n"] == 3
    assert ci["lo"] == pytest.approx(2 - half) and ci["hi"] == pytest.approx(2 + half)
    one = mean_ci([0.5, float("nan"), None])
    assert one["mean"] == 0.5 and one["n"] == 1 and math.isnan(one["lo"])
    clipped = mean_ci([0.99, 0.5], bounds=(0.0, 1.0))
    assert clipped["hi"] == 1.0 and clipped["lo"] == 0.0
    assert t_quantile(1) == 12.706 and t_quantile(22) == 2.086 and t_quantile(500) == 1.96


def test_interval_comparison():
    a = {"mean": 1, "lo": 0.9, "hi": 1.1}
    b = {"mean": 0.5, "lo": 0.4, "hi": 0.6}
    assert compare_intervals(a, b) == 1 and compare_intervals(b, a) == -1
    assert compare_intervals(a, {"mean": 1, "lo": 1.05, "hi": 2}) == 0
    assert compare_intervals(a, {"mean": 1, "lo": float("nan"), "hi": float("nan")}) is None


def test_first_reach_interpolates_between_probes():
    steps, acc = [100, 200, 300, 400], [0.5, 0.8, 0.9, 0.95]
    assert first_reach(steps, acc, 0.85) == pytest.approx(250)
    assert first_reach(steps, acc, 0.9) == pytest.approx(300)
    assert first_reach(steps, acc, 0.4) == 100  # the first probe already reaches it
    assert first_reach(steps, acc, 0.99) is None
    assert first_reach(steps, [0.5, float("nan"), 0.9, 0.95], 0.85) == 300


def test_critical_batch_fit_recovers_a_known_trade_off():
    s_min, b_crit = 120.0, 300.0
    bs = np.array([8, 32, 128, 512, 2048])
    steps = s_min * (1 + b_crit / bs)
    fit = fit_critical_batch(bs, steps)
    assert fit["b_crit"] == pytest.approx(b_crit, rel=1e-3)
    assert fit["s_min"] == pytest.approx(s_min, rel=1e-3)
    assert fit["e_min"] == pytest.approx(s_min * b_crit, rel=2e-3)
    assert fit["rms_log"] < 1e-3 and fit["n"] == 5
    # E = S*B and S_min/S + E_min/E = 1 on the fitted curve
    assert np.allclose(fit["s_min"] / steps + fit["e_min"] / (steps * bs), 1, atol=1e-3)
    # with multiplicative noise the fit is still close
    rng = np.random.default_rng(0)
    noisy = fit_critical_batch(bs, steps * np.exp(rng.normal(0, 0.05, bs.size)))
    assert 200 < noisy["b_crit"] < 450
    assert math.isnan(fit_critical_batch([8, 32], [10, 5])["b_crit"])  # needs three batch sizes


def test_scaling_regimes():
    regimes = scaling_regimes([1, 2, 4, 8], [1000, 500, 400, 400])
    assert [r["regime"] for r in regimes] == ["perfect scaling", "diminishing returns", "no gain"]
    assert regimes[0]["efficiency"] == pytest.approx(1.0)
    assert regimes[1]["efficiency"] == pytest.approx(math.log(1.25) / math.log(2))
    assert regimes[2]["efficiency"] == 0


def test_noise_scale_estimator_on_known_gradient_covariance():
    """Per-sample gradients g_i = G + noise with known covariance: the two-batch estimator
    recovers |G|^2 and tr(Sigma), and B_simple = tr(Sigma)/|G|^2."""
    rng = np.random.default_rng(1)
    dim, b_small, micro = 20, 8, 16
    b_big = b_small * micro
    G = rng.normal(size=dim) * 0.3
    scales = np.linspace(0.5, 2.0, dim)  # diagonal covariance
    true_g2, true_trace = float(G @ G), float((scales**2).sum())
    small, big = [], []
    for _ in range(4000):
        samples = G + rng.normal(size=(b_big, dim)) * scales
        micro_means = samples.reshape(micro, b_small, dim).mean(axis=1)
        small.append(float((micro_means**2).sum(axis=1).mean()))
        mean = samples.mean(axis=0)
        big.append(float(mean @ mean))
    g2, trace = noise_components(small, big, b_small, b_big)
    assert g2.mean() == pytest.approx(true_g2, rel=0.05)
    assert trace.mean() == pytest.approx(true_trace, rel=0.05)
    _, _, b_simple = noise_scale(small, big, b_small, b_big, window=4000)
    assert b_simple[-1] == pytest.approx(true_trace / true_g2, rel=0.08)


def test_noise_scale_is_nan_where_the_signal_estimate_is_not_positive():
    g2s, trs, b = noise_scale([1.0, 1.0], [0.1, 0.12], 8, 64, window=1)
    assert (g2s < 0).all() and np.isnan(b).all()


def test_gradient_cosine():
    assert gradient_cosine_sq(100.0, 100) == pytest.approx(0.5)
    assert gradient_cosine_sq(100.0, 10_000) > 0.99
    assert gradient_cosine_sq(100.0, 1) < 0.01


def test_series_difference():
    d = series_difference([1.0, 2.0, 3.0], [1.0, 2.5, 3.0, 9.0])
    assert d == {
        "steps": 3,
        "max_abs": 0.5,
        "max_rel": pytest.approx(0.2),
        "first_update_rel": pytest.approx(0.2),
        "agree_steps": 1,
    }
    # equal to rounding for 3 iterations, then apart
    d = series_difference([2.0, 1.0, 0.5, 0.9], [2.0, 1.0 + 1e-7, 0.5, 0.3])
    assert d["agree_steps"] == 3 and d["first_update_rel"] < 1e-6
