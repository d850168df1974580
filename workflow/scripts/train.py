"""Snakemake adapter: train every seed of one cell (see batchlab.train_job)."""

from batchlab.cli import exit_at_once
from batchlab.train_job import Job, run

run(
    Job(
        cell=f"bs{snakemake.wildcards.bs}_lr{snakemake.wildcards.lr}{snakemake.wildcards.recipe}",
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
