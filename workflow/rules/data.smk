# MNIST: fetch the four canonical files (verified by MD5), then decode them into one tensor file.


# light, and compute nodes often have no internet: on a cluster these run where Snakemake runs
localrules:
    fetch,
    prepare,


rule fetch:
    input:
        code=code("fetch.py"),
    output:
        train_images="data/mnist/raw/train-images-idx3-ubyte.gz",
        train_labels="data/mnist/raw/train-labels-idx1-ubyte.gz",
        test_images="data/mnist/raw/t10k-images-idx3-ubyte.gz",
        test_labels="data/mnist/raw/t10k-labels-idx1-ubyte.gz",
        checksums="data/mnist/raw/checksums.json",
    log:
        "logs/fetch.log",
    conda:
        "../../envs/batchlab.yaml"
    params:
        mirrors=config["data"]["mirrors"],
        timeout_s=config["data"]["timeout_s"],
        retries=config["data"]["retries"],
    script:
        "../scripts/fetch.py"


rule prepare:
    input:
        train_images=rules.fetch.output.train_images,
        train_labels=rules.fetch.output.train_labels,
        test_images=rules.fetch.output.test_images,
        test_labels=rules.fetch.output.test_labels,
        code=code("prepare.py"),
    output:
        tensors="data/mnist/mnist.pt",
    log:
        "logs/prepare.log",
    conda:
        "../../envs/batchlab.yaml"
    script:
        "../scripts/prepare.py"
