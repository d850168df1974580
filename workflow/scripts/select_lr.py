"""Snakemake adapter (a checkpoint): the lr the grid selects at each equal-updates batch size,
from its grid cells' metrics.json (see batchlab.analysis.selection)."""

import json
from pathlib import Path

from batchlab.analysis.selection import best_lr_of_cells
from batchlab.cli import run_step
from batchlab.io import write_json


def main(log, input, output, params):
    cells = [json.loads(Path(p).read_text()) for p in input.metrics]
    chosen = {}
    for b in params.batch_sizes:
        chosen[str(b)] = best_lr_of_cells(c for c in cells if int(c["batch_size"]) == b)
        log(f"batch {b}: the grid selects lr {chosen[str(b)]} (validation accuracy, failed settings left out)")
    write_json(output.choice, {"chosen": chosen})


run_step(lambda log: main(log, snakemake.input, snakemake.output, snakemake.params), snakemake.log[0])  # noqa: F821
