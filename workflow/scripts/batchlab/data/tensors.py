"""MNIST as tensors: decode once into one file, load it cheaply, normalize once on the device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from batchlab.data.idx import MNIST_FILES, IdxError, check_mnist_arrays, decompress, parse_idx

# Mean and standard deviation of the MNIST training pixels (scaled to [0, 1]).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
# The validation hold-out is drawn with this seed: the same images for every cell, seed and study.
SPLIT_SEED = 1_000_003


def decode_mnist(blobs: dict[str, bytes]) -> dict[str, torch.Tensor]:
    """The four raw files (gzipped or not) -> uint8 images and int64 labels, train and test."""
    arrays = {
        key: parse_idx(decompress(blobs[key], MNIST_FILES[key][0]), MNIST_FILES[key][0])
        for key in MNIST_FILES
    }
    check_mnist_arrays(arrays)
    return {
        key: torch.from_numpy(np.array(a, dtype=np.int64 if key.endswith("labels") else np.uint8))
        for key, a in arrays.items()
    }


def read_mnist_folder(folder: str | Path) -> dict[str, torch.Tensor]:
    """decode_mnist of the four files in a folder, each gzipped (name.gz) or not (name)."""
    folder, blobs = Path(folder), {}
    for key, (name, _) in MNIST_FILES.items():
        found = [f for f in (folder / f"{name}.gz", folder / name) if f.is_file()]
        if not found:
            raise IdxError(f"MNIST file {name}.gz (or {name}) is not in {folder}")
        blobs[key] = found[0].read_bytes()
    return decode_mnist(blobs)


def load_prepared(path: str | Path) -> dict[str, torch.Tensor]:
    """Load the prepared tensor file; memory-mapped, so a job pays only for what it touches."""
    return torch.load(path, mmap=True, weights_only=True)


def validation_split(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, validation) indices: a fixed, seeded hold-out of `size` of n training images,
    both sorted. size 0: every image trains and the validation set is empty."""
    if not 0 <= size < n:
        raise ValueError(f"validation size {size} must lie in [0, {n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return perm[size:].sort().values, perm[:size].sort().values


@dataclass
class DeviceData:
    """The whole dataset resident on one device, normalized once. Selection (best lr, steps to
    a target, fates) reads the validation set; without one (val_x None) it falls back to the
    test set, and `selection_set` says so."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None

    @property
    def n_train(self) -> int:
        return self.train_x.shape[0]

    @property
    def selection_set(self) -> str:
        return "test" if self.val_x is None else "validation"

    @property
    def select_x(self) -> torch.Tensor:
        return self.test_x if self.val_x is None else self.val_x

    @property
    def select_y(self) -> torch.Tensor:
        return self.test_y if self.val_y is None else self.val_y


def to_device(
    tensors: dict[str, torch.Tensor],
    input_shape: tuple[int, ...],
    device: torch.device,
    validation_size: int = 0,
) -> DeviceData:
    """The prepared tensors on the device; `validation_size` training images held out."""

    def images(t: torch.Tensor) -> torch.Tensor:
        x = t.to(device=device).to(torch.float32).div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD)
        return x.reshape((t.shape[0], *input_shape)).contiguous()

    def labels(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=device, dtype=torch.int64)

    train_x, train_y = tensors["train_images"], tensors["train_labels"]
    train, val = validation_split(train_x.shape[0], validation_size)
    return DeviceData(
        train_x=images(train_x[train]),
        train_y=labels(train_y[train]),
        test_x=images(tensors["test_images"]),
        test_y=labels(tensors["test_labels"]),
        val_x=images(train_x[val]) if validation_size else None,
        val_y=labels(train_y[val]) if validation_size else None,
    )
