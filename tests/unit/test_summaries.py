"""The numbers the report formats, computed upstream: on synthetic tables whose answer is known."""

import numpy as np
import pandas as pd

from batchlab.analysis.summaries import remedies, solution2

CONFIG = {
    "grid": {"optimizers": ["sgd"]},
    "train": {"epochs": 2},
    "remedies": {"enabled": True, "batch_sizes": [1024], "reference_batch_size": 64, "reference_lr": 0.1,
                 "scaling": ["none", "linear"], "warmup_epochs": 1},
    "solution2": {"enabled": True, "batch_size": 1024, "splits": 4, "lr": 0.1, "learning_rates": [], "optimizers": ["sgd"]},
}  # fmt: skip


def cell(b, lr, recipe, seed, acc, status="ok"):
    return {"batch_size": b, "lr": lr, "recipe": recipe, "seed": seed, "status": status, "failed_to_learn": acc < 0.5,
            "final_val_acc": acc, "final_test_acc": acc, "final_train_loss": 0.2, "iterations_per_epoch": 49}  # fmt: skip


def remedy_study(linear_gain, noise=0.0):
    """No remedy ends at 0.90 + seed effect; linear scaling (lr 1.6) with warm-up gains
    linear_gain; linear without warm-up diverges in one seed."""
    rng = np.random.default_rng(0)
    rows = []
    for s in range(5):
        e = 0.01 * s
        rows.append(cell(64, 0.1, "", s, 0.97 + e))
        rows.append(cell(1024, 0.1, "", s, 0.90 + e))
        rows.append(cell(1024, 0.1, "_w1", s, 0.90 + e))
        rows.append(cell(1024, 1.6, "", s, 0.10 if s == 0 else 0.95, "diverged" if s == 0 else "ok"))
        rows.append(cell(1024, 1.6, "_w1", s, 0.90 + e + linear_gain + noise * rng.standard_normal()))
    curves = pd.DataFrame(columns=["batch_size", "lr", "recipe", "seed", "step", "loss_smooth"])
    return pd.DataFrame(rows), curves


def test_the_best_remedy_is_chosen_on_validation_and_paired_against_none_every_way():
    (entry,) = remedies(*remedy_study(0.03), CONFIG)["per_batch"]
    # linear scaling without warm-up has the best mean of its finished seeds, but one diverged
    assert entry["best_variant"] == "linear scaling + 1-epoch warm-up" and entry["verdict"] == "supported"
    assert abs(entry["gain"]["mean"] - 0.03) < 1e-9 and entry["gain"]["n"] == 5
    assert remedies(*remedy_study(0.0005), CONFIG)["per_batch"][0]["verdict"] == "not supported"
    assert remedies(*remedy_study(0.005, noise=0.02), CONFIG)["per_batch"][0]["verdict"] == "inconclusive"
    rows = {(r["variant"]): r for r in remedies(*remedy_study(0.03), CONFIG)["rows"]}
    assert rows["linear scaling"]["failed"] == 1 and rows["none scaling"]["failed"] == 0


def test_solution2_counts_a_seed_that_failed_to_learn_as_failed():
    rows = [cell(1024, 0.1, "_k4", s, 0.3 if s == 0 else 0.9) for s in range(3)]
    rows += [cell(1024, lr, "", s, 0.9) for lr in (0.1, 0.4) for s in range(3)]
    table = {r["training"]: r for r in solution2(pd.DataFrame(rows), CONFIG)}
    assert table["Solution 2, k = 4, lr 0.1"]["failed"] == 1
    assert table["plain, lr 0.1"]["failed"] == 0 and table["plain, lr 0.4 (k × lr)"]["seeds"] == 3
