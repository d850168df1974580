"""Snakemake adapter: decode the IDX files into one tensor file (see batchlab.data.tensors)."""

from pathlib import Path

import torch

from batchlab.cli import run_step
from batchlab.data.idx import MNIST_FILES
from batchlab.data.tensors import decode_mnist
from batchlab.io import atomic_path


def main(log, input, output):
    tensors = decode_mnist({key: Path(getattr(input, key)).read_bytes() for key in MNIST_FILES})
    with atomic_path(output.tensors) as tmp:
        torch.save(tensors, tmp)
    log(", ".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in tensors.items()))


run_step(lambda log: main(log, snakemake.input, snakemake.output), snakemake.log[0])  # noqa: F821
