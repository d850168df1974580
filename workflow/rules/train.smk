# One training job per cell (batch size, learning rate, recipe); every seed of grid.seeds is
# trained inside it, together, as one vectorized ensemble.


rule train:
    input:
        data=rules.prepare.output.tensors,
        code=train_code(),
    output:
        **cell_files(),
    log:
        f"logs/train/{CELL}.log",
    benchmark:
        f"results/benchmarks/train/{CELL}.tsv"
    # long runs, and the cells the equal-updates checkpoint reads, first
    priority: train_priority
    conda:
        "../../envs/batchlab.yaml"
    # train.threads is a runtime knob: not in the job's params (batchlab.study.train_params)
    threads: config["train"]["threads"]
    resources:
        gpu=TRAIN_GPUS,
    params:
        seeds=study.seeds(config),
        train=study.train_params(config),
        measure=study.measure_params(config),
        # the cell's optimizer's own settings: changing another optimizer's retrains nothing here
        optimizer=cell_optimizer_settings,
        checkpoint=f"results/checkpoints/{CELL}.pt",
        # finished seeds, kept across reruns of the cell (Snakemake deletes its outputs first)
        store=f"results/seeds/{CELL}",
    script:
        "../scripts/train.py"
