"""MNIST as tensors: decode once into one file, load it cheaply, normalize once on the device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from batchlab.idx import MNIST_FILES, check_mnist_arrays, decompress, parse_idx

# Mean and standard deviation of the MNIST training pixels (scaled to [0, 1]).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


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


def load_prepared(path: str | Path) -> dict[str, torch.Tensor]:
    """Load the prepared tensor file; memory-mapped, so a job pays only for what it touches."""
    return torch.load(path, mmap=True, weights_only=True)


@dataclass
class DeviceData:
    """The whole dataset resident on one device, normalized once."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def n_train(self) -> int:
        return self.train_x.shape[0]


def to_device(
    tensors: dict[str, torch.Tensor], input_shape: tuple[int, ...], device: torch.device
) -> DeviceData:
    def images(t: torch.Tensor) -> torch.Tensor:
        x = t.to(device=device).to(torch.float32).div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD)
        return x.reshape((t.shape[0], *input_shape)).contiguous()

    return DeviceData(
        train_x=images(tensors["train_images"]),
        train_y=tensors["train_labels"].to(device=device, dtype=torch.int64),
        test_x=images(tensors["test_images"]),
        test_y=tensors["test_labels"].to(device=device, dtype=torch.int64),
    )
