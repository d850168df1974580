"""Snakemake adapter: every cell's outputs -> the summary files (batchlab.summary), built by
batchlab.analysis.tables."""

import json
from pathlib import Path

import pandas as pd

from batchlab import summary
from batchlab.analysis.tables import Settings, study_tables
from batchlab.cli import run_step


def main(log, input, output, params):
    chosen = {}
    for path in input.choice:  # the lrs the checkpoint chose for the equal-updates runs
        with open(path) as handle:
            chosen = json.load(handle)["chosen"]
    settings = Settings(**dict(params.items()))
    cell_paths = zip(input.metrics, input.epochs, input.losses, input.probes, strict=True)
    tables = getattr(input, "gradient", None)  # the gradient at shared weights, where measured
    gradient = pd.read_parquet(tables[0]) if tables else None
    reruns = {}  # committed reruns of this study (report.reruns), compared with it
    for analysis, best in zip(getattr(input, "rerun_analyses", []), getattr(input, "rerun_best", []), strict=True):
        with open(analysis) as handle:
            reruns[Path(analysis).parent.name] = (json.load(handle)["verdicts"], pd.read_csv(best))
    t = study_tables(cell_paths, chosen, settings, gradient, reruns)
    summary.write(t, dict(output.items()))
    log(f"aggregated {len(t.cells)} seeds of {t.cells['cell'].nunique()} cells; best lr per batch size:\n{t.best_lr.to_string(index=False)}")


run_step(lambda log: main(log, snakemake.input, snakemake.output, snakemake.params), snakemake.log[0])  # noqa: F821
