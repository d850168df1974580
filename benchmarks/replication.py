"""Does a study replicate? Its verdicts and optima beside those of its reruns, as a Markdown table.

    .venv/bin/python benchmarks/replication.py NAME=FOLDER NAME=FOLDER [...]

Each FOLDER holds a study's summary (analysis.json and best_lr.csv: results/summary/ or a
studies/<name>/ copy). Prints, per verdict, what each run decided and whether the runs are
compatible (the same verdict, or 'depends on the lr' / 'inconclusive' where one differs; never
supported in one and not supported in another); per batch size each run's fitted optimum with
its interval, and whether all the intervals overlap.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd

SOFT = {"depends on the lr", "inconclusive"}


def compatible(verdicts: list[str]) -> bool:
    hard = set(verdicts) - SOFT
    return len(hard) <= 1


def overlap(intervals: list[tuple[float, float]]) -> bool | None:
    if not intervals or not all(math.isfinite(lo) and math.isfinite(hi) for lo, hi in intervals):
        return None
    return max(lo for lo, _ in intervals) <= min(hi for _, hi in intervals)


def main() -> None:
    runs = dict(arg.split("=", 1) for arg in sys.argv[1:])
    analyses = {name: json.loads((Path(folder) / "analysis.json").read_text()) for name, folder in runs.items()}
    best = {name: pd.read_csv(Path(folder) / "best_lr.csv") for name, folder in runs.items()}
    names = list(runs)
    print("| claim | " + " | ".join(names) + " | compatible |")
    print("| --- |" + " --- |" * (len(names) + 1))
    first = analyses[names[0]]["verdicts"]
    for v in first:
        found = [next((w["verdict"] for w in analyses[n]["verdicts"] if w["key"] == v["key"]), "absent") for n in names]
        print(f"| {v['claim']} | " + " | ".join(found) + f" | {'yes' if compatible(found) else 'NO'} |")
    print()
    print("| batch size | " + " | ".join(f"optimum lr, {n}" for n in names) + " | intervals overlap |")
    print("| --- |" + " --- |" * (len(names) + 1))
    for b in best[names[0]]["batch_size"]:
        rows = [best[n].set_index("batch_size").loc[b] for n in names]
        cells = [f"{r.lr_opt:.3g} [{r.lr_opt_lo:.3g}, {r.lr_opt_hi:.3g}]" if math.isfinite(r.lr_opt_lo) else f"{r.lr_opt:.3g} (no interval)" for r in rows]
        both = overlap([(r.lr_opt_lo, r.lr_opt_hi) for r in rows])
        print(f"| {b} | " + " | ".join(cells) + f" | {'n/a' if both is None else 'yes' if both else 'NO'} |")


if __name__ == "__main__":
    main()
