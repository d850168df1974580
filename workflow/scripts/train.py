"""Snakemake adapter: train one cell (see batchlab.train_job), warm-started when it can be.

This process imports no PyTorch: batchlab.warm hands the job to a child forked from a server
that has imported it once for all jobs, or runs it here when that is off or fails.
"""

from batchlab.cli import process_age_s

AGE_AT_START = process_age_s()

from batchlab import warm  # noqa: E402

status = warm.run(
    "batchlab.train_job",
    "run",
    {
        "log_path": snakemake.log[0],  # noqa: F821 (snakemake is injected by the script directive)
        "wildcards": dict(snakemake.wildcards.items()),  # noqa: F821
        "train": snakemake.params.train,  # noqa: F821
        "measure": snakemake.params.measure,  # noqa: F821
        "checkpoint": snakemake.params.checkpoint,  # noqa: F821
        "data_path": snakemake.input.data,  # noqa: F821
        "outputs": dict(snakemake.output.items()),  # noqa: F821
        "threads": snakemake.threads,  # noqa: F821
    },
    startup={"process_age_s": AGE_AT_START},
)
warm.exit_with(status)
