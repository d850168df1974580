"""Each verdict rule on synthetic studies whose answer is known: supported, not supported and
inconclusive all come out (each decided as the study decides it, with the family:
batchlab.analysis.family)."""

import math

import numpy as np
import pandas as pd
import pytest

from batchlab.analysis.claims_lr import lr_follows_batch, solution2_helps
from batchlab.analysis.claims_training import late_blowup, time_to_target
from batchlab.analysis.family import decide_family
from batchlab.analysis.lr_law import lr_law
from batchlab.analysis.lr_response import response_table

CONFIG = {
    "grid": {"optimizers": ["sgd"]},
    "train": {"epochs": 2},
    "report": {"reference_lr": 0.1},
    "solution2": {"enabled": True, "batch_size": 64, "splits": 4, "lr": 0.1, "optimizers": ["sgd", "momentum"]},
    "optimizers": {"momentum": {"momentum": 0.9}},
}
SEEDS = range(10)  # a family of one verdict tests at 0.025: five seeds (1/32) could never decide


def decided(v: dict) -> dict:
    """The verdict as the study decides it: with the family (here of this one verdict)."""
    return decide_family([v])[0]


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
    return 0.002 * s  # seeds differ more than the settings' paired differences


def lr_study(opt_of_b, noise=0.001, seed=4):
    """Grid cells whose validation accuracy peaks at opt_of_b(b) (a parabola in log lr over x2
    steps), every seed shifted by its own offset."""
    rows, rng = [], np.random.default_rng(seed)
    for b in (1, 4, 16, 64, 256):
        opt = opt_of_b(b)
        for k in (-3, -2, -1, 0, 1, 2, 3):
            lr = round(opt * 1.3 * 2.0**k, 8)
            for s in SEEDS:
                acc = 0.97 - 0.004 * np.log(lr / opt) ** 2 + seed_effect(s) + noise * rng.standard_normal()
                rows.append(row(b, lr, s, acc))
    return pd.DataFrame(rows)


def lr_verdict(cells):
    response, reps = response_table(cells, n_boot=100)
    return decided(lr_follows_batch(cells, response, lr_law(response, reps)))


def test_best_lr_grows_with_batch_every_way():
    grows = lr_verdict(lr_study(lambda b: 0.001 * b**0.5))
    assert grows["verdict"] == "supported" and grows["exponent"]["mean"] == pytest.approx(0.5, abs=0.1)
    assert "B_noise" in grows["headline"] and "batch 64: " in grows["evidence"]
    assert lr_verdict(lr_study(lambda b: 0.01))["verdict"] == "not supported"  # flat
    assert lr_verdict(lr_study(lambda b: 0.1 / b**0.5))["verdict"] == "not supported"  # shrinks
    noisy = lr_verdict(lr_study(lambda b: 0.001 * b**0.1, noise=0.01))
    assert noisy["verdict"] == "inconclusive"


# ----------------------------------------------------------------------------- Solution 2


SOL2 = "_momentum_k4"  # Solution 2's momentum variant, which its verdict reads


def with_solution2(plain_best, split_acc, noise=0.0):
    """Solution 2 with momentum at its window 0.05, 0.1, 0.2, best at 0.1 (inside); at momentum 0
    (_k4) as good as tuned plain training, which the verdict must not read."""
    rng = np.random.default_rng(1)
    extra = [row(64, 0.1, s, split_acc + seed_effect(s) + noise * rng.standard_normal(), SOL2) for s in SEEDS]
    extra += [row(64, lr, s, split_acc - 0.02 + seed_effect(s), SOL2) for lr in (0.05, 0.2) for s in SEEDS]
    extra += [row(64, 0.1, s, plain_best + seed_effect(s), "_k4") for s in SEEDS]
    acc = {(1, 0.01): 0.95, (1, 0.1): 0.93, (64, 0.01): 0.90, (64, 0.1): 0.92, (64, 0.4): plain_best}
    return cells_frame(lambda b, lr, s: acc.get((b, lr), 0.5) + seed_effect(s), lrs=(0.01, 0.1, 0.4), extra=extra)


def test_solution2_is_compared_with_tuned_plain_training():
    best = best_frame([(1, 0.01), (64, 0.4)])
    # better than plain at its own lr 0.1 (0.92) but worse than tuned plain (0.95): not supported
    v = decided(solution2_helps(with_solution2(plain_best=0.95, split_acc=0.94), best, CONFIG))
    assert v["verdict"] == "not supported" and "best lr 0.4" in v["evidence"]
    assert decided(solution2_helps(with_solution2(0.95, 0.96), best, CONFIG))["verdict"] == "supported"
    assert decided(solution2_helps(with_solution2(0.95, 0.951, noise=0.03), best, CONFIG))["verdict"] == "inconclusive"
    assert solution2_helps(with_solution2(0.95, 0.96), best, {**CONFIG, "solution2": {"enabled": False}}) is None


