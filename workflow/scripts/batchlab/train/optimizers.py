"""The optimizers of a cell's ensemble, each stepping every seed's stacked parameters at once.

Every parameter has a leading seed axis ([S, ...], batchlab.train.ensemble), so one step over the
stacked tensors is S independent steps: the element-wise optimizers (SGD, momentum, Adam,
AdamW) are exactly per-seed, and the layer-wise ones (LARS, LAMB) take their norms per seed and
per layer (over every axis but the first), never over the stack.

- `sgd`: plain SGD (with L2 weight decay), by hand: a masked update needs no state.
- `momentum`, `nesterov`, `adam`, `adamw`: torch.optim.SGD (heavy ball or Nesterov, dampening 0),
  torch.optim.Adam and torch.optim.AdamW, stepping the stacked tensors with `foreach`.
- `lars`, `lamb`: not in torch.optim; written out below from the papers (You et al. 2017,
  algorithm 1 with momentum; You et al. 2019, algorithm 2 with phi the identity).

The trust ratios of LARS and LAMB apply to the weight matrices; biases take the plain update
(ratio 1) and no weight decay, as in both papers' experiments.

Each optimizer has the same four calls: `step(grads, lr, alive)` updates the seeds marked alive
and leaves the others exactly as they were; `step_all(grads, lr)` updates every seed; `buffers`
(its state, tensors updated in place: a trainer may copy them back to rewind); `state()` and
`load()` for checkpoints. `graphable`: its step may be captured in a CUDA graph (batchlab.train.graphs):
the lr may be a 0-dim tensor on the device and nothing reads a value back to the host. The
torch.optim ones are not (SGD's foreach update takes the lr as a host number).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from batchlab.train.settings import OPTIMIZERS, OptimizerSettings


def _seed_view(alive: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return alive.view(-1, *([1] * (p.dim() - 1)))


class PlainSGD:
    """p -= lr * (g + wd * p); a frozen seed's gradient is zeroed, so it does not move."""

    graphable = True

    def __init__(self, params: list[torch.Tensor], s: OptimizerSettings):
        self.params, self.weight_decay, self.buffers = params, s.weight_decay, []

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], lr: float, alive: torch.Tensor) -> None:
        for p, g in zip(self.params, grads, strict=True):
            frozen = ~_seed_view(alive, p)
            g = g.masked_fill_(frozen, 0.0)  # in place: autograd's gradient is ours
            if self.weight_decay:
                g = g.add_(p.masked_fill(frozen, 0.0), alpha=self.weight_decay)
            p.sub_(g.mul_(lr))

    @torch.no_grad()
    def step_all(self, grads: list[torch.Tensor], lr: float) -> None:
        if self.weight_decay:
            grads = [g.add_(p, alpha=self.weight_decay) for p, g in zip(self.params, grads, strict=True)]
        torch._foreach_mul_(grads, lr)
        torch._foreach_sub_(self.params, grads)

    def state(self) -> list[torch.Tensor]:
        return []

    def load(self, state: list[torch.Tensor]) -> None:
        pass


class Masked:
    """The shared calls of the optimizers with state: a masked step is the unmasked one with the
    frozen seeds' parameters put back afterwards (their own state moves on, unused)."""

    params: list[torch.Tensor]
    buffers: list[torch.Tensor]
    graphable = True

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], lr: float, alive: torch.Tensor) -> None:
        kept = [p.clone() for p in self.params]
        self.step_all([g.nan_to_num_(0.0, 0.0, 0.0) for g in grads], lr)
        for p, old in zip(self.params, kept, strict=True):
            p.copy_(torch.where(_seed_view(alive, p), p, old))

    def step_all(self, grads: list[torch.Tensor], lr: float) -> None:
        raise NotImplementedError

    def state(self) -> list[torch.Tensor]:
        return [b.detach().cpu().clone() for b in self.buffers]

    @torch.no_grad()
    def load(self, state: list[torch.Tensor]) -> None:
        for buf, saved in zip(self.buffers, state, strict=True):
            buf.copy_(saved)


class TorchOptimizer(Masked):
    """A torch.optim optimizer over the stacked tensors. Its state is made at construction (one
    step with zero gradients and lr 0, then zeroed, which is the state of a fresh optimizer) so
    that `buffers` are fixed tensors from the first step on."""

    graphable = False

    def __init__(self, params: list[torch.Tensor], make: Callable[[list[torch.Tensor]], torch.optim.Optimizer]):
        self.params = params
        self.leaves = [p.detach() for p in params]  # the same storage, as leaves torch.optim accepts
        self.opt = make(self.leaves)
        self._apply([torch.zeros_like(p) for p in params], 0.0)
        with torch.no_grad():
            for state in self.opt.state.values():
                for value in state.values():
                    if torch.is_tensor(value):
                        value.zero_()
        self.buffers = [v for p in self.leaves for _, v in sorted(self.opt.state[p].items()) if torch.is_tensor(v)]

    def _apply(self, grads: list[torch.Tensor], lr: float) -> None:
        for p, g in zip(self.leaves, grads, strict=True):
            p.grad = g
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()
        for p in self.leaves:
            p.grad = None

    @torch.no_grad()
    def step_all(self, grads: list[torch.Tensor], lr: float) -> None:
        self._apply(grads, lr)


