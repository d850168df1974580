"""The numbers the report formats, computed upstream: on synthetic tables whose answer is known."""

import pandas as pd

from batchlab.analysis.summaries import solution2

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


def test_solution2_counts_a_seed_that_failed_to_learn_as_failed():
    rows = [cell(1024, 0.1, "_k4", s, 0.3 if s == 0 else 0.9) for s in range(3)]
    rows += [cell(1024, lr, "", s, 0.9) for lr in (0.1, 0.4) for s in range(3)]
    table = {r["training"]: r for r in solution2(pd.DataFrame(rows), CONFIG)}
    assert table["Solution 2, k = 4, lr 0.1"]["failed"] == 1
    assert table["plain, lr 0.1"]["failed"] == 0 and table["plain, lr 0.4 (k × lr)"]["seeds"] == 3
