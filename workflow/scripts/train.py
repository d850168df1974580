"""Snakemake adapter: train every seed of one cell (see batchlab.train.job)."""

from batchlab.cells import TEMPLATE, job_fields
from batchlab.cli import exit_at_once
from batchlab.train.job import Job, run

run(
    Job(
        **job_fields(TEMPLATE.format(**dict(snakemake.wildcards.items()))),
        seeds=tuple(snakemake.params.seeds),
        train=snakemake.params.train,
        measure=snakemake.params.measure,
        optimizer=snakemake.params.optimizer,
        data_path=snakemake.input.data,
        outputs=dict(snakemake.output.items()),
        checkpoint=snakemake.params.checkpoint,
        store=snakemake.params.store,
        log_path=snakemake.log[0],
        threads=snakemake.threads,
        code=tuple(snakemake.input.code),
    )
)
exit_at_once()  # the outputs are written: skip PyTorch's 0.3 s teardown
