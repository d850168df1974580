import math

import numpy as np
import pandas as pd
import pytest

from batchlab.analysis.aggregate import best_learning_rates, by_setting, cells_table, headline_metrics
from batchlab.analysis.cell_summary import (
    first_crossing,
    loss_oscillation,
    smoothing_window,
    summarize_cell,
    trailing_mean,
)
from batchlab.analysis.curves import curve_points, downsample_curve


def test_oscillation_is_mean_absolute_step_change_over_last_epoch():
    losses = np.array([9.0, 9.0, 9.0, 1.0, 2.0, 1.0, 2.0])  # last epoch = last 4 iterations
    assert loss_oscillation(losses, 4) == pytest.approx(1.0)
    assert loss_oscillation(np.array([1.0, 1.0, 1.0]), 3) == 0.0
    assert math.isnan(loss_oscillation(np.array([np.nan]), 5))


def test_noisier_series_oscillates_more():
    rng = np.random.default_rng(0)
    quiet = 1 + 0.01 * rng.standard_normal(500)
    loud = 1 + 0.5 * rng.standard_normal(500)
    assert loss_oscillation(loud, 500) > 10 * loss_oscillation(quiet, 500)


def test_trailing_mean_and_window():
    assert smoothing_window(1, 2048) == 2048
    assert smoothing_window(1000, 2048) == 3
    assert smoothing_window(4096, 2048) == 1
    np.testing.assert_allclose(trailing_mean(np.array([1.0, 2, 3, 4]), 2), [1, 1.5, 2.5, 3.5])


def test_first_crossing_is_one_based():
    assert first_crossing(np.array([3.0, 2.0, 0.5, 0.1]), 0.5) == 3
    assert first_crossing(np.array([3.0, 2.0]), 0.5) is None


def test_curve_points_are_bounded_and_log_spaced():
    idx = curve_points(60000 * 3, 300)
    assert len(idx) <= 300 and idx[0] == 0 and idx[-1] == 60000 * 3 - 1
    assert np.all(np.diff(idx) > 0)
    assert list(curve_points(5, 300)) == [0, 1, 2, 3, 4]
    curve = downsample_curve(
        np.linspace(2, 0.1, 1000), batch_size=10, ipe=100, smooth_samples=50, max_points=50
    )
    assert len(curve) <= 50 and curve["epoch"].iloc[-1] == 10.0 and curve["samples"].iloc[-1] == 10000


def _metrics(b, lr, status="ok", stopped=None):
    return {
        "cell": f"bs{b}_lr{lr}",
        "batch_size": b,
        "lr": lr,
        "seed": 0,
        "status": status,
        "stopped_step": stopped,
        "iterations_per_epoch": 10,
        "final_train_loss": 0.1,
        "final_train_acc": 0.9,
        "final_val_loss": 0.2,
        "final_val_acc": 0.8,
        "final_test_loss": 0.2,
        "final_test_acc": 0.8,
        "selection_set": "validation",
        "device": "cpu",
    }


def _epochs(acc):
    return pd.DataFrame(
        {"epoch": [1], "seconds": [2.0], "samples_per_s": [50.0], "ms_per_step": [200.0], "val_acc": [acc], "test_acc": [acc]}
    )


def test_summary_row_counts_steps_samples_and_seconds_to_target():
    losses = np.r_[np.full(10, 2.0), np.full(10, 0.1)]
    row = summarize_cell(_metrics(4, 0.1), _epochs(0.8), losses, smooth_samples=4, loss_target=0.3)
    assert row["steps_to_target"] == 11  # window of 1 iteration (4 samples / batch 4)
    assert row["samples_to_target"] == 44
    assert row["seconds_to_target"] == pytest.approx(11 * 0.2)
    assert row["oscillation"] == 0.0


