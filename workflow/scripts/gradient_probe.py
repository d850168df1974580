"""Snakemake adapter: the gradient's direction at shared weights (batchlab.train.shared_weights)."""

from batchlab.cli import exit_at_once, run_step
from batchlab.train.shared_weights import Reference, run

p = snakemake.params
reference = Reference(**p.reference)
run_step(
    lambda log: run(reference, snakemake.input.data, snakemake.output.table, snakemake.threads, p.device, log),
    snakemake.log[0],
)
exit_at_once()
