"""Each paired verdict rule on synthetic studies whose answer is known: supported, not
supported and inconclusive (or mixed) all come out."""

import numpy as np
import pandas as pd
import pytest

from batchlab.analysis.claims_lr import lr_follows_batch, solution2_helps
from batchlab.analysis.claims_training import epoch_time, late_blowup

CONFIG = {
    "grid": {"optimizers": ["sgd"]},
    "train": {"epochs": 2},
    "report": {"reference_lr": 0.1},
    "solution2": {"enabled": True, "batch_size": 64, "splits": 4, "lr": 0.1},
}
SEEDS = range(5)


def cells_frame(acc, seeds=SEEDS, batch_sizes=(1, 64), lrs=(0.01, 0.1), noise=0.0, extra=()):
    """acc(b, lr, seed) -> test accuracy of grid cells; validation accuracy tracks it."""
    rng = np.random.default_rng(0)
    rows = []
    for b in batch_sizes:
        for lr in lrs:
            for s in seeds:
                a = acc(b, lr, s) + noise * rng.standard_normal()
                rows.append(row(b, lr, s, a))
    rows += list(extra)
    return pd.DataFrame(rows)


def row(b, lr, s, acc, recipe="", status="ok", stopped=None):
    return {
        "batch_size": b,
        "lr": lr,
        "seed": s,
        "recipe": recipe,
        "in_grid": recipe == "",
        "status": status,
        "stopped_step": stopped,
        "iterations_per_epoch": 100,
        "final_val_acc": acc,
        "final_test_acc": acc,
    }


def best_frame(pairs):
    return pd.DataFrame([{"batch_size": b, "best_lr": lr} for b, lr in pairs])


# ----------------------------------------------------------------------------- lr follows batch


def seed_effect(s):
    return 0.01 * s  # seeds differ far more than the settings' paired differences


def optima(lr_small, lr_large):
    return pd.DataFrame(
        [
            {"batch_size": 1, "best_lr": lr_small, "lr_opt": lr_small, "lr_opt_lo": lr_small / 1.2, "lr_opt_hi": lr_small * 1.2, "window_edge": None},
            {"batch_size": 64, "best_lr": lr_large, "lr_opt": lr_large, "lr_opt_lo": lr_large / 1.2, "lr_opt_hi": lr_large * 1.2, "window_edge": None},
        ]
    )


def exponent(slope, lo, hi):
    return {"exponent": slope, "lo": lo, "hi": hi, "batch_sizes": [1, 64], "below_b_crit": None}


def test_best_lr_grows_with_batch_every_way():
    best = optima(0.005, 0.32)
    assert lr_follows_batch(best, exponent(0.9, 0.6, 1.2))["verdict"] == "supported"
    assert lr_follows_batch(best, exponent(0.0, -0.05, 0.06))["verdict"] == "not supported"  # flat
    assert lr_follows_batch(best, exponent(-0.5, -0.8, -0.2))["verdict"] == "not supported"  # shrinks
    assert lr_follows_batch(best, exponent(0.3, -0.2, 0.8))["verdict"] == "inconclusive"
    v = lr_follows_batch(best, exponent(0.3, float("nan"), float("nan")))
    assert v["verdict"] == "inconclusive" and "no interval" in v["evidence"]
    assert "batch 64: 0.32 [0.267, 0.384]" in lr_follows_batch(best, exponent(0.9, 0.6, 1.2))["evidence"]


def test_best_lr_grows_with_batch_from_a_synthetic_study():
    from batchlab.analysis.fits import lr_exponent, lr_optima

    rows = []
    rng = np.random.default_rng(4)
    for b in (1, 4, 16, 64):
        opt = 0.001 * b**0.5
        for lr in [opt * 2.0**k for k in (-2, -1, 0.3, 1, 2)]:
            for s in SEEDS:
                acc = 0.97 - 0.02 * np.log(lr / opt) ** 2 + seed_effect(s) + 0.001 * rng.standard_normal()
                rows.append(row(b, lr, s, acc))
    cells = pd.DataFrame(rows)
    found = lr_optima(cells)
    v = lr_follows_batch(found.assign(best_lr=found["lr_opt"]), lr_exponent(cells, found, None))
    assert v["verdict"] == "supported" and v["exponent"]["lo"] <= 0.5 <= v["exponent"]["hi"]


