"""Training steps of an ensemble: every seed's forward, backward and update in one pass.

Each step takes the seeds' batches x [S, b, ...] and y [S, b] and the learning rate, and returns
the seeds' mean losses [S], left on the device. It also keeps `alive` [S] (bool, on the device):
a seed whose loss is not finite or exceeds the divergence threshold is frozen at that very step
(its update is masked out, then and ever after), so a seed's fate does not depend on when the
host next looks. Frozen weights stay exactly as they were: the masked update adds zeros.

- `fused_mlp_sgd`: plain SGD on the mlp by hand; the update W -= lr dL/dW is applied by the
  backward batched product itself (baddbmm_ with alpha = -lr), so no gradient is materialized.
- `eager`: autograd through the stacked forward (any model), then SGD with momentum and weight
  decay written out as torch.optim.SGD computes it (dampening 0, no Nesterov).
- `solution2`: one forward pass, then k updates from the k slices of every seed's batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from batchlab.ensemble import Ensemble, per_seed_loss

Step = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def _still_alive(alive: torch.Tensor, loss: torch.Tensor, threshold: float) -> torch.Tensor:
    """alive &= loss <= threshold (a NaN or infinite loss compares False), in place."""
    return torch.logical_and(alive, loss <= threshold, out=alive)


def fused_mlp_sgd(ens: Ensemble, alive: torch.Tensor, threshold: float) -> Step:
    p = ens.params
    w1, b1, w2, b2 = p["0.weight"], p["0.bias"], p["2.weight"], p["2.bias"]
    # views made once (the updates are in place): at batch 1 every op of a step counts
    w1t, w2t, b1u, b2u = w1.transpose(1, 2), w2.transpose(1, 2), b1.unsqueeze(1), b2.unsqueeze(1)
    minus_one: dict[tuple, torch.Tensor] = {}
    relu_backward = torch.ops.aten.threshold_backward

    @torch.no_grad()
    def step(x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        h = torch.baddbmm(b1u, x, w1t)
        a = torch.relu(h)
        logp = torch.log_softmax(torch.baddbmm(b2u, a, w2t), dim=2)
        y3 = y.unsqueeze(2)
        loss = logp.gather(2, y3).mean(1).neg_().view(-1)
        ok = _still_alive(alive, loss, threshold)
        if y3.shape not in minus_one:
            minus_one[y3.shape] = torch.full(y3.shape, -1.0, device=x.device)
        g = logp.exp_().scatter_add_(2, y3, minus_one[y3.shape])  # softmax - one-hot
        g.mul_(ok.view(-1, 1, 1)).nan_to_num_(0.0)  # b * dL/dlogits of the mean loss; frozen: 0
        ga = relu_backward(torch.bmm(g, w2), a, 0)  # b * dL/dh, before w2 moves
        step_size = -lr / x.shape[1]
        w2.baddbmm_(g.transpose(1, 2), a, alpha=step_size)
        b2.add_(g.sum(1), alpha=step_size)
        w1.baddbmm_(ga.transpose(1, 2), x, alpha=step_size)
        b1.add_(ga.sum(1), alpha=step_size)
        return loss

    return step


class SGD:
    """torch.optim.SGD's update over stacked tensors, with frozen seeds masked out:
    g += wd * p; buf = m * buf + g (buf starts at g); p -= lr * buf."""

    def __init__(self, params: list[torch.Tensor], momentum: float, weight_decay: float):
        self.params, self.momentum, self.weight_decay = params, momentum, weight_decay
        self.buffers = [torch.zeros_like(p) for p in params] if momentum else []

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], lr: float, alive: torch.Tensor) -> None:
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            mask = alive.view(-1, *([1] * (p.dim() - 1)))
            g = torch.where(mask, g, 0.0)
            if self.weight_decay:
                g = g.add(torch.where(mask, p, 0.0), alpha=self.weight_decay)
            if self.momentum:
                g = self.buffers[i].mul_(self.momentum).add_(g)
                g = torch.where(mask, g, 0.0)
            p.add_(g, alpha=-lr)

    def state(self) -> list[torch.Tensor]:
        return [b.detach().cpu().clone() for b in self.buffers]

    def load(self, state: list[torch.Tensor]) -> None:
        for buf, saved in zip(self.buffers, state, strict=True):
            buf.copy_(saved)


def eager(ens: Ensemble, optimizer: SGD, alive: torch.Tensor, threshold: float) -> Step:
    params = [p.requires_grad_(True) for p in ens.tensors()]

    def step(x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        with torch.enable_grad():
            loss = per_seed_loss(ens.forward(x), y)
            # the seeds are independent, so the gradient of the sum is every seed's own gradient
            grads = torch.autograd.grad(loss.sum(), params)
        ok = _still_alive(alive, loss.detach(), threshold)
        optimizer.step(grads, lr, ok)
        return loss.detach()

    return step


def solution2(ens: Ensemble, optimizer: SGD, alive: torch.Tensor, threshold: float, k: int) -> Step:
    """The original post's "Solution 2", done so that it works: one forward pass over the batch,
    then k updates, the j-th from the mean loss of the j-th k-th of every seed's batch.

    The naive version (backward and `optimizer.step()` k times on one graph) fails in PyTorch:
    the first step changes the weights in place, and they are saved in the graph for the later
    backward passes. Here all k gradients are taken from the graph first (retain_graph), then
    applied in turn. They are therefore all gradients at the same weights: for plain SGD the k
    updates sum to lr * sum_j g_j = (k * lr) * g_batch, one full-batch step with k times the lr
    (exact for equal slices); with momentum the k steps build the velocity in between, so the
    equivalence is no longer exact. The returned loss is the batch's mean loss before the updates.
    """
    params = [p.requires_grad_(True) for p in ens.tensors()]

    def step(x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        with torch.enable_grad():
            logits = ens.forward(x)
            size, b = y.shape
            per_sample = torch.nn.functional.cross_entropy(
                logits.reshape(size * b, -1), y.reshape(-1), reduction="none"
            ).view(size, b)
            slices = [s for s in torch.tensor_split(per_sample, k, dim=1) if s.shape[1]]
            grads = [
                torch.autograd.grad(s.mean(1).sum(), params, retain_graph=i < len(slices) - 1)
                for i, s in enumerate(slices)
            ]
        loss = per_sample.detach().mean(1)
        ok = _still_alive(alive, loss, threshold)
        for grad in grads:
            optimizer.step(grad, lr, ok)
        return loss

    return step
