"""S copies of one model, one per seed, as stacked tensors: every parameter has a leading seed
axis, and one forward pass runs every seed on its own batch (batched matrix products for the
mlp, grouped convolutions for the cnn).

Each seed is initialized exactly as a lone run of it would be (`torch.manual_seed(seed)`, then
`build_model`), so seed s of an ensemble starts from the same weights as seed s trained alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from batchlab.models import build_model

# evaluation chunk (images per seed per forward pass) by model: the cnn's activations are
# 32x26x26 + 64x24x24 floats per image and seed, about 0.9 MB
EVAL_CHUNK = {"mlp": 10000, "cnn": 200}


class Ensemble:
    """Stacked parameters {name: [S, ...]} of the model `name`, one slice per seed."""

    def __init__(self, model: str, seeds: list[int], params: dict[str, torch.Tensor]):
        self.model, self.seeds, self.params = model, list(seeds), params

    @classmethod
    def initialize(cls, model: str, seeds: list[int], device: torch.device) -> Ensemble:
        states = []
        for seed in seeds:
            torch.manual_seed(seed)
            states.append(build_model(model).state_dict())
        params = {k: torch.stack([s[k] for s in states]).to(device).contiguous() for k in states[0]}
        return cls(model, seeds, params)

    @property
    def size(self) -> int:
        return len(self.seeds)

    def tensors(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [S, b, ...] (each seed its own images) or [b, ...] (the same images for every
        seed) -> logits [S, b, 10]."""
        return FORWARD[self.model](self.params, x, self.size)

    def module(self, i: int) -> torch.nn.Module:
        """Seed i as a plain nn.Module holding a copy of its weights (for measurements)."""
        net = build_model(self.model).to(next(iter(self.params.values())).device)
        net.load_state_dict(self.state_of(i))
        return net

    def state_of(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i].detach().clone() for k, v in self.params.items()}

    def cpu_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.params.items()}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, v in self.params.items():
                v.copy_(state[k])


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x [S, n, in] (or [n, in], shared) @ w[S, out, in]^T + b[S, out] -> [S, n, out]."""
    if x.dim() == 2:
        return torch.matmul(x, w.transpose(1, 2)) + b.unsqueeze(1)
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


def mlp_forward(p: dict, x: torch.Tensor, size: int) -> torch.Tensor:
    h = torch.relu(_linear(x, p["0.weight"], p["0.bias"]))
    return _linear(h, p["2.weight"], p["2.bias"])


def _grouped_conv(z: torch.Tensor, w: torch.Tensor, b: torch.Tensor, size: int) -> torch.Tensor:
    return F.conv2d(z, w.reshape(-1, *w.shape[2:]), b.reshape(-1), groups=size)


def cnn_forward(p: dict, x: torch.Tensor, size: int) -> torch.Tensor:
    """The seeds' images side by side as channels, one grouped convolution for all seeds."""
    if x.dim() == 4:  # [n, 1, 28, 28], shared by every seed
        z = x.expand(x.shape[0], size, *x.shape[2:])
    else:  # [S, n, 1, 28, 28]
        z = x.transpose(0, 1).reshape(x.shape[1], size, *x.shape[3:])
    n = z.shape[0]
    z = torch.relu(_grouped_conv(z, p["0.weight"], p["0.bias"], size))
    z = torch.relu(_grouped_conv(z, p["2.weight"], p["2.bias"], size))
    z = F.max_pool2d(z, 2).reshape(n, size, -1).transpose(0, 1)  # [S, n, 64*12*12]
    z = torch.relu(_linear(z, p["6.weight"], p["6.bias"]))
    return _linear(z, p["8.weight"], p["8.bias"])


FORWARD = {"mlp": mlp_forward, "cnn": cnn_forward}


def per_seed_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each seed's batch: logits [S, b, 10], y [S, b] -> [S]."""
    size, b = y.shape
    per_sample = F.cross_entropy(logits.reshape(size * b, -1), y.reshape(-1), reduction="none")
    return per_sample.view(size, b).mean(1)


@torch.inference_mode()
def evaluate(ens: Ensemble, x: torch.Tensor, y: torch.Tensor) -> list[dict]:
    """Per seed: mean loss, accuracy and the share of the most-predicted class on (x, y), the
    same images for every seed, with one host copy."""
    size, device = ens.size, x.device
    loss_sum = torch.zeros(size, device=device, dtype=torch.float64)
    correct = torch.zeros(size, device=device, dtype=torch.int64)
    counts = torch.zeros(size, 10, device=device, dtype=torch.int64)
    chunk = EVAL_CHUNK[ens.model]
    for start in range(0, x.shape[0], chunk):
        out = ens.forward(x[start : start + chunk])  # [S, n, 10]
        target = y[start : start + chunk]
        n = target.shape[0]
        loss = F.cross_entropy(out.reshape(size * n, -1), target.repeat(size), reduction="none")
        loss_sum += loss.view(size, n).double().sum(1)
        pred = out.argmax(dim=2)
        correct += (pred == target).sum(1)
        counts.scatter_add_(1, pred, torch.ones_like(pred))
    host = torch.cat([loss_sum.view(size, 1), correct.double().view(size, 1), counts.double()], 1).cpu()
    n = x.shape[0]
    return [
        {"loss": float(row[0]) / n, "acc": float(row[1]) / n, "top_class_share": float(row[2:].max()) / n}
        for row in host
    ]