# ----------------------------------------------------------------------------- Solution 2


def with_solution2(plain_best, split_acc, noise=0.0):
    rng = np.random.default_rng(1)
    extra = [row(64, 0.1, s, split_acc + seed_effect(s) + noise * rng.standard_normal(), "_k4") for s in SEEDS]
    acc = {(1, 0.01): 0.95, (1, 0.1): 0.93, (64, 0.01): 0.90, (64, 0.1): 0.92, (64, 0.4): plain_best}
    return cells_frame(lambda b, lr, s: acc.get((b, lr), 0.5) + seed_effect(s), lrs=(0.01, 0.1, 0.4), extra=extra)


def test_solution2_is_compared_with_tuned_plain_training():
    best = best_frame([(1, 0.01), (64, 0.4)])
    # better than plain at its own lr 0.1 (0.92) but worse than tuned plain (0.95): not supported
    v = solution2_helps(with_solution2(plain_best=0.95, split_acc=0.94), best, CONFIG)
    assert v["verdict"] == "not supported" and "best lr 0.4" in v["evidence"]
    assert solution2_helps(with_solution2(0.95, 0.96), best, CONFIG)["verdict"] == "supported"
    assert solution2_helps(with_solution2(0.95, 0.951, noise=0.03), best, CONFIG)["verdict"] == "inconclusive"
    assert solution2_helps(with_solution2(0.95, 0.96), best, {**CONFIG, "solution2": {"enabled": False}}) is None


def test_solution2_is_taken_at_its_own_best_lr():
    best = best_frame([(1, 0.01), (64, 0.4)])
    cells = with_solution2(plain_best=0.95, split_acc=0.90)  # at lr 0.1: worse than tuned plain
    better = [row(64, 0.05, s, 0.96 + seed_effect(s), "_k4") for s in SEEDS]  # at lr 0.05: better
    v = solution2_helps(pd.concat([cells, pd.DataFrame(better)], ignore_index=True), best, CONFIG)
    assert v["verdict"] == "supported"
    assert "at its best lr 0.05 (the edge of its window) of 0.05, 0.1" in v["evidence"]


# ----------------------------------------------------------------------------- epoch time


def epochs_frame(seconds_small, seconds_large):
    rows = []
    for b, secs in ((1, seconds_small), (64, seconds_large)):
        for e, sec in enumerate(secs, start=1):
            rows += [{"batch_size": b, "lr": 0.1, "seed": s, "epoch": e, "seconds": sec, "in_grid": True} for s in SEEDS]
    return pd.DataFrame(rows)


def test_epoch_time_every_way():
    best = best_frame([(1, 0.1), (64, 0.1)])
    assert epoch_time(epochs_frame([9.0, 9.2, 8.9], [1.0, 1.1, 1.0]), best)["verdict"] == "supported"
    assert epoch_time(epochs_frame([1.0, 1.01, 1.0], [1.0, 1.0, 1.01]), best)["verdict"] == "not supported"
    assert epoch_time(epochs_frame([1.0, 1.0, 1.0], [2.0, 2.1, 2.0]), best)["verdict"] == "not supported"
    assert epoch_time(epochs_frame([1.5, 0.8, 1.3], [1.0, 1.2, 0.9]), best)["verdict"] == "inconclusive"
    assert epoch_time(epochs_frame([9.0, 9.0], [1.0, 1.0]), best)["verdict"] == "inconclusive"  # 2 epochs


# ----------------------------------------------------------------------------- late blow-up


