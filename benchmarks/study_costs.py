"""What a finished study cost, from its own records: a bench helper for the README's table.

    .venv/bin/python benchmarks/study_costs.py FOLDER WALL_SECONDS [CORES]

FOLDER is a study's working folder (results/ and its training jobs' benchmarks in it),
WALL_SECONDS the wall time the run took (time it yourself). Prints the sum of the training jobs'
times (Snakemake's benchmarks), of their training and evaluation (train_and_eval), of their
epochs, wall ÷ (training / cores), the jobs' start-up share of the cores' time, and the median
epoch per seed at each batch size. Reads both layouts: one job per cell (seeds inside) and the
older one job per seed.
"""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import pandas as pd


def cell_costs(metrics: dict, epochs: pd.DataFrame) -> tuple[float, float, float]:
    """(train_and_eval, epochs, start-up) seconds of one job."""
    if "seeds" in metrics:  # one job per cell
        first = metrics["seeds"][0]
        startup = metrics["startup_seconds"]
        return (
            first["train_and_eval_seconds"],
            epochs["ensemble_seconds"].sum() / first["ensemble_size"],
            (startup.get("process_start_to_job") or 0.0) + startup["data_load"],
        )
    overhead = metrics["overhead_seconds"]  # one job per seed (before one job per cell)
    parts = ("process_start_to_script", "handoff", "imports", "data_load")
    return overhead["train_and_eval"], epochs["seconds"].sum(), sum(overhead.get(k) or 0.0 for k in parts)


def main() -> None:
    root, wall = Path(sys.argv[1]), float(sys.argv[2])
    cores = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    jobs = sum(pd.read_csv(f, sep="\t")["s"].iloc[0] for f in glob.glob(f"{root}/results/benchmarks/train/*.tsv"))
    train = epochs = startup = 0.0
    per_batch: dict[int, list[float]] = {}
    folders = sorted(p.parent for p in root.glob("results/runs/*/metrics.json"))
    for folder in folders:
        metrics = json.loads((folder / "metrics.json").read_text())
        table = pd.read_parquet(folder / "epochs.parquet")
        t, e, s = cell_costs(metrics, table)
        train, epochs, startup = train + t, epochs + e, startup + s
        if not metrics.get("recipe"):
            per_batch.setdefault(int(metrics["batch_size"]), []).extend(table["seconds"].tolist())
    print(
        f"{len(folders)} jobs; wall {wall:.0f} s; sum of job times {jobs:.0f} s; in training {train:.0f} s;"
        f" in epochs {epochs:.0f} s; wall / (training / {cores} cores) {wall / (train / cores):.3f};"
        f" start-up {startup:.0f} s = {startup / (wall * cores):.1%} of the cores' time"
    )
    medians = {b: round(float(pd.Series(v).median()), 3) for b, v in sorted(per_batch.items())}
    print("median epoch per seed (s) by batch size:", medians)


if __name__ == "__main__":
    main()