def test_solution2_is_taken_at_its_own_best_lr_inside_its_window_with_momentum():
    best = best_frame([(1, 0.01), (64, 0.4)])
    cells = with_solution2(plain_best=0.95, split_acc=0.90)  # at lr 0.1: worse than tuned plain
    better = [row(64, 0.025, s, 0.96 + seed_effect(s), SOL2) for s in SEEDS]  # at lr 0.025: better, the window's edge
    v = decided(solution2_helps(pd.concat([cells, pd.DataFrame(better)], ignore_index=True), best, CONFIG))
    assert v["verdict"] == "inconclusive" and "primary" not in v and "edge of its window" in v["why"]
    assert "at its best lr 0.025 (the edge of its window) of 0.025, 0.05, 0.1, 0.2" in v["evidence"]
    # at momentum 0 Solution 2 is plain SGD at k x lr: an identity, never decided
    plain = {**CONFIG, "solution2": {**CONFIG["solution2"], "optimizers": ["sgd"]}}
    identity = decided(solution2_helps(with_solution2(0.95, 0.96), best, plain))
    assert identity["verdict"] == "inconclusive" and "identity" in identity["why"] and "momentum 0" in identity["claim"]


# ----------------------------------------------------------------------------- time to target


def timed_study(small_s, large_s, noise=0.0, never=()):
    """Batch 1 and 64 at lr 0.1; seconds to the target per seed (NaN for the seeds in `never`
    at batch 64: they count their whole 3-epoch run of 3 x 40 s)."""
    rng = np.random.default_rng(3)
    rows = []
    for b, secs in ((1, small_s), (64, large_s)):
        for s in SEEDS:
            took = secs * np.exp(noise * rng.standard_normal()) * (1 + 0.1 * s)
            reached = not (b == 64 and s in never)
            rows.append(row(b, 0.1, s, 0.96) | {"seconds_to_acc": took if reached else np.nan, "epoch_seconds": 40.0, "epochs_completed": 3})
    return pd.DataFrame(rows)


def test_time_to_target_every_way():
    best = best_frame([(1, 0.1), (64, 0.1)])

    def verdict(cells):
        return decided(time_to_target(cells, best, 0.95, 64))

    assert verdict(timed_study(90.0, 10.0))["verdict"] == "supported"
    assert verdict(timed_study(10.0, 10.2))["verdict"] == "not supported"  # within a factor 1.1
    assert verdict(timed_study(10.0, 30.0))["verdict"] == "not supported"  # the small batch is faster
    assert verdict(timed_study(10.0, 10.0, noise=0.6))["verdict"] == "inconclusive"
    # a seed that never reaches the target counts its whole run: 120 s against batch 1's 50-95
    slow = verdict(timed_study(50.0, 10.0, never=SEEDS))
    assert slow["verdict"] == "not supported" and slow["primary"]["mean"] < 0
    assert time_to_target(timed_study(90.0, 10.0), best, 0.95, None) is None


# ----------------------------------------------------------------------------- late blow-up


LATE = {**CONFIG, "late_blowup": {"enabled": True, "batch_size": 1, "learning_rates": [0.02], "epochs": 10}}


def blowup_study(end_acc, peak_acc, fails=()):
    """Batch 1 at lr 0.02 for 10 epochs; each seed's accuracy climbs to peak_acc by epoch 4 and
    ends at end_acc; fails: {seed: epoch it diverged in}."""
    fails = dict(fails)
    cells, epochs = [], []
    for s in SEEDS:
        status = "diverged" if s in fails else "ok"
        last = fails.get(s, 10)
        cells.append(row(1, 0.02, s, end_acc, recipe="_e10", status=status) | {"group": "late_blowup", "stopped_epoch": fails.get(s), "epochs_completed": last})
        for e in range(1, last + 1):
            acc = peak_acc - 0.01 * max(0, 4 - e) if e < 10 else end_acc
            epochs.append({"batch_size": 1, "lr": 0.02, "seed": s, "recipe": "_e10", "epoch": e, "val_acc": acc})
    return pd.DataFrame(cells), pd.DataFrame(epochs)


