"""S copies of one model, one per seed, as stacked tensors: every parameter has a leading seed
axis. For the mlp one forward pass runs every seed on its own batch (batched matrix products).
For the cnn the seeds run one after another, each as a plain module whose parameters are views
of the stacked tensors: stacked as grouped convolutions the cnn measured 1.3x to 5x slower per
seed-step on a CPU than the plain network (oneDNN's grouped convolution and its backward), so
stacking does not pay there (`make bench`).

Each seed is initialized exactly as a lone run of it would be (`torch.manual_seed(seed)`, then
`build_model`), so seed s of an ensemble starts from the same weights as seed s trained alone.

BatchNorm models (mlp_bn, cnn_bn) also keep each seed's running statistics, stacked the same way
(`buffers`, never touched by the optimizer). `forward(x, train=True)` normalizes with each seed's
own batch statistics and updates its running ones; with `ghost` = g, over virtual batches of g
images inside the batch, one after another (ghost BatchNorm, Hoffer et al. 2017). Evaluation
(train=False) uses the running statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from batchlab.train.models import INPUT_SHAPE, build_model

# evaluation chunk (images per seed per forward pass) by model: the cnn's activations are
# 32x26x26 + 64x24x24 floats per image and seed, about 0.9 MB
EVAL_CHUNK = {"mlp": 10000, "cnn": 1000, "mlp_bn": 10000, "cnn_bn": 1000}
# the init jitter's generator: seed + this, a stream apart from the seeds' own
JITTER_STREAM = 7_000_000
# models whose seeds run one after another (see above); the others are stacked
PER_SEED = {"cnn", "cnn_bn"}
BN_MOMENTUM, BN_EPS = 0.1, 1e-5  # torch.nn.BatchNorm's defaults


class Ensemble:
    """Stacked parameters {name: [S, ...]} of the model `name`, one slice per seed, and its
    stacked buffers (BatchNorm's running statistics; none for the mlp and the cnn)."""

    def __init__(self, model: str, seeds: list[int], params: dict[str, torch.Tensor], buffers: dict | None = None):
        self.model, self.seeds, self.params, self.buffers = model, list(seeds), params, buffers or {}
        self.per_seed = model in PER_SEED
        self.ghost = 0  # images per virtual batch of BatchNorm in training (0: the whole batch)
        self._nets: list[torch.nn.Module] | None = None

    @classmethod
    def from_state(cls, model: str, seeds: list[int], state: dict[str, torch.Tensor]) -> Ensemble:
        """An ensemble from a stacked state (cpu_state's), split into parameters and buffers."""
        names = {name for name, _ in build_model(model).named_buffers()}
        params = {k: v for k, v in state.items() if k not in names}
        return cls(model, seeds, params, {k: v for k, v in state.items() if k in names})

    @classmethod
    def initialize(cls, model: str, seeds: list[int], device: torch.device, jitter: float = 0.0) -> Ensemble:
        """Each seed's initial weights; jitter > 0 multiplies each by (1 + jitter * N(0, 1)),
        drawn from a generator of the seed's own (batchlab.train.cell_config: init_jitter)."""
        states = []
        for seed in seeds:
            torch.manual_seed(seed)
            net = build_model(model)
            state = dict(net.named_parameters())
            if jitter:
                gen = torch.Generator().manual_seed(JITTER_STREAM + seed)
                state = {k: v + v * (jitter * torch.randn(v.shape, generator=gen)) for k, v in state.items()}
            states.append((state, dict(net.named_buffers())))

        def stacked(j: int) -> dict[str, torch.Tensor]:
            return {k: torch.stack([s[j][k].detach() for s in states]).to(device).contiguous() for k in states[0][j]}

        return cls(model, seeds, stacked(0), stacked(1))

    @property
    def size(self) -> int:
        return len(self.seeds)

    def tensors(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def forward(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        """x: [S, b, ...] (each seed its own images) or [b, ...] (the same images for every
        seed) -> logits [S, b, 10]. train: BatchNorm in training mode (batch statistics, over
        virtual batches of self.ghost images, the running ones updated)."""
        shared = x.dim() == len(INPUT_SHAPE[self.model]) + 1
        if self.per_seed:
            return torch.stack([self.forward_one(i, x if shared else x[i], train) for i in range(self.size)])
        if train and self.buffers and self.ghost:
            axis = 0 if shared else 1
            parts = [x.narrow(axis, a, b - a) for a, b in chunk_bounds(x.shape[axis], self.ghost)]
            return torch.cat([FORWARD[self.model](self.params, self.buffers, part, train) for part in parts], dim=1)
        return FORWARD[self.model](self.params, self.buffers, x, train)

    def forward_one(self, i: int, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        """Seed i of a per-seed model (the cnn) on its images x [b, ...] -> logits [b, 10]."""
        net = self.nets()[i]
        net.train(train)
        if train and self.buffers and self.ghost:
            return torch.cat([net(x[a:b]) for a, b in chunk_bounds(x.shape[0], self.ghost)])
        return net(x)

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
                for name, _ in list(net.named_buffers()):  # updated in place: the stacked ones
                    owner, attr = net.get_submodule(name.rsplit(".", 1)[0]), name.rsplit(".", 1)[1]
                    owner.register_buffer(attr, self.buffers[name][i])
                self._nets.append(net)
        return self._nets

    def module(self, i: int) -> torch.nn.Module:
        """Seed i as a plain nn.Module holding a copy of its weights (for measurements)."""
        net = build_model(self.model).to(next(iter(self.params.values())).device)
        net.load_state_dict(self.state_of(i))
        return net

    def state(self) -> dict[str, torch.Tensor]:
        """Every stacked tensor of the model, parameters and buffers, by its name."""
        return {**self.params, **self.buffers}

    def buffer_tensors(self) -> list[torch.Tensor]:
        return list(self.buffers.values())

    def state_of(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i].detach().clone() for k, v in self.state().items()}

    def cpu_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.state().items()}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, v in self.state().items():
                v.copy_(state[k])


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x [S, n, in] (or [n, in], shared) @ w[S, out, in]^T + b[S, out] -> [S, n, out]."""
    if x.dim() == 2:
        return torch.matmul(x, w.transpose(1, 2)) + b.unsqueeze(1)
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


def chunk_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """[start, end) of the virtual batches of `size` in a batch of n; a last one of a single
    image joins the one before it (BatchNorm cannot normalize one image)."""
    bounds = [(a, min(a + size, n)) for a in range(0, n, size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def _batch_norm(h: torch.Tensor, p: dict, buffers: dict, name: str, train: bool) -> torch.Tensor:
    """BatchNorm of each seed's features h [S, n, C] over its n images (train: batch statistics,
    and the running ones updated as torch.nn.BatchNorm1d does) or with its running statistics."""
    mean_r, var_r = buffers[f"{name}.running_mean"], buffers[f"{name}.running_var"]
    if train:
        n = h.shape[1]
        mean, var = h.mean(1, keepdim=True), h.var(1, unbiased=False, keepdim=True)
        with torch.no_grad():
            mean_r.lerp_(mean.squeeze(1), BN_MOMENTUM)
            var_r.lerp_(var.squeeze(1) * (n / (n - 1)), BN_MOMENTUM)
            buffers[f"{name}.num_batches_tracked"].add_(1)
    else:
        mean, var = mean_r.unsqueeze(1), var_r.unsqueeze(1)
    return (h - mean) * torch.rsqrt(var + BN_EPS) * p[f"{name}.weight"].unsqueeze(1) + p[f"{name}.bias"].unsqueeze(1)


def mlp_forward(p: dict, buffers: dict, x: torch.Tensor, train: bool) -> torch.Tensor:
    h = torch.relu(_linear(x, p["0.weight"], p["0.bias"]))
    return _linear(h, p["2.weight"], p["2.bias"])


def mlp_bn_forward(p: dict, buffers: dict, x: torch.Tensor, train: bool) -> torch.Tensor:
    h = _linear(x, p["0.weight"], p["0.bias"])
    if h.dim() == 2:  # the same images for every seed: each seed normalizes them its own way
        h = h.unsqueeze(0).expand(len(p["0.weight"]), -1, -1)
    h = torch.relu(_batch_norm(h, p, buffers, "1", train))
    return _linear(h, p["3.weight"], p["3.bias"])


FORWARD = {"mlp": mlp_forward, "mlp_bn": mlp_bn_forward}


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
