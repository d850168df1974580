"""One selection rule, read by the equal-updates checkpoint and by aggregate alike."""

import numpy as np
from test_aggregate import _epochs, _metrics

from batchlab.analysis.aggregate import best_learning_rates, by_setting, cells_table
from batchlab.analysis.cell_summary import summarize_cell
from batchlab.analysis.selection import best_lr, best_lr_of_cells, seed_failed


def test_the_best_lr_is_the_highest_mean_among_settings_where_no_seed_failed():
    assert best_lr([(0.1, 0.90, False), (0.2, 0.95, False), (0.4, 0.97, True)]) == 0.2
    assert best_lr([(0.1, 0.30, True), (0.2, 0.40, True)]) == 0.2  # all failed: the best of them
    assert best_lr([(0.1, 0.9, False), (0.2, 0.9, False)]) == 0.1  # a tie: the smaller lr
    assert best_lr([]) is None
    assert seed_failed("diverged", 0.9) and seed_failed("collapsed", None) and seed_failed("ok", 0.3)
    assert not seed_failed("ok", 0.9) and not seed_failed("ok", None)


def test_the_checkpoint_and_aggregate_select_the_same_lr():
    """From the same cells, metrics.json records (the checkpoint's view) and aggregate's tables
    pick one lr, though the failed setting has the highest mean and the test set another."""
    accs = {0.1: [0.90, 0.92], 0.2: [0.94, 0.93], 0.4: [0.99, 0.30]}  # 0.4: one seed failed to learn
    records, rows = [], []
    for lr, per_seed in accs.items():
        seeds = []
        for s, acc in enumerate(per_seed):
            m = _metrics(1024, lr) | {"seed": s, "final_val_acc": acc, "final_test_acc": 1 - acc}
            rows.append(summarize_cell(m, _epochs(acc), np.ones(10), 2048, 0.3))
            seeds.append({"seed": s, "status": "ok", "final_val_acc": acc})
        records.append({"batch_size": 1024, "lr": lr, "seeds": seeds})
    from_tables = best_learning_rates(by_setting(cells_table(rows)))["best_lr"].tolist()
    assert best_lr_of_cells(records) == from_tables[0] == 0.2