def _layer_norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each seed's norm of each tensor: [S, 1, ...] broadcastable against it."""
    return [t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1))) for t in tensors]


def trust_ratio(numerator: torch.Tensor, denominator: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
    """coefficient * numerator / denominator, and 1 where either norm is zero (both papers)."""
    ratio = coefficient * numerator / denominator
    return torch.where((numerator > 0) & (denominator > 0), ratio, torch.ones_like(ratio))


def is_weight(p: torch.Tensor) -> bool:
    """A stacked weight matrix or kernel (a seed's slice has two or more axes), not a bias."""
    return p.dim() >= 3


class LARS(Masked):
    """Layer-wise adaptive rate scaling with momentum (You et al. 2017, algorithm 1), per seed
    and per weight: local lr = eta ||w|| / (||g|| + wd ||w||); v = m v + lr * local lr * (g + wd w);
    w -= v. Biases: v = m v + lr g."""

    def __init__(self, params: list[torch.Tensor], s: OptimizerSettings):
        self.params, self.s = params, s
        self.buffers = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step_all(self, grads: list[torch.Tensor], lr: float) -> None:
        s = self.s
        for p, g, v in zip(self.params, grads, self.buffers, strict=True):
            if is_weight(p):
                (w_norm,), (g_norm,) = _layer_norms([p]), _layer_norms([g])
                local = trust_ratio(w_norm, g_norm + s.weight_decay * w_norm, s.trust_coefficient)
                g = (g.add(p, alpha=s.weight_decay) if s.weight_decay else g).mul_(local)
            v.mul_(s.momentum).add_(g.mul_(lr))
            p.sub_(v)


class LAMB(Masked):
    """Layer-wise adaptive moments (You et al. 2019, algorithm 2): Adam's bias-corrected moments,
    r = m^ / (sqrt(v^) + eps) + wd w, then per seed and per weight w -= lr ||w|| / ||r|| r.
    Biases: w -= lr r (no weight decay)."""

    def __init__(self, params: list[torch.Tensor], s: OptimizerSettings):
        self.params, self.s = params, s
        # steps taken, in float64: the bias corrections 1 - beta^t without float32's rounding
        self.count = torch.zeros((), device=params[0].device, dtype=torch.float64)
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.buffers = [self.count, *self.m, *self.v]

    @torch.no_grad()
    def step_all(self, grads: list[torch.Tensor], lr: float) -> None:
        s = self.s
        self.count.add_(1)
        c1, c2 = 1 - s.beta1**self.count, 1 - s.beta2**self.count
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m.mul_(s.beta1).add_(g, alpha=1 - s.beta1)
            v.mul_(s.beta2).addcmul_(g, g, value=1 - s.beta2)
            r = (m / c1) / ((v / c2).sqrt_().add_(s.eps))
            if is_weight(p):
                if s.weight_decay:
                    r.add_(p, alpha=s.weight_decay)
                (w_norm,), (r_norm,) = _layer_norms([p]), _layer_norms([r])
                r.mul_(trust_ratio(w_norm, r_norm))
            p.sub_(r.mul_(lr))


def build_optimizer(params: list[torch.Tensor], s: OptimizerSettings):
    """The optimizer `s.name` over the stacked parameters."""
    if s.name == "sgd":
        return PlainSGD(params, s)
    if s.name in ("momentum", "nesterov"):
        return TorchOptimizer(
            params, lambda ps: torch.optim.SGD(
                ps, lr=0.0, momentum=s.momentum, nesterov=s.name == "nesterov", weight_decay=s.weight_decay, foreach=True
            ),
        )  # fmt: skip
    if s.name in ("adam", "adamw"):
        kind = torch.optim.Adam if s.name == "adam" else torch.optim.AdamW
        return TorchOptimizer(
            params, lambda ps: kind(ps, lr=0.0, betas=(s.beta1, s.beta2), eps=s.eps, weight_decay=s.weight_decay, foreach=True)
        )
    if s.name == "lars":
        return LARS(params, s)
    if s.name == "lamb":
        return LAMB(params, s)
    raise ValueError(f"unknown optimizer {s.name!r}; choose one of {', '.join(OPTIMIZERS)}")