def test_best_lr_per_batch_size_is_chosen_on_validation_and_flags_grid_edges():
    rows = []
    accs = {
        (1, 0.01): 0.9,
        (1, 0.1): 0.8,
        (1, 1.0): 0.1,
        (64, 0.01): 0.7,
        (64, 0.1): 0.95,
        (64, 1.0): 0.9,
        (1024, 0.01): 0.5,
        (1024, 0.1): 0.7,
        (1024, 1.0): 0.8,
    }
    for (b, lr), acc in accs.items():
        status = "diverged" if acc < 0.2 else "ok"
        m = _metrics(b, lr, status, stopped=5 if status == "diverged" else None)
        m["final_val_acc"] = acc
        m["final_test_acc"] = 1.0 - acc  # selection must never read it: it would pick other lrs
        rows.append(summarize_cell(m, _epochs(acc), np.ones(10), 2048, 0.3))
    cells = cells_table(rows)
    settings = by_setting(cells)
    best = best_learning_rates(settings)
    assert best.set_index("batch_size")["best_lr"].to_dict() == {1: 0.01, 64: 0.1, 1024: 1.0}
    edges = best.set_index("batch_size")["at_grid_edge"].fillna("inside").to_dict()
    assert edges == {1: "lowest", 64: "inside", 1024: "highest"}
    assert settings.set_index(["batch_size", "lr"]).loc[(1, 1.0), "diverged"] == 1
    headline = headline_metrics(cells, best)
    assert headline["cells"] == headline["seed_runs"] == 9 and headline["diverged_runs"] == 1
    assert headline["bs64"] == {"best_lr": 0.1, "val_acc": 0.95, "test_acc": pytest.approx(0.05)}
    assert headline["selection_set"] == "validation"


def test_steps_to_target_takes_the_fastest_lr_that_every_seed_reaches():
    from batchlab.analysis.aggregate import steps_to_target_table
    from batchlab.analysis.fits import critical_batch

    rows = []
    # (batch, lr) -> steps per seed; None = that seed never reached the target
    steps = {
        (16, 0.01): [950, 1050],
        (16, 0.1): [400, None],  # faster, but one seed missed: not eligible
        (64, 0.1): [300, 340],
        (64, 0.4): [500, 520],
        (256, 0.4): [150, 170],
        (1024, 0.4): [None, None],
    }
    for (b, lr), per_seed in steps.items():
        for seed, s in enumerate(per_seed):
            rows.append(
                {
                    "cell": f"bs{b}_lr{lr}",
                    "batch_size": b,
                    "lr": lr,
                    "seed": seed,
                    "recipe": "",
                    "status": "ok",
                    "stopped_step": None,
                    "stopped_epoch": None,
                    "steps_to_target": None,
                    "samples_to_target": None,
                    "seconds_to_target": None,
                    "steps_to_acc": s,
                    "samples_to_acc": s * b if s else None,
                    "seconds_to_acc": s * 0.01 if s else None,
                    "best_val_acc": 0.9,
                }
            )
    table = steps_to_target_table(cells_table(rows)).set_index("batch_size")
    assert table.loc[16, "lr"] == 0.01 and table.loc[16, "steps"] == 1000
    assert table.loc[16, "steps_lo"] == pytest.approx(
        1000 - 12.706 * np.std([950, 1050], ddof=1) / np.sqrt(2)
    )
    assert table.loc[64, "lr"] == 0.1 and table.loc[64, "samples"] == 320 * 64
    assert not table.loc[1024, "reached"] and table.loc[1024, "best_acc"] == 0.9
    fit = critical_batch(table.reset_index())
    assert fit["n"] == 3 and math.isfinite(fit["b_crit"])
    # 16 -> 64: 1000 -> 320 steps, log(3.1)/log(4) = 82% of ideal; 64 -> 256: 320 -> 160, 50%
    assert [r["regime"] for r in fit["regimes"]] == ["perfect scaling", "diminishing returns"]


def test_a_truncated_output_of_a_finished_cell_is_named_with_what_to_do(tmp_path):
    from batchlab import BatchlabError
    from batchlab.analysis.runs import read_cell

    cell = tmp_path / "results/runs/bs64_lr0.1"
    cell.mkdir(parents=True)
    (cell / "metrics.json").write_text('{"seeds": []}')
    frame = pd.DataFrame({"seed": [0, 0], "step": [1, 2], "epoch": [1, 1], "loss": [2.3, 2.2]})
    for name in ("epochs", "losses", "probes"):
        frame.to_parquet(cell / f"{name}.parquet")
    assert read_cell(*(cell / n for n in ("metrics.json", "epochs.parquet", "losses.parquet", "probes.parquet")))
    blob = (cell / "losses.parquet").read_bytes()
    (cell / "losses.parquet").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(BatchlabError, match=r"cell .*bs64_lr0\.1 cannot be read .*delete .*bs64_lr0\.1 and run the study again"):
        read_cell(*(cell / n for n in ("metrics.json", "epochs.parquet", "losses.parquet", "probes.parquet")))