def blowup_study(end_acc, peak_acc, fails=(), noise=0.0):
    """Batch 1 at lr 0.02 (200 iterations planned); fails: {seed: stopped step}."""
    rng = np.random.default_rng(2)
    fails = dict(fails)
    rows, probes = [], []
    for s in SEEDS:
        status = "diverged" if s in fails else "ok"
        end = end_acc + seed_effect(s) + noise * rng.standard_normal()
        rows.append(row(1, 0.02, s, end, status=status, stopped=fails.get(s)))
        for step, acc in ((50, peak_acc - 0.02), (100, peak_acc)):
            probes.append({"batch_size": 1, "lr": 0.02, "seed": s, "step": step, "val_acc": acc + seed_effect(s), "in_grid": True})
    return pd.DataFrame(rows), pd.DataFrame(probes)


def test_late_blowup_tells_blew_up_degraded_and_fine_apart():
    every = {s: 150 for s in SEEDS}
    v = late_blowup(*blowup_study(0.1, 0.9, fails=every), CONFIG)
    assert (v["verdict"], v["outcome"]) == ("supported", "blew up") and "5 of 5 seeds" in v["evidence"]
    v = late_blowup(*blowup_study(0.80, 0.90), CONFIG)
    assert (v["verdict"], v["outcome"]) == ("mixed", "degraded")
    assert v["difference"]["mean"] == pytest.approx(-0.10)
    v = late_blowup(*blowup_study(0.901, 0.90), CONFIG)
    assert (v["verdict"], v["outcome"]) == ("not supported", "fine")
    v = late_blowup(*blowup_study(0.89, 0.90, noise=0.05), CONFIG)
    assert (v["verdict"], v["outcome"]) == ("inconclusive", "unclear")
    # an early failure is not a late blow-up
    v = late_blowup(*blowup_study(0.901, 0.90, fails=[(0, 50)]), CONFIG)
    assert v["late_failures"] == 0 and v["verdict"] == "inconclusive"


# ----------------------------------------------------------------------------- oscillation


def oscillation_study(osc, noise=0.0):
    """osc(b, lr) -> the model's oscillation; batch 1 at lrs 0.001 and 0.004, batch 64 at 0.064
    and 0.256 (equal lr / b pairs: 0.001 with 0.064, 0.004 with 0.256)."""
    rng = np.random.default_rng(5)
    rows = []
    for b, lrs in ((1, (0.001, 0.004)), (64, (0.064, 0.256))):
        for lr in lrs:
            for s in SEEDS:
                r = row(b, lr, s, 0.9)
                seed_factor = 1 + 0.2 * s  # seeds differ a lot; the ratio between settings does not
                r["model_oscillation"] = osc(b, lr) * seed_factor * np.exp(noise * rng.standard_normal())
                r["oscillation"] = 1.0 / np.sqrt(b)
                rows.append(r)
    return pd.DataFrame(rows)


def test_oscillation_every_way():
    from batchlab.analysis.claims_training import oscillation

    best = best_frame([(1, 0.004), (64, 0.256)])
    more = oscillation(oscillation_study(lambda b, lr: 0.02 / np.sqrt(b)), best)
    assert more["verdict"] == "supported" and "equal lr / b = 0.004" in more["evidence"]
    less = oscillation(oscillation_study(lambda b, lr: 0.02 * np.sqrt(b)), best)
    assert less["verdict"] == "not supported"
    same = oscillation(oscillation_study(lambda b, lr: 0.02), best)
    assert same["verdict"] == "not supported" and "within" in same["evidence"]
    noisy = oscillation(oscillation_study(lambda b, lr: 0.02, noise=0.5), best)  # no effect, loosely measured
    assert noisy["verdict"] == "inconclusive"
    # the same at the best lrs (batch 64's is 0.064 here), more at equal lr / b: the views disagree
    osc = {(1, 0.004): 0.05, (64, 0.064): 0.05, (64, 0.256): 0.01, (1, 0.001): 0.05}
    mixed = oscillation(oscillation_study(lambda b, lr: osc[b, lr]), best_frame([(1, 0.004), (64, 0.064)]))
    assert mixed["verdict"] == "mixed" and mixed["at_equal_noise"]["mean"] == pytest.approx(np.log(5))
    # a pair in which a seed diverged is never the equal-lr/b comparison
    broken = oscillation_study(lambda b, lr: 0.02 / np.sqrt(b))
    broken.loc[(broken["batch_size"] == 64) & (broken["lr"] == 0.256), "status"] = "diverged"
    assert "equal lr / b = 0.001 (batch 1 at lr 0.001, batch 64 at lr 0.064)" in oscillation(broken, best)["evidence"]
    # the per-iteration figure of the post, which always falls with b, is beside it and decides nothing
    assert "The post's measure" in same["evidence"]


