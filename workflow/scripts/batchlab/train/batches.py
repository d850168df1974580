"""Every seed's batches of an epoch, sliced from its own shuffled order."""

from __future__ import annotations

import torch

from batchlab.data.tensors import DeviceData

GATHER_SAMPLES = 4096  # images per seed gathered at once from the shuffled order


class Batches:
    """Every seed's batches of one epoch, gathered GATHER_SAMPLES per seed at a time into one
    reused buffer (never a shuffled copy of the whole dataset per seed)."""

    def __init__(self, data: DeviceData, order: torch.Tensor, batch_size: int):
        self.data, self.order, self.b = data, order, batch_size
        self.steps_per_gather = max(1, GATHER_SAMPLES // batch_size)
        size, width = order.shape[0], self.steps_per_gather * batch_size
        self.x = torch.empty((size * width, *data.train_x.shape[1:]), device=data.train_x.device)
        self.y = torch.empty(size * width, dtype=data.train_y.dtype, device=data.train_y.device)
        self.loaded = -1

    def __call__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        chunk, j = divmod(i, self.steps_per_gather)
        if chunk != self.loaded:
            self._load(chunk)
        return self.views[j]

    def _load(self, chunk: int) -> None:
        first = chunk * self.steps_per_gather * self.b
        idx = self.order[:, first : first + self.steps_per_gather * self.b]
        size, width = idx.shape
        torch.index_select(self.data.train_x, 0, idx.reshape(-1), out=self.x[: size * width])
        torch.index_select(self.data.train_y, 0, idx.reshape(-1), out=self.y[: size * width])
        x = self.x[: size * width].view(size, width, *self.x.shape[1:])
        y = self.y[: size * width].view(size, width)
        self.views = [(x[:, lo : lo + self.b], y[:, lo : lo + self.b]) for lo in range(0, width, self.b)]
        self.loaded = chunk
