"""Training steps of an ensemble: every seed's forward, backward and update in one pass.

Each step takes the seeds' batches x [S, b, ...] and y [S, b] and the learning rate, and returns
the seeds' mean losses [S], left on the device. It also keeps `alive` [S] (bool, on the device):
a seed whose loss is not finite or exceeds the divergence threshold is frozen at that very step
(its update is masked out, then and ever after), so a seed's fate does not depend on when the
host next looks. Frozen weights stay exactly as they were: the masked update adds zeros.

- `fused_mlp_sgd`: plain SGD on the mlp by hand; the update W -= lr dL/dW is applied by the
  backward batched product itself (baddbmm_ with alpha = -lr), so no gradient is materialized.
- `autograd_step`: autograd through the ensemble's forward (any model), then the cell's
  optimizer (batchlab.train.optimizers) over the stacked parameters; with k splits, Solution 2: one
  forward pass, then k updates from the k slices of every batch; with micro-batches of m,
  gradient accumulation: the batch's gradient summed from its micro-batches, one update.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from batchlab.train.ensemble import Ensemble, chunk_bounds

Step = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def _still_alive(alive: torch.Tensor, loss: torch.Tensor, threshold: float) -> torch.Tensor:
    """alive &= loss <= threshold (a NaN or infinite loss compares False), in place."""
    return torch.logical_and(alive, loss <= threshold, out=alive)


DEFER = 8  # first-layer updates deferred and applied together, at batch 1 (see fused_mlp_sgd)


class FirstLayerUpdates:
    """The first layer's SGD updates W += ga^T x (ga = c dL/dh), applied at once or, with `defer` > 0,
    `defer` at a time as one rank-`defer` product; `correct` adds the effect of the deferred
    ones to a forward pre-activation h = W x + b, exactly: sum_j c_j ga_j (x_j . x)."""

    def __init__(self, w1: torch.Tensor, size: int, defer: int):
        self.w1, self.defer, self.pending = w1, defer, 0
        if defer:
            self.xs = torch.zeros(size, defer, w1.shape[2], device=w1.device)  # the deferred inputs
            self.gas = torch.zeros(size, defer, w1.shape[1], device=w1.device)  # and c * dL/dh

    def correct(self, h: torch.Tensor, x: torch.Tensor) -> None:
        j = self.pending
        if j:
            h.baddbmm_(torch.bmm(x, self.xs[:, :j].transpose(1, 2)), self.gas[:, :j])

    def apply(self, ga: torch.Tensor, x: torch.Tensor) -> None:
        """ga: c * dL/dh, the step size already in it."""
        if not self.defer:
            self.w1.baddbmm_(ga.transpose(1, 2), x)
            return
        j = self.pending
        self.xs[:, j : j + 1].copy_(x)
        self.gas[:, j : j + 1].copy_(ga)
        self.pending = j + 1
        if self.pending == self.defer:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.w1.baddbmm_(self.gas[:, : self.pending].transpose(1, 2), self.xs[:, : self.pending])
            self.pending = 0

    def settled(self) -> bool:
        """Nothing deferred: a window may end here."""
        return self.pending == 0


def fused_mlp_sgd(
    ens: Ensemble, alive: torch.Tensor, threshold: float, batch_size: int = 0, masked: bool = True, defer: bool = True
) -> Step:
    """Plain SGD on the stacked mlp, by hand.

    At batch 1 with several seeds the step is bound by memory traffic over the first layer
    (S x 256 x 784 floats, beyond the L2 cache from S = 2 up: read by the forward product, read
    and written by the rank-1 update). There the first layer's updates are deferred
    (FirstLayerUpdates) and the forward pass of a step adds their effect exactly. The arithmetic
    is that of sequential SGD up to float rounding (tested); `step.flush()` applies what is
    deferred before anything reads the weights, and `step.settled()` says when nothing is: a
    window that ends on time ends only there, so where windows end never changes a result.
    masked=False: as in autograd_step. defer=False: never defer (a step captured in a CUDA
    graph holds no Python state: batchlab.train.graphs). lr: a float, or a 0-dim tensor on the device
    (read by the captured step at each replay).
    """
    p = ens.params
    w1, b1, w2, b2 = p["0.weight"], p["0.bias"], p["2.weight"], p["2.bias"]
    # views made once (the updates are in place): at batch 1 every op of a step counts
    w1t, w2t, b1u, b2u = w1.transpose(1, 2), w2.transpose(1, 2), b1.unsqueeze(1), b2.unsqueeze(1)
    minus_one: dict[tuple, torch.Tensor] = {}
    relu_backward = torch.ops.aten.threshold_backward
    first = FirstLayerUpdates(w1, ens.size, DEFER if defer and batch_size == 1 and ens.size > 1 else 0)

    @torch.no_grad()
    def step(x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        h = torch.baddbmm(b1u, x, w1t)
        first.correct(h, x)
        a = torch.relu(h)
        logp = torch.log_softmax(torch.baddbmm(b2u, a, w2t), dim=2)
        y3 = y.unsqueeze(2)
        loss = logp.gather(2, y3).mean(1).neg_().view(-1)
        if y3.shape not in minus_one:
            minus_one[y3.shape] = torch.full(y3.shape, -1.0, device=x.device)
        g = logp.exp_().scatter_add_(2, y3, minus_one[y3.shape])  # b * dL/dlogits of the mean loss
        step_size = -lr / x.shape[1]
        if masked:
            ok = _still_alive(alive, loss, threshold)
            g.mul_(ok.view(-1, 1, 1) * step_size).nan_to_num_(0.0)  # frozen seeds: 0
        else:
            g.mul_(step_size)
        ga = relu_backward(torch.bmm(g, w2), a, 0)  # -lr dL/dh, before w2 moves
        w2.baddbmm_(g.transpose(1, 2), a)
        b2.add_(g.sum(1))
        b1.add_(ga.sum(1))
        first.apply(ga, x)
        return loss

    step.flush, step.settled, step.masked, step.graphable = first.flush, first.settled, masked, not first.defer
    return step


def _stacked(grads: list[list[tuple]]) -> list[list[torch.Tensor]]:
    """grads[t][j][i] (seed t, slice j, parameter i) -> [j][i], stacked over the seeds like the
    parameters (a view for a single seed)."""
    out = []
    for by_seed in zip(*grads, strict=True):  # slice j of every seed
        out.append([g[0].unsqueeze(0) if len(g) == 1 else torch.stack(g) for g in zip(*by_seed, strict=True)])
    return out


def _no_flush() -> None:
    """Steps that apply every update at once have nothing deferred."""


def _settled() -> bool:
    return True


class EnsembleGradients:
    """The gradients of an ensemble's training loss (autograd_step's), by slice: grads[j][i]
    is slice j's gradient of parameter i, stacked over the seeds (one slice but for Solution 2).
    Stacked models take one gradient of the sum of the seeds' losses; per-seed models each
    seed's alone."""

    def __init__(self, ens: Ensemble, splits: int = 1):
        self.ens, self.splits = ens, splits
        self.params = [p.requires_grad_(not ens.per_seed) for p in ens.tensors()]
        self.nets = ens.nets() if ens.per_seed else []

    def slice_grads(self, per_sample: torch.Tensor, targets: list[torch.Tensor]) -> list[tuple]:
        """The gradient of each slice's mean loss (summed over the seeds of per_sample)."""
        slices = [s for s in torch.tensor_split(per_sample, self.splits, dim=-1) if s.shape[-1]]
        return [
            torch.autograd.grad(s.mean(-1).sum(), targets, retain_graph=j < len(slices) - 1)
            for j, s in enumerate(slices)
        ]

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[list[torch.Tensor]], torch.Tensor]:
        """grads[j][i], and the seeds' per-sample losses [S, b], detached."""
        ens = self.ens
        if ens.per_seed:
            per_sample = [F.cross_entropy(ens.forward_one(t, x[t], train=True), y[t], reduction="none") for t in range(ens.size)]
            grads = [self.slice_grads(loss, list(net.parameters())) for loss, net in zip(per_sample, self.nets, strict=True)]
            return _stacked(grads), torch.stack([loss.detach() for loss in per_sample])
        size, b = y.shape
        logits = ens.forward(x, train=True).reshape(size * b, -1)
        per_sample = F.cross_entropy(logits, y.reshape(-1), reduction="none").view(size, b)
        return [list(g) for g in self.slice_grads(per_sample, self.params)], per_sample.detach()

    def accumulated(self, x: torch.Tensor, y: torch.Tensor, micro_batch: int) -> tuple[list[list[torch.Tensor]], torch.Tensor]:
        """As a call, the batch's gradient summed from its micro-batches' (one slice), each
        weighted by its share of the batch."""
        total, losses, b = None, [], y.shape[1]
        for lo, hi in chunk_bounds(b, micro_batch):
            grads, per_sample = self(x[:, lo:hi], y[:, lo:hi])
            part = [g.mul_((hi - lo) / b) for g in grads[0]]
            total = part if total is None else [t.add_(g) for t, g in zip(total, part, strict=True)]
            losses.append(per_sample)
        return [total], torch.cat(losses, 1)


