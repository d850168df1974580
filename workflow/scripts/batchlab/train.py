"""Train one cell of the study: whole dataset on the device, batches sliced from a randperm.

No DataLoader and no `.item()` per step: each iteration's loss stays on the device and the
losses are copied to the host once every `check_every` iterations (and at the end of each
epoch), which is also when divergence is checked.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from batchlab import BatchlabError
from batchlab.data import DeviceData
from batchlab.models import build_model

LN10 = math.log(10.0)
# An epoch that ends with the training loss within COLLAPSE_LOSS_TOLERANCE of ln 10 (the loss of
# a uniform guess), test accuracy at most COLLAPSE_MAX_ACCURACY and one class predicted for at
# least COLLAPSE_MIN_SHARE of the test set is "collapsed": the network outputs (almost) the same
# answer for every image, typically because its ReLU units died after too large a step.
COLLAPSE_LOSS_TOLERANCE = 0.03
COLLAPSE_MAX_ACCURACY = 0.15
COLLAPSE_MIN_SHARE = 0.5
EVAL_CHUNK = 10000


@dataclass(frozen=True)
class CellConfig:
    """Everything that defines one training run; saved beside its results."""

    batch_size: int
    lr: float
    seed: int
    epochs: int = 3
    model: str = "mlp"
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    divergence_loss: float = 1000.0
    check_every: int = 1000
    fused: bool = True  # the fused plain-SGD step for the mlp, where it applies


@dataclass
class TrainState:
    """What an epoch-end checkpoint holds: enough to resume bit-for-bit."""

    epoch: int  # completed epochs
    model: dict
    optimizer: dict
    generator: torch.Tensor
    losses: np.ndarray
    epochs: list[dict]


@dataclass
class TrainResult:
    config: CellConfig
    losses: np.ndarray  # training loss of every iteration, float32
    epoch_of_step: np.ndarray  # 1-based epoch of every iteration
    epochs: list[dict]  # one row per completed epoch
    status: str  # "ok", "diverged" or "collapsed"
    stopped_step: int | None = None
    stop_reason: str | None = None
    final: dict = field(default_factory=dict)  # evaluation of the final weights

    def summary(self) -> dict:
        return {
            **asdict(self.config),
            "status": self.status,
            "stopped_step": self.stopped_step,
            "stop_reason": self.stop_reason,
            "steps": int(len(self.losses)),
            "epochs_completed": len(self.epochs),
            "step_implementation": "fused plain SGD"
            if uses_fused_step(self.config)
            else "eager autograd + torch.optim",
            **{f"final_{k}": _finite_or_none(v) for k, v in self.final.items()},
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def iterations_per_epoch(n_train: int, batch_size: int) -> int:
    """ceil(N / b): every image is seen once per epoch, the last batch may be smaller."""
    return -(-n_train // batch_size)


def first_bad_step(losses: np.ndarray, threshold: float) -> int | None:
    """Index of the first loss that is not finite or exceeds threshold, else None."""
    bad = ~np.isfinite(losses) | (losses > threshold)
    hits = np.flatnonzero(bad)
    return int(hits[0]) if hits.size else None


def is_collapsed(train_loss: float, test_acc: float, top_class_share: float) -> bool:
    """True when the network answers (almost) the same class for every image, at chance level."""
    return (
        math.isfinite(train_loss)
        and abs(train_loss - LN10) <= COLLAPSE_LOSS_TOLERANCE * LN10
        and test_acc <= COLLAPSE_MAX_ACCURACY
        and top_class_share >= COLLAPSE_MIN_SHARE
    )


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Mean loss, accuracy and the share of the most-predicted class, with one host copy."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    counts = torch.zeros(10, device=x.device, dtype=torch.int64)
    for start in range(0, x.shape[0], EVAL_CHUNK):
        out = model(x[start : start + EVAL_CHUNK])
        target = y[start : start + EVAL_CHUNK]
        loss_sum += F.cross_entropy(out, target, reduction="sum").double()
        pred = out.argmax(dim=1)
        correct += (pred == target).sum()
        counts += torch.bincount(pred, minlength=10)[:10]
    model.train(was_training)
    host = torch.cat([loss_sum.view(1), correct.double().view(1), counts.double()]).cpu()
    n = x.shape[0]
    return {
        "loss": float(host[0]) / n,
        "acc": float(host[1]) / n,
        "top_class_share": float(host[2:].max()) / n,
    }


def make_optimizer(cfg: CellConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer != "sgd":
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose sgd")
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True
    )


class CellError(BatchlabError):
    pass


def check_cell(cfg: CellConfig) -> None:
    """A cell asked for by path (results/runs/bs{B}_lr{LR}_s{SEED}/...) bypasses the config
    schema, so the trainer checks its own inputs."""
    if cfg.batch_size < 1:
        raise CellError(f"batch size must be at least 1, got {cfg.batch_size}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise CellError(f"learning rate must be a positive number, got {cfg.lr:g}")
    if cfg.epochs < 1:
        raise CellError(f"epochs must be at least 1, got {cfg.epochs}")


def uses_fused_step(cfg: CellConfig) -> bool:
    """The fused step computes exactly plain SGD on the mlp: no momentum, no weight decay."""
    return (
        cfg.fused
        and cfg.model == "mlp"
        and cfg.optimizer == "sgd"
        and cfg.momentum == 0
        and cfg.weight_decay == 0
    )


def fused_mlp_sgd_step(model: torch.nn.Module, lr: float) -> Callable:
    """Forward, backward and SGD update of the 784-256-10 mlp by hand, in one pass.

    The update W -= lr * dL/dW is applied by the backward GEMM itself (addmm_ with alpha=-lr),
    so no gradient tensor is materialized and autograd's and the optimizer's bookkeeping is
    skipped: at batch size 1 that bookkeeping is most of the cost of a step. The arithmetic is
    that of cross-entropy + SGD; results equal the eager step to float rounding (tested).
    """
    first, last = model[0], model[2]
    w1, b1, w2, b2 = first.weight.data, first.bias.data, last.weight.data, last.bias.data

    @torch.no_grad()
    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.addmm(b1, x, w1.t())
        a = torch.relu(h)
        logp = torch.log_softmax(torch.addmm(b2, a, w2.t()), dim=1)
        loss = F.nll_loss(logp, y)
        g = logp.exp_()  # softmax
        g.scatter_add_(1, y.unsqueeze(1), torch.full_like(g[:, :1], -1.0))
        g.mul_(1.0 / x.shape[0])  # dL/dlogits of the mean loss
        ga = (g @ w2).masked_fill_(h <= 0, 0.0)  # dL/dh, before w2 moves
        w2.addmm_(g.t(), a, alpha=-lr)
        b2.add_(g.sum(0), alpha=-lr)
        w1.addmm_(ga.t(), x, alpha=-lr)
        b1.add_(ga.sum(0), alpha=-lr)
        return loss

    return step


def eager_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Callable:
    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def run_iterations(
    step_fn: Callable, xs: torch.Tensor, ys: torch.Tensor, b: int, first: int, stop: int
) -> list[torch.Tensor]:
    """Iterations first..stop-1 of an epoch over the shuffled data; losses stay on the device."""
    return [step_fn(xs[i * b : (i + 1) * b], ys[i * b : (i + 1) * b]) for i in range(first, stop)]


def train_cell(
    cfg: CellConfig,
    data: DeviceData,
    device: torch.device,
    resume: TrainState | None = None,
    on_epoch_end: Callable[[TrainState], None] | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train one cell; stop early (and say so) when it diverges or collapses."""
    check_cell(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model).to(device)
    # The fused step needs no optimizer object, and creating a torch.optim optimizer imports
    # torch._dynamo: about 3 s of every job's start-up on this machine.
    optimizer = None if uses_fused_step(cfg) else make_optimizer(cfg, model.parameters())
    generator = torch.Generator().manual_seed(cfg.seed)  # CPU: the same order on every device
    n = data.n_train
    b = cfg.batch_size
    iters = iterations_per_epoch(n, b)
    losses: list[np.ndarray] = []
    epochs: list[dict] = []
    start_epoch = 0
    if resume is not None:
        model.load_state_dict(resume.model)
        if optimizer is not None:
            optimizer.load_state_dict(resume.optimizer)
        generator.set_state(resume.generator)
        losses = [resume.losses.astype(np.float32)]
        epochs = [dict(row) for row in resume.epochs]
        start_epoch = resume.epoch
        log(f"resumed from the checkpoint after epoch {start_epoch}")

    step_fn = fused_mlp_sgd_step(model, cfg.lr) if optimizer is None else eager_step(model, optimizer)
    status, stopped_step, reason = "ok", None, None
    step = sum(len(chunk) for chunk in losses)
    model.train()
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=generator).to(device)
        xs, ys = data.train_x[perm], data.train_y[perm]  # one gather per epoch, views per step
        epoch_losses: list[np.ndarray] = []
        for first in range(0, iters, cfg.check_every):
            window = run_iterations(step_fn, xs, ys, b, first, min(iters, first + cfg.check_every))
            values = torch.stack(window).float().cpu().numpy()  # the one host sync per window
            bad = first_bad_step(values, cfg.divergence_loss)
            if bad is not None:
                values = values[: bad + 1]
                epoch_losses.append(values)
                stopped_step = step + sum(map(len, epoch_losses))
                status = "diverged"
                last = float(values[-1])
                reason = f"training loss {last:.4g} at iteration {stopped_step} " + (
                    "is not finite" if not math.isfinite(last) else f"exceeds {cfg.divergence_loss:g}"
                )
                break
            epoch_losses.append(values)
        seconds = time.perf_counter() - t0
        chunk = np.concatenate(epoch_losses) if epoch_losses else np.zeros(0, np.float32)
        losses.append(chunk)
        step += len(chunk)
        if status == "diverged":
            log(f"epoch {epoch}: DIVERGED: {reason}; stopping this cell")
            break
        train_eval = evaluate(model, data.train_x, data.train_y)
        test_eval = evaluate(model, data.test_x, data.test_y)
        row = {
            "epoch": epoch,
            "iterations": iters,
            "samples": n,
            "seconds": seconds,
            "samples_per_s": n / seconds if seconds > 0 else float("nan"),
            "ms_per_step": 1000.0 * seconds / iters,
            "running_loss": float(np.mean(chunk)),
            "train_loss": train_eval["loss"],
            "train_acc": train_eval["acc"],
            "test_loss": test_eval["loss"],
            "test_acc": test_eval["acc"],
            "top_class_share": test_eval["top_class_share"],
        }
        epochs.append(row)
        log(
            f"epoch {epoch}/{cfg.epochs}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}"
            f" | test loss {row['test_loss']:.4f} acc {row['test_acc']:.4f}"
            f" | {seconds:.2f} s, {row['samples_per_s']:.0f} samples/s, {row['ms_per_step']:.3f} ms/step"
        )
        if is_collapsed(row["train_loss"], row["test_acc"], row["top_class_share"]):
            status, stopped_step = "collapsed", step
            reason = (
                f"after epoch {epoch} the training loss is {row['train_loss']:.3f} (ln 10 = {LN10:.3f}),"
                f" test accuracy {row['test_acc']:.1%} and {row['top_class_share']:.0%} of test images"
                " get the same class"
            )
            log(f"epoch {epoch}: COLLAPSED: {reason}; stopping this cell")
            break
        if on_epoch_end is not None:
            on_epoch_end(
                TrainState(
                    epoch=epoch,
                    model={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                    optimizer=optimizer.state_dict() if optimizer is not None else {},
                    generator=generator.get_state(),
                    losses=np.concatenate(losses),
                    epochs=list(epochs),
                )
            )

    all_losses = np.concatenate(losses) if losses else np.zeros(0, np.float32)
    epoch_of_step = np.minimum(np.arange(len(all_losses)) // iters + 1, cfg.epochs)
    if status == "diverged":
        final = {"train_loss": float("nan"), "train_acc": float("nan")}
        test_eval = evaluate(model, data.test_x, data.test_y)
        final.update(test_loss=test_eval["loss"], test_acc=test_eval["acc"])
    else:
        last = epochs[-1]
        final = {k: last[k] for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
    return TrainResult(
        config=cfg,
        losses=all_losses.astype(np.float32),
        epoch_of_step=epoch_of_step.astype(np.int32),
        epochs=epochs,
        status=status,
        stopped_step=stopped_step,
        stop_reason=reason,
        final=final,
    )