def test_model_oscillation_removes_the_trend_and_can_be_zero():
    from batchlab.analysis.cell_summary import model_oscillation

    steady = [[i, 2.0 - 0.1 * i] for i in range(10)]  # falls steadily: no oscillation at all
    assert model_oscillation(steady) == pytest.approx(0.0, abs=1e-12)
    zigzag = [[i, 2.0 - 0.1 * i + 0.05 * (-1) ** i] for i in range(11)]
    assert model_oscillation(zigzag) == pytest.approx(0.1)  # every step jumps by 0.1 about the trend
    assert np.isnan(model_oscillation([[0, 1.0], [1, 0.9]])) and np.isnan(model_oscillation(None))
    # the run is tracked throughout; the oscillation reads the steps after `after_step` only
    wild_then_steady = [[i, 2.0 + (-1) ** i] for i in range(1, 11)] + [[10 + i, 1.0 - 0.01 * i] for i in range(1, 11)]
    assert model_oscillation(wild_then_steady, after_step=10) == pytest.approx(0.0, abs=1e-12)
    assert model_oscillation(wild_then_steady) > 0.5


def test_a_seed_that_ends_far_below_the_others_failed_to_learn_and_is_never_best():
    rows = []
    for lr, acc in ((0.1, 0.93), (0.4, 0.33)):  # 0.4 trained to the end at 33%: it did not learn
        for seed in (0, 1):
            m = _metrics(64, lr) | {"seed": seed, "final_val_acc": acc + 0.01 * seed}
            rows.append(summarize_cell(m, _epochs(acc), np.ones(10), 2048, 0.3))
    cells = cells_table(rows)
    assert cells.groupby("lr")["failed_to_learn"].all().to_dict() == {0.1: False, 0.4: True}
    settings = by_setting(cells)
    assert settings.set_index("lr")["failed_to_learn"].to_dict() == {0.1: 0, 0.4: 2}
    # the pool of candidates leaves a flagged setting out even where its mean would win
    cells.loc[cells["lr"] == 0.4, "final_val_acc"] = 0.99
    best = best_learning_rates(by_setting(cells))
    assert best["best_lr"].tolist() == [0.1]


def test_b_crit_has_a_seed_bootstrap_interval_and_an_edge_flag():
    from batchlab.analysis.aggregate import steps_to_target_table
    from batchlab.analysis.fits import critical_batch, fit_critical_batch

    # perfect scaling at every batch size: the best fit runs off the end of the search
    assert fit_critical_batch([1, 4, 16, 64], [1e5, 2.5e4, 6250, 1562.5])["at_search_edge"]
    rng = np.random.default_rng(0)
    rows = []
    for b in (4, 16, 64, 256, 1024, 4096):
        for seed in range(5):
            s = 1000 * (1 + 256 / b) * float(np.exp(0.05 * rng.standard_normal()))
            rows.append(
                {
                    "cell": f"bs{b}_lr0.1", "batch_size": b, "lr": 0.1, "seed": seed, "recipe": "", "status": "ok",
                    "stopped_step": None, "stopped_epoch": None, "steps_to_target": None, "samples_to_target": None,
                    "seconds_to_target": None, "steps_to_acc": s, "samples_to_acc": s * b, "seconds_to_acc": s * 0.01,
                    "best_val_acc": 0.97,
                }
            )  # fmt: skip
    cells = cells_table(rows)
    fit = critical_batch(steps_to_target_table(cells), cells)
    assert not fit["at_search_edge"]
    assert fit["b_crit_lo"] < 256 < fit["b_crit_hi"] and fit["b_crit_lo"] < fit["b_crit"] < fit["b_crit_hi"]
    assert fit["b_crit_hi"] / fit["b_crit_lo"] < 2  # five seeds with 5% noise pin it down
    assert np.isnan(critical_batch(steps_to_target_table(cells))["b_crit_lo"])  # no cells, no interval


def test_b_simple_at_target_is_read_at_the_first_probe_that_reaches_it():
    from batchlab.analysis.cell_summary import b_simple_at

    # |G|^2 = 1 and tr(Sigma) = B at each probe (E|G_b|^2 = 1 + B / b), B = 100, 400, 900
    rows = [{"val_acc": acc, "b_small": 16, "b_big": 64, "g_small_sq": 1 + t / 16, "g_big_sq": 1 + t / 64}
            for acc, t in ((0.80, 100.0), (0.96, 400.0), (0.97, 900.0))]  # fmt: skip
    probes = pd.DataFrame(rows)
    assert b_simple_at(probes, 0.95) == pytest.approx(400.0)
    probes.loc[1, "g_small_sq"] = np.nan  # not measured there: the next measured probe
    assert b_simple_at(probes, 0.95) == pytest.approx(900.0)
    assert np.isnan(b_simple_at(probes, 0.99))