# ----------------------------------------------------------------------------- gradient direction


def gradient_study(cos_of_b, spread=0.005):
    rows = []
    for b in (1, 64, 1024):
        for s in SEEDS:
            r = row(b, 0.1, s, 0.9)
            r["grad_cos"] = cos_of_b(b) + spread * (s - 2)
            r["b_simple_end"] = 100.0
            rows.append(r)
    return pd.DataFrame(rows)


def test_gradient_direction_every_way():
    from batchlab.analysis.claims_training import gradient_direction

    best = best_frame([(1, 0.1), (64, 0.1), (1024, 0.1)])
    v = gradient_direction(gradient_study(lambda b: b / (b + 100.0)), best)
    assert v["verdict"] == "supported" and v["first_parallel_batch"] == 1024
    assert "batch 1024: 0.911" in v["evidence"] and "(predicted 0.911)" in v["evidence"]
    v = gradient_direction(gradient_study(lambda b: 0.3), best)
    assert v["verdict"] == "not supported" and v["first_parallel_batch"] is None
    assert "No batch size of the grid reaches cosine 0.9" in v["evidence"]
    assert gradient_direction(gradient_study(lambda b: 0.9, spread=0.05), best)["verdict"] == "inconclusive"


# ----------------------------------------------------------------------------- local minima


def equal_updates_study(long_acc, noise=0.0):
    """Batch 64 at its best lr 0.1 ends at 0.95 + seed effect; batch 1024's long run at lr 0.1 at
    long_acc + the same seed effect, its 2-epoch grid cell 3 points lower."""
    rng = np.random.default_rng(1)
    rows = []
    for s in SEEDS:
        e = seed_effect(s)
        rows.append(row(64, 0.1, s, 0.95 + e) | {"final_train_loss": 0.1, "group": "grid"})
        rows.append(row(1024, 0.1, s, long_acc - 0.03 + e) | {"final_train_loss": 0.3, "group": "grid"})
        long = row(1024, 0.1, s, long_acc + e + noise * rng.standard_normal(), recipe="_e16")
        rows.append(long | {"final_train_loss": 0.12, "group": "equal_updates", "steps": 800, "epochs_completed": 16})
    return pd.DataFrame(rows)


def test_local_minima_every_way():
    from batchlab.analysis.claims_lr import equal_updates

    eq = {"enabled": True, "batch_sizes": [1024, 4096], "reference_batch_size": 64}
    config = {**CONFIG, "grid": {"batch_sizes": [64, 1024]}, "equal_updates": eq}
    best = best_frame([(64, 0.1), (1024, 0.1)])
    stuck = equal_updates(equal_updates_study(0.93), best, config)
    assert stuck["verdict"] == "supported" and "800 updates" in stuck["evidence"]
    assert "Not run: batch 4096 is not in grid.batch_sizes, so its lr cannot be chosen." in stuck["evidence"]
    assert stuck["runs"][0]["gain_from_updates"]["mean"] > 0.029
    assert equal_updates(equal_updates_study(0.95), best, config)["verdict"] == "not supported"  # short of steps
    assert equal_updates(equal_updates_study(0.94, noise=0.02), best, config)["verdict"] == "inconclusive"
    absent = equal_updates(equal_updates_study(0.93).query("group == 'grid'"), best, config)
    assert absent["verdict"] == "inconclusive" and "no equal-updates run" in absent["evidence"]
