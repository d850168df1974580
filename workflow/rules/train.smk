# One training job per cell: (batch size, learning rate, seed), plus the recipe of the
# remedy and Solution 2 cells (warm-up, momentum, slices).


rule train:
    input:
        data=rules.prepare.output.tensors,
        code=package("train_job", "train", "measure", "models", "data", "checkpoint"),
    output:
        losses=f"results/runs/{CELL}/losses.parquet",
        epochs=f"results/runs/{CELL}/epochs.parquet",
        probes=f"results/runs/{CELL}/probes.parquet",
        metrics=report(
            f"results/runs/{CELL}/metrics.json",
            caption="../report/cell.rst",
            category="Training cells",
        ),
    log:
        f"logs/train/{CELL}.log",
    benchmark:
        f"results/benchmarks/train/{CELL}.tsv"
    conda:
        "../../envs/batchlab.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=TRAIN_GPUS,
    params:
        train=config["train"],
        measure=config["measure"],
        checkpoint=f"results/checkpoints/{CELL}.pt",
    script:
        "../scripts/train.py"
