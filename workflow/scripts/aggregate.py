"""Snakemake adapter: every cell's outputs -> the summary files (batchlab.summary), built by
batchlab.analysis.tables."""

import json

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
    t = study_tables(cell_paths, chosen, settings)
    summary.write(t, dict(output.items()))
    log(f"aggregated {len(t.cells)} seeds of {t.cells['cell'].nunique()} cells; best lr per batch size:\n{t.best_lr.to_string(index=False)}")


run_step(lambda log: main(log, snakemake.input, snakemake.output, snakemake.params), snakemake.log[0])  # noqa: F821
