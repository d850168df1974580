"""Gradient norms at two batch sizes and the Hessian power iteration, against known answers."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from batchlab.train.measure import gradient_norms, hessian_top_eigenvalue


def test_power_iteration_finds_the_top_eigenvalue_of_a_known_hessian():
    """The loss 0.5 w^T A w has Hessian A everywhere."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=torch.float64))
    eigenvalues = torch.linspace(0.1, 5.0, 30, dtype=torch.float64)
    eigenvalues[-1] = 12.0  # a clear gap, so a few iterations suffice
    A = q @ torch.diag(eigenvalues) @ q.T
    w = torch.randn(30, generator=g, dtype=torch.float64, requires_grad=True)
    top = hessian_top_eigenvalue(lambda: 0.5 * w @ A @ w, [w], iterations=100, tol=1e-10)
    assert top == pytest.approx(12.0, rel=1e-6)


def test_power_iteration_over_several_parameter_tensors():
    """A block-diagonal Hessian split over two tensors: the top eigenvalue of either block."""
    a = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    da = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    db = torch.tensor([7.0, 0.5], dtype=torch.float64)
    top = hessian_top_eigenvalue(
        lambda: 0.5 * (da * a * a).sum() + 0.5 * (db * b * b).sum(), [a, b], iterations=200, tol=1e-12
    )
    assert top == pytest.approx(7.0, rel=1e-6)


def test_gradient_norms_match_per_micro_batch_gradients_computed_one_by_one():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    x, y = torch.randn(24, 5), torch.randint(0, 3, (24,))
    small_sq, big_sq = gradient_norms(model, x, y, micro_batches=4)

    def flat_grad(xs, ys):
        grads = torch.autograd.grad(F.cross_entropy(model(xs), ys), list(model.parameters()))
        return torch.cat([g.reshape(-1) for g in grads]).double()

    parts = [flat_grad(x[i : i + 6], y[i : i + 6]) for i in range(0, 24, 6)]
    assert small_sq == pytest.approx(float(np.mean([float(p @ p) for p in parts])), rel=1e-6)
    whole = flat_grad(x, y)  # the mean of equal micro-batch gradients is the whole batch's gradient
    assert big_sq == pytest.approx(float(whole @ whole), rel=1e-5)
    with pytest.raises(ValueError, match="equal micro-batches"):
        gradient_norms(model, x[:10], y[:10], micro_batches=4)


def test_power_iteration_says_how_far_from_converged_it_stopped():
    from batchlab.train.measure import power_iteration

    a = torch.diag(torch.tensor([5.0, 4.9, 1.0]))  # close top eigenvalues: slow convergence
    w = torch.zeros(3, requires_grad=True)

    def loss():
        return 0.5 * w @ a @ w

    eig, change = power_iteration(loss, [w], iterations=3, tol=1e-9)
    assert 4.9 <= eig <= 5.0 and change > 1e-6  # stopped by the iteration cap, not converged
    eig, change = power_iteration(loss, [w], iterations=500, tol=1e-6)
    assert eig == pytest.approx(5.0, rel=1e-4) and change <= 1e-6


def test_the_gradient_cosine_is_one_for_equal_batches_and_lower_for_different_ones():
    from batchlab.train.measure import gradient_cosine

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    x, y = torch.randn(8, 20), torch.randint(0, 4, (8,))
    same = torch.cat([x[:4], x[:4]]), torch.cat([y[:4], y[:4]])
    assert gradient_cosine(model, *same, pairs=1) == pytest.approx(1.0, abs=1e-9)
    assert gradient_cosine(model, *same, pairs=2) < 1.0 - 1e-3  # pairs of 2 different samples each
    opposite = x[:2].repeat(2, 1), torch.tensor([0, 1, 1, 0])  # the same images, other labels
    assert gradient_cosine(model, *opposite, pairs=1) < 0.9
