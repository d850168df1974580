"""S copies of one model, one per seed, as stacked tensors: every parameter has a leading seed
axis. For the mlp one forward pass runs every seed on its own batch (batched matrix products).
For the cnn the seeds run one after another, each as a plain module whose parameters are views
of the stacked tensors: stacked as grouped convolutions the cnn measured 1.3x to 5x slower per
seed-step on a CPU than the plain network (oneDNN's grouped convolution and its backward), so
stacking does not pay there (`make bench`).

Each seed is initialized exactly as a lone run of it would be (`torch.manual_seed(seed)`, then
`build_model`), so seed s of an ensemble starts from the same weights as seed s trained alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from batchlab.train.models import build_model

# evaluation chunk (images per seed per forward pass) by model: the cnn's activations are
# 32x26x26 + 64x24x24 floats per image and seed, about 0.9 MB
EVAL_CHUNK = {"mlp": 10000, "cnn": 1000}
# the init jitter's generator: seed + this, a stream apart from the seeds' own
JITTER_STREAM = 7_000_000
# models whose seeds run one after another (see above); the others are stacked
PER_SEED = {"cnn"}


class Ensemble:
    """Stacked parameters {name: [S, ...]} of the model `name`, one slice per seed."""

    def __init__(self, model: str, seeds: list[int], params: dict[str, torch.Tensor]):
        self.model, self.seeds, self.params = model, list(seeds), params
        self.per_seed = model in PER_SEED
        self._nets: list[torch.nn.Module] | None = None

    @classmethod
    def initialize(cls, model: str, seeds: list[int], device: torch.device, jitter: float = 0.0) -> Ensemble:
        """Each seed's initial weights; jitter > 0 multiplies each by (1 + jitter * N(0, 1)),
        drawn from a generator of the seed's own (batchlab.train.cell_config: init_jitter)."""
        states = []
        for seed in seeds:
            torch.manual_seed(seed)
            state = build_model(model).state_dict()
            if jitter:
                gen = torch.Generator().manual_seed(JITTER_STREAM + seed)
                state = {k: v + v * (jitter * torch.randn(v.shape, generator=gen)) for k, v in state.items()}
            states.append(state)
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
        if self.per_seed:
            shared = x.dim() == len(INPUT_DIMS[self.model]) + 1
            return torch.stack([net(x if shared else x[i]) for i, net in enumerate(self.nets())])
        return FORWARD[self.model](self.params, x, self.size)

    def nets(self) -> list[torch.nn.Module]:
        """Seed i as a plain module whose parameters share storage with the stacked tensors:
        an update of either is an update of both."""
        if self._nets is None:
            self._nets = []
            for i in range(self.size):
                net = build_model(self.model)
                for name, _ in list(net.named_parameters()):
                    owner, attr = net.get_submodule(name.rsplit(".", 1)[0]), name.rsplit(".", 1)[1]
                    setattr(owner, attr, torch.nn.Parameter(self.params[name][i]))
                self._nets.append(net)
        return self._nets

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


FORWARD = {"mlp": mlp_forward}
INPUT_DIMS = {"mlp": (784,), "cnn": (1, 28, 28)}


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