def test_late_blowup_tells_blew_up_degraded_and_fine_apart():
    four = {0: 8, 1: 9, 2: 7, 3: 10}  # four of ten seeds diverge in the second half
    v = decided(late_blowup(*blowup_study(0.9, 0.9, fails=four), LATE))
    assert v["verdict"] == "supported" and v["fates"]["0"] == "blew up" and "4 of 10 seeds" in v["headline"]
    assert v["decision"]["p_for"] == pytest.approx(sum(math.comb(10, i) * 0.05**i * 0.95 ** (10 - i) for i in range(4, 11)))
    v = decided(late_blowup(*blowup_study(0.85, 0.90), LATE))
    assert v["verdict"] == "supported" and set(v["fates"].values()) == {"degraded"}
    v = decided(late_blowup(*blowup_study(0.901, 0.90), LATE))
    assert v["verdict"] == "not supported" and v["decision"]["p_against"] == pytest.approx(0.5**10)
    # one blown-up seed is not yet evidence either way; two neither
    assert decided(late_blowup(*blowup_study(0.9, 0.9, fails={0: 8, 1: 9}), LATE))["verdict"] == "inconclusive"
    # an early failure is not a late blow-up; two seeds are too few to bound the risk below one in two
    v = decided(late_blowup(*blowup_study(0.901, 0.90, fails={0: 2}), LATE))
    assert v["fates"]["0"] == "blew up early" and v["verdict"] == "not supported"
    few = blowup_study(0.901, 0.90)
    v = decided(late_blowup(few[0][few[0]["seed"] < 2], few[1], LATE))
    assert v["verdict"] == "inconclusive"
    # the survival curve: the share of seeds blown up by each epoch
    curve = late_blowup(*blowup_study(0.9, 0.9, fails={0: 8}), LATE)["survival"]
    assert [r["blown_up"] for r in curve if r["epoch"] in (7, 8)] == [0.0, 0.1]


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
    more = decided(oscillation(oscillation_study(lambda b, lr: 0.02 / np.sqrt(b)), best))
    assert more["verdict"] == "supported" and "equal lr / b = 0.004" in more["evidence"]
    less = decided(oscillation(oscillation_study(lambda b, lr: 0.02 * np.sqrt(b)), best))
    assert less["verdict"] == "not supported"
    same = decided(oscillation(oscillation_study(lambda b, lr: 0.02), best))
    assert same["verdict"] == "not supported" and "short of the margin" in same["evidence"]
    noisy = decided(oscillation(oscillation_study(lambda b, lr: 0.02, noise=0.5), best))  # no effect, loosely measured
    assert noisy["verdict"] == "inconclusive"
    # at equal lr / b the comparison is reported beside the verdict, which is decided at the best lrs
    osc = {(1, 0.004): 0.05, (64, 0.064): 0.05, (64, 0.256): 0.01, (1, 0.001): 0.05}
    beside = decided(oscillation(oscillation_study(lambda b, lr: osc[b, lr]), best_frame([(1, 0.004), (64, 0.064)])))
    assert beside["verdict"] == "not supported" and beside["at_equal_noise"]["mean"] == pytest.approx(np.log(5))
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
            r["grad_cos"] = cos_of_b(b) + spread * (s - 4.5) / 2
            r["b_simple_end"] = 100.0
            rows.append(r)
    return pd.DataFrame(rows)


def test_gradient_direction_every_way():
    from batchlab.analysis.claims_training import gradient_direction

    best = best_frame([(1, 0.1), (64, 0.1), (1024, 0.1)])
    v = decided(gradient_direction(gradient_study(lambda b: b / (b + 100.0)), best))
    assert v["verdict"] == "supported" and v["first_parallel_batch"] == 1024
    assert "batch 1024: 0.911" in v["evidence"] and "(predicted 0.911)" in v["evidence"]
    v = decided(gradient_direction(gradient_study(lambda b: 0.3), best))
    assert v["verdict"] == "not supported" and v["first_parallel_batch"] is None
    assert "No batch size of the grid reaches cosine 0.9" in v["evidence"]
    assert decided(gradient_direction(gradient_study(lambda b: 0.9, spread=0.05), best))["verdict"] == "inconclusive"


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
    stuck = decided(equal_updates(equal_updates_study(0.93), best, config))
    assert stuck["verdict"] == "supported" and "800 updates" in stuck["evidence"]
    assert "Not run: batch 4096 is not in grid.batch_sizes, so its lr cannot be chosen." in stuck["evidence"]
    assert stuck["runs"][0]["gain_from_updates"]["mean"] > 0.029
    assert decided(equal_updates(equal_updates_study(0.95), best, config))["verdict"] == "not supported"  # short of steps
    assert decided(equal_updates(equal_updates_study(0.94, noise=0.02), best, config))["verdict"] == "inconclusive"
    absent = decided(equal_updates(equal_updates_study(0.93).query("group == 'grid'"), best, config))
    assert absent["verdict"] == "inconclusive" and "no equal-updates run" in absent["evidence"]
