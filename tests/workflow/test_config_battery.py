"""A battery of malformed configs through the real snakemake command line: each is rejected
before any job starts, with the key and the allowed values named, and nothing written."""

import re

import pytest

from conftest import copy_workflow, snakemake

pytestmark = [pytest.mark.workflow]


def cuda_present() -> bool:
    import torch

    return torch.cuda.is_available()


BATTERY = [
    ("string that is not a number", "train:\n  epochs: three\n", r"train\.epochs: 'three' is not an integer"),
    ("float epochs", "train:\n  epochs: 2.5\n", r"train\.epochs: 2\.5 is not of type 'integer'"),
    ("zero epochs", "train:\n  epochs: 0\n", r"train\.epochs: 0 is less than the minimum of 1"),
    (
        "negative batch size",
        "grid:\n  batch_sizes: [-8]\n",
        r"grid\.batch_sizes\[0\]: -8 is less than the minimum of 1",
    ),
    (
        "zero batch size",
        "grid:\n  batch_sizes: [0]\n",
        r"grid\.batch_sizes\[0\]: 0 is less than the minimum of 1",
    ),
    (
        "batch larger than the training set",
        "grid:\n  batch_sizes: [60001]\n",
        r"grid\.batch_sizes\[0\]: 60001 is greater than the maximum of 60000",
    ),
    ("empty batch sizes", "grid:\n  batch_sizes: []\n", r"grid\.batch_sizes: must list at least one value"),
    (
        "empty learning rates",
        "grid:\n  learning_rates: []\n",
        r"grid\.learning_rates: must list at least one value",
    ),
    ("empty seeds", "grid:\n  seeds: []\n", r"grid\.seeds: must list at least one value"),
    (
        "zero learning rate",
        "grid:\n  learning_rates: [0]\n",
        r"grid\.learning_rates\[0\]: 0 is less than or equal to the minimum of 0",
    ),
    (
        "learning rate not a number",
        "grid:\n  learning_rates: [fast]\n",
        r"grid\.learning_rates\[0\]: 'fast' is not a number",
    ),
    ("grid given as a scalar", "grid:\n  seeds: 3\n", r"grid\.seeds: 3 is not of type 'array'"),
    (
        "unknown model",
        "train:\n  model: resnet\n",
        r"train\.model: 'resnet' is not one of the allowed values: 'mlp', 'cnn'",
    ),
    (
        "unknown optimizer",
        "grid:\n  optimizers: [rmsprop]\n",
        r"grid\.optimizers\[0\]: 'rmsprop' is not one of the allowed values: 'sgd', 'momentum', 'nesterov', 'adam'",
    ),
    (
        "momentum where it used to be said",
        "train:\n  momentum: 0.9\n",
        r"config key train\.momentum is no longer read: say momentum as grid\.optimizers: \[momentum\]",
    ),
    (
        "an optimizer without a window at a batch size it trains at",
        "grid:\n  optimizers: [sgd, adam]\noptimizers:\n  adam:\n    learning_rates: {1: [0.001]}\n",
        r"optimizers\.adam\.learning_rates: adam trains at batch size 4 but has no window for it",
    ),
    (
        "unknown device",
        "train:\n  device: tpu\n",
        r"train\.device: 'tpu' is not one of the allowed values: 'auto', 'cpu', 'cuda'",
    ),
    (
        "unknown key",
        "train:\n  epoch: 3\n",
        r"config key train\.epoch is not allowed in train; allowed keys: .*epochs",
    ),
    ("unknown group", "trian:\n  epochs: 3\n", r"config key trian is not allowed in \(top level\)"),
    (
        "momentum out of range",
        "optimizers:\n  momentum:\n    momentum: 1.5\n",
        r"optimizers\.momentum\.momentum: 1\.5 is greater than the maximum of 0\.999",
    ),
    (
        "negative timeout",
        "data:\n  timeout_s: -1\n",
        r"data\.timeout_s: -1 is less than or equal to the minimum of 0",
    ),
    (
        "mirrors not a list",
        "data:\n  mirrors: http://x/\n",
        r"data\.mirrors: 'http://x/' is not of type 'array'",
    ),
    (
        "duplicate batch sizes",
        "grid:\n  batch_sizes: [4, 4]\n",
        r"grid\.batch_sizes: \[4, 4\] has non-unique elements",
    ),
]


@pytest.mark.parametrize(("case", "override", "message"), BATTERY, ids=[b[0] for b in BATTERY])
def test_malformed_config_is_rejected_before_any_job(tmp_path, case, override, message):
    work = copy_workflow(tmp_path / "w")
    (work / "bad.yaml").write_text(override)
    done = snakemake(work, "--cores", "1", "--configfile", "bad.yaml")
    assert done.returncode != 0
    assert re.search(message, done.stderr), done.stderr[-3000:]
    for out in ("results", "data", "logs"):
        assert not (work / out).exists(), out


@pytest.mark.skipif("cuda_present()", reason="this machine has CUDA, so device: cuda is valid here")
def test_device_cuda_without_cuda_is_rejected(tmp_path):
    work = copy_workflow(tmp_path / "w")
    done = snakemake(work, "--cores", "1", "--config", "train={'device': 'cuda'}")
    assert done.returncode != 0
    assert "config key train.device is 'cuda' but this machine has no CUDA device" in done.stderr
    assert not (work / "results").exists() and not (work / "data").exists()
