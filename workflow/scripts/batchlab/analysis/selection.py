"""Which learning rate a batch size selects: one rule, used by the Snakemake checkpoint that
picks the equal-updates runs' lr after the grid and by aggregate's table of best lrs.

The best lr is the one with the highest mean final validation accuracy over its seeds, among the
lrs in which no seed failed (diverged, collapsed or failed to learn); where every lr had a
failure, among them all. The test set is never read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

# a seed that ends below this validation accuracy "failed to learn" (chance is 10%)
FAILED_TO_LEARN = 0.5


def seed_failed(status: str, final_val_acc) -> bool:
    """Diverged, collapsed, or trained to the end without learning."""
    if status in ("diverged", "collapsed"):
        return True
    acc = float("nan") if final_val_acc is None else float(final_val_acc)
    return status == "ok" and acc < FAILED_TO_LEARN


def best_lr(settings: Iterable[tuple[float, float, bool]]) -> float | None:
    """settings: (lr, mean final validation accuracy, whether some seed failed) of one batch
    size's lrs; the lr selected, None when there are none."""
    rows = [(float(lr), float(acc) if acc is not None and math.isfinite(float(acc)) else -1.0, bool(bad)) for lr, acc, bad in settings]
    if not rows:
        return None
    pool = [r for r in rows if not r[2]] or rows
    return max(pool, key=lambda r: (r[1], -r[0]))[0]


def best_lr_of_cells(cells: Iterable[dict]) -> float | None:
    """The selected lr from cells' metrics.json records (each with `lr` and `seeds`, whose
    entries hold `status` and `final_val_acc`), as the checkpoint reads them."""
    rows = []
    for cell in cells:
        seeds = cell["seeds"]
        accs = [s.get("final_val_acc") for s in seeds]
        finite = [float(a) for a in accs if a is not None and math.isfinite(float(a))]
        mean = sum(finite) / len(finite) if finite else float("nan")
        rows.append((cell["lr"], mean, any(seed_failed(s["status"], s.get("final_val_acc")) for s in seeds)))
    return best_lr(rows)
