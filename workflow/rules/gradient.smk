# The gradient's direction at shared weights: one reference run, and at each of its epoch ends
# the cosine of two independent mini-batch gradients for batch sizes from 1 to 16,384.


rule gradient_probe:
    input:
        data=rules.prepare.output.tensors,
        code=code("gradient_probe.py"),
    output:
        table="results/gradient/shared_weights.parquet",
    log:
        "logs/gradient_probe.log",
    benchmark:
        "results/benchmarks/gradient_probe.tsv"
    conda:
        "../../envs/batchlab.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=TRAIN_GPUS,
    params:
        reference=study.gradient_reference(config),
        device=config["train"]["device"],
    script:
        "../scripts/gradient_probe.py"
