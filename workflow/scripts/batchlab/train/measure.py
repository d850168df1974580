"""Measurements taken on a model during or after training: gradient noise and sharpness.

- `gradient_norms`: squared gradient norms at two batch sizes from one draw of B_big samples,
  split into micro-batches of B_small. Their expectations are |G|^2 + tr(Sigma)/B, from which
  `batchlab.analysis.fits.noise_scale` estimates McCandlish et al.'s B_simple = tr(Sigma)/|G|^2.
- `gradient_cosine`: the cosine between the gradients of two independent mini-batches at the
  same weights (how far one step's direction carries to the next).
- `hessian_top_eigenvalue`: the largest-magnitude eigenvalue of the Hessian of a loss, by power
  iteration on Hessian-vector products (Keskar et al.'s sharpness, without the box constraint).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _loss_gradient(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params) -> torch.Tensor:
    """The gradient of the mean cross-entropy on (x, y), flattened, in float64."""
    return _flat(torch.autograd.grad(F.cross_entropy(model(x), y), params)).double()


def gradient_norms(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, micro_batches: int
) -> tuple[float, float]:
    """(mean over micro-batches of |g_small|^2, |g_big|^2) for the mean cross-entropy.

    x holds B_big samples, split into `micro_batches` equal parts of B_small = B_big / m; g_big
    is the mean of the micro-batch gradients, i.e. the gradient of the whole draw's mean loss.
    """
    if x.shape[0] % micro_batches:
        raise ValueError(f"{x.shape[0]} samples do not split into {micro_batches} equal micro-batches")
    params = [p for p in model.parameters() if p.requires_grad]
    small_sq = torch.zeros((), dtype=torch.float64, device=x.device)
    total = None
    with torch.enable_grad():
        for xm, ym in zip(x.chunk(micro_batches), y.chunk(micro_batches), strict=True):
            flat = _loss_gradient(model, xm, ym, params)
            small_sq += flat.dot(flat)
            total = flat if total is None else total + flat
    big = total / micro_batches
    host = torch.stack([small_sq / micro_batches, big.dot(big)]).cpu()  # one host copy
    return float(host[0]), float(host[1])


def gradient_cosine(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, pairs: int) -> float:
    """Mean over `pairs` of the cosine between the mean-loss gradients of two disjoint halves of
    one pair's samples. x holds 2 * b * pairs samples: pair p is rows [2bp, 2bp + 2b)."""
    params = [p for p in model.parameters() if p.requires_grad]
    cosines = []
    with torch.enable_grad():
        for xp, yp in zip(x.chunk(pairs), y.chunk(pairs), strict=True):
            (xa, xb), (ya, yb) = xp.chunk(2), yp.chunk(2)
            ga, gb = _loss_gradient(model, xa, ya, params), _loss_gradient(model, xb, yb, params)
            cosines.append(ga.dot(gb) / (ga.norm() * gb.norm()).clamp_min(1e-300))
    return float(torch.stack(cosines).mean().cpu())


def hessian_top_eigenvalue(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], **options) -> float:
    """The eigenvalue of largest magnitude of the Hessian (the sharpness); power_iteration's options."""
    return power_iteration(loss_fn, params, **options)[0]


def power_iteration(
    loss_fn: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    iterations: int = 20,
    tol: float = 1e-3,
    seed: int = 0,
) -> tuple[float, float]:
    """Power iteration on v -> Hv (double backward); stops when the Rayleigh quotient changes by
    less than tol (relative). Returns (the eigenvalue of largest magnitude, the relative change
    of the quotient at the last iteration: how far from converged it stopped)."""
    params = list(params)
    with torch.enable_grad():
        grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
        g = torch.Generator().manual_seed(seed)
        v = [torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device) for p in params]
        norm = math.sqrt(sum(float((u * u).sum()) for u in v))
        v = [u / norm for u in v]
        eig = float("nan")
        for _ in range(iterations):
            # Hv = d(g . v)/dw; a scalar output, not grad_outputs=v, which makes autograd import
            # sympy (about 0.35 s, once per training job)
            g_dot_v = sum((g * u).sum() for g, u in zip(grads, v, strict=True))
            hv = torch.autograd.grad(g_dot_v, params, retain_graph=True)
            quotient = float(sum((h * u).sum() for h, u in zip(hv, v, strict=True)))
            norm = math.sqrt(sum(float((h * h).sum()) for h in hv))
            if not math.isfinite(quotient) or norm == 0:
                return (quotient if math.isfinite(quotient) else float("nan")), float("nan")
            change = abs(quotient - eig) / abs(quotient) if math.isfinite(eig) and quotient else float("nan")
            eig = quotient
            if math.isfinite(change) and change <= tol:
                break
            v = [h / norm for h in hv]
    return eig, change