def autograd_step(
    ens: Ensemble,
    optimizer,
    alive: torch.Tensor,
    threshold: float,
    splits: int = 1,
    masked: bool = True,
    micro_batch: int = 0,
) -> Step:
    """Autograd through the ensemble's forward, then the optimizer. With splits = k > 1, the original
    post's "Solution 2", done so that it works: one forward pass over the batch, then k
    updates, the j-th from the mean loss of the j-th k-th of every seed's batch.

    The naive version (backward and `optimizer.step()` k times on one graph) fails in PyTorch:
    the first step changes the weights in place, and they are saved in the graph for the later
    backward passes. Here all k gradients are taken from the graph first (retain_graph), then
    applied in turn. They are therefore all gradients at the same weights: for plain SGD the k
    updates sum to lr * sum_j g_j = (k * lr) * g_batch, one full-batch step with k times the lr
    (exact for equal slices); with momentum the k steps build the velocity in between, so the
    equivalence is no longer exact. The returned loss is the batch's mean loss before the updates.

    micro_batch = m > 0: gradient accumulation, how a huge batch is reached when memory is the
    limit. Each micro-batch of m images is run forward and backward alone (its graph freed
    before the next), its gradient weighted by its share of the batch and summed: one update of
    the whole batch, the same as without accumulation up to float rounding, except that
    BatchNorm then normalizes over each micro-batch (ghost BatchNorm with virtual batches of m).

    Stacked models take one gradient of the sum of the seeds' losses (the seeds are independent,
    so it is every seed's own gradient); per-seed models (the cnn) take each seed's alone.

    masked=False: no seed is masked out (`alive` is left alone) and the update is the plain one,
    a pass less over every weight; for a group of one seed, whose trainer rewinds a window in
    which the seed diverged instead (batchlab.train.loop).
    """
    gradients = EnsembleGradients(ens, splits)
    stats = ens.buffer_tensors() if masked else []  # BatchNorm's running statistics

    def step(x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        before = [t.clone() for t in stats]
        with torch.enable_grad():
            grads, per_sample = gradients.accumulated(x, y, micro_batch) if micro_batch else gradients(x, y)
        loss = per_sample.mean(1)
        if not masked:
            for grad in grads:
                optimizer.step_all(grad, lr)
            return loss
        ok = _still_alive(alive, loss, threshold)
        for now, old in zip(stats, before, strict=True):  # a frozen seed's statistics stay too
            now.copy_(torch.where(ok.view(-1, *[1] * (now.dim() - 1)), now, old))
        for grad in grads:
            optimizer.step(grad, lr, ok)
        return loss

    step.flush, step.settled, step.masked = _no_flush, _settled, masked
    step.graphable = getattr(optimizer, "graphable", False)
    return step
