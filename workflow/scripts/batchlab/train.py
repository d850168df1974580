"""Train one cell of the study: whole dataset on the device, batches sliced from a randperm.

No DataLoader and no `.item()` per step: each iteration's loss stays on the device and the
losses are copied to the host once every `check_every` iterations (and at each probe and epoch
end), which is also when divergence is checked.

A cell's recipe may add a linear learning-rate warm-up (Goyal et al. 2017) or the "Solution 2"
step (one forward pass over the batch, then k updates from k slices of it). Every
`probe_every_samples` training samples the cell is probed: test accuracy (for steps to a target)
and gradient norms at two batch sizes (for the gradient noise scale); before the first such
probe, test accuracy alone at 1/2, 1/4, ... 1/256 of that. Probes use their own
random generator, so they never change the training trajectory, and their time is kept out of
the epoch timings. The final model's sharpness is measured once, after training.
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
from batchlab.measure import gradient_norms, hessian_top_eigenvalue
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
PROBE_COLUMNS = [
    "step",
    "epoch",
    "samples",
    "recent_train_loss",
    "test_loss",
    "test_acc",
    "b_small",
    "b_big",
    "g_small_sq",
    "g_big_sq",
]


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
    warmup_epochs: float = 0.0  # linear warm-up of the lr from lr/steps to lr over these epochs
    splits: int = 1  # "Solution 2": k updates per forward pass, each from 1/k of the batch
    probe_every_samples: int = 20000  # test accuracy + gradient noise every this many samples
    noise_batch: int = 512  # B_big of the noise-scale measurement
    noise_micro_batches: int = 4  # B_small = noise_batch / noise_micro_batches
    train_eval_size: int = 10000  # training loss/accuracy at epoch ends: the first n images
    sharpness_subset: int = 512  # Hessian of the training loss on the first n images
    sharpness_iterations: int = 12  # power-iteration steps (0: no sharpness)


@dataclass
class TrainState:
    """What an epoch-end checkpoint holds: enough to resume bit-for-bit."""

    epoch: int  # completed epochs
    model: dict
    optimizer: dict
    generator: torch.Tensor
    losses: np.ndarray
    epochs: list[dict]
    probes: list[dict] = field(default_factory=list)
    probe_generator: torch.Tensor | None = None


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
    probes: list[dict] = field(default_factory=list)  # one row per probe
    measure_seconds: dict = field(default_factory=dict)  # time spent measuring, not training
    first_step_seconds: float | None = None  # epoch start to the first step's loss (None: resumed)

    def summary(self) -> dict:
        return {
            **asdict(self.config),
            "status": self.status,
            "stopped_step": self.stopped_step,
            "stop_reason": self.stop_reason,
            "steps": int(len(self.losses)),
            "updates": int(len(self.losses)) * max(1, self.config.splits),
            "epochs_completed": len(self.epochs),
            "step_implementation": step_implementation(self.config),
            **{f"final_{k}": _finite_or_none(v) for k, v in self.final.items()},
            "measure_seconds": self.measure_seconds,
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
    if cfg.splits < 1:
        raise CellError(f"Solution 2 needs at least 1 split, got {cfg.splits}")
    if cfg.splits > cfg.batch_size:
        raise CellError(f"Solution 2 cannot split a batch of {cfg.batch_size} into {cfg.splits} parts")
    if not (0 <= cfg.warmup_epochs <= cfg.epochs):
        raise CellError(f"warm-up must last 0 to {cfg.epochs} epochs, got {cfg.warmup_epochs:g}")
    if not (0 <= cfg.momentum < 1):
        raise CellError(f"momentum must be in [0, 1), got {cfg.momentum:g}")


def uses_fused_step(cfg: CellConfig) -> bool:
    """The fused step computes exactly plain SGD on the mlp: no momentum, no weight decay."""
    return (
        cfg.fused
        and cfg.model == "mlp"
        and cfg.optimizer == "sgd"
        and cfg.momentum == 0
        and cfg.weight_decay == 0
        and cfg.splits == 1
    )


def step_implementation(cfg: CellConfig) -> str:
    if cfg.splits > 1:
        return f"Solution 2: one forward pass, {cfg.splits} torch.optim updates"
    return "fused plain SGD" if uses_fused_step(cfg) else "eager autograd + torch.optim"


def warmup_steps(cfg: CellConfig, iters_per_epoch: int) -> int:
    return round(cfg.warmup_epochs * iters_per_epoch)


def lr_schedule(lr: float, warmup: int) -> Callable[[int], float]:
    """lr at 0-based iteration t: linear warm-up lr*(t+1)/warmup over `warmup` iterations, then lr."""
    if warmup <= 0:
        return lambda t: lr
    return lambda t: lr * min(1.0, (t + 1) / warmup)


def probe_interval(cfg: CellConfig) -> int:
    """Iterations between regular probes (0: probe at epoch ends only)."""
    if cfg.probe_every_samples <= 0:
        return 0
    return max(1, round(cfg.probe_every_samples / cfg.batch_size))


EARLY_PROBES = 8  # test-accuracy probes at 1/2, 1/4, ... 1/256 of the probe interval


def early_probe_steps(cfg: CellConfig) -> list[int]:
    """Iterations of the early probes: test accuracy only, at probe_every_samples / 2^k samples
    (k = 1..8), so that steps to a target reached before the first regular probe are resolved
    on a log scale rather than read as the first probe's step."""
    every = probe_interval(cfg)
    if not every:
        return []
    steps = {round(cfg.probe_every_samples / 2**k / cfg.batch_size) for k in range(1, EARLY_PROBES + 1)}
    return sorted(s for s in steps if 0 < s < every)


def fused_mlp_sgd_step(model: torch.nn.Module) -> Callable:
    """Forward, backward and SGD update of the 784-256-10 mlp by hand, in one pass.

    The update W -= lr * dL/dW is applied by the backward GEMM itself (addmm_ with alpha=-lr),
    so no gradient tensor is materialized and autograd's and the optimizer's bookkeeping is
    skipped: at batch size 1 that bookkeeping is most of the cost of a step. The arithmetic is
    that of cross-entropy + SGD; results equal the eager step to float rounding (tested).
    """
    first, last = model[0], model[2]
    w1, b1, w2, b2 = first.weight.data, first.bias.data, last.weight.data, last.bias.data

    @torch.no_grad()
    def step(x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
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


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        if group["lr"] != lr:
            group["lr"] = lr


def eager_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Callable:
    def step(x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        _set_lr(optimizer, lr)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def split_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, k: int) -> Callable:
    """The original post's "Solution 2", done so that it works: one forward pass over the batch,
    then k optimizer updates, the j-th from the mean loss of the j-th k-th of the batch.

    The naive version (backward and `optimizer.step()` k times on one graph) fails in PyTorch:
    the first step changes the weights in place, and they are saved in the graph for the later
    backward passes. Here all k gradients are taken from the graph first (retain_graph), then
    applied in turn. They are therefore all gradients at the same weights: for plain SGD the k
    updates sum to lr * sum_j g_j = (k * lr) * g_batch, one full-batch step with k times the lr
    (exact for equal slices); with momentum the k steps build the velocity in between, so the
    equivalence is no longer exact. The returned loss is the batch's mean loss before the updates.
    """
    params = [p for p in model.parameters() if p.requires_grad]

    def step(x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        _set_lr(optimizer, lr)
        per_sample = F.cross_entropy(model(x), y, reduction="none")
        slices = [s for s in torch.tensor_split(per_sample, k) if s.numel()]
        grads = [
            torch.autograd.grad(s.mean(), params, retain_graph=i < len(slices) - 1)
            for i, s in enumerate(slices)
        ]
        for grad in grads:
            for p, g in zip(params, grad, strict=True):
                p.grad = g
            optimizer.step()
        return per_sample.mean().detach()

    return step


def run_iterations(
    step_fn: Callable,
    xs: torch.Tensor,
    ys: torch.Tensor,
    b: int,
    first: int,
    stop: int,
    lr_at: Callable[[int], float],
    offset: int = 0,
) -> list[torch.Tensor]:
    """Iterations first..stop-1 of an epoch over the shuffled data; losses stay on the device.
    offset: iterations done before this epoch (the warm-up counts across epochs)."""
    return [
        step_fn(xs[i * b : (i + 1) * b], ys[i * b : (i + 1) * b], lr_at(offset + i))
        for i in range(first, stop)
    ]


class Prober:
    """Test accuracy and gradient norms at two batch sizes, on the current weights.

    Draws its noise-scale samples with its own generator (saved in checkpoints), so probing
    never changes the training trajectory; keeps its own time."""

    def __init__(self, cfg: CellConfig, data: DeviceData, model: torch.nn.Module, state=None):
        self.cfg, self.data, self.model = cfg, data, model
        self.generator = torch.Generator().manual_seed(cfg.seed + 7919)
        if state is not None:
            self.generator.set_state(state)
        self.big = min(cfg.noise_batch, data.n_train)
        self.micro = cfg.noise_micro_batches if self.big % cfg.noise_micro_batches == 0 else 1
        self.seconds = {"test_eval": 0.0, "noise": 0.0}

    def _sync(self):
        if self.data.train_x.device.type == "cuda":
            torch.cuda.synchronize(self.data.train_x.device)

    def __call__(
        self,
        step: int,
        iters_per_epoch: int,
        recent_loss: float,
        test: dict | None = None,
        noise: bool = True,
    ) -> dict:
        t0 = time.perf_counter()
        if test is None:
            test = evaluate(self.model, self.data.test_x, self.data.test_y)
        t1 = time.perf_counter()
        self.seconds["test_eval"] += t1 - t0
        row = {
            "step": step,
            "epoch": step / iters_per_epoch,
            "samples": step * self.cfg.batch_size,
            "recent_train_loss": recent_loss,
            "test_loss": test["loss"],
            "test_acc": test["acc"],
            "b_small": self.big // self.micro,
            "b_big": self.big,
            "g_small_sq": float("nan"),
            "g_big_sq": float("nan"),
        }
        if noise and self.micro > 1 and math.isfinite(recent_loss):
            idx = torch.randperm(self.data.n_train, generator=self.generator)[: self.big]
            idx = idx.to(self.data.train_x.device)
            row["g_small_sq"], row["g_big_sq"] = gradient_norms(
                self.model, self.data.train_x[idx], self.data.train_y[idx], self.micro
            )
        self._sync()
        self.seconds["noise"] += time.perf_counter() - t1
        return row


def final_sharpness(cfg: CellConfig, data: DeviceData, model: torch.nn.Module) -> float:
    if cfg.sharpness_iterations <= 0 or cfg.sharpness_subset <= 0:
        return float("nan")
    n = min(cfg.sharpness_subset, data.n_train)
    x, y = data.train_x[:n], data.train_y[:n]
    params = [p for p in model.parameters() if p.requires_grad]
    return hessian_top_eigenvalue(
        lambda: F.cross_entropy(model(x), y), params, cfg.sharpness_iterations, seed=cfg.seed
    )


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
    lr_at = lr_schedule(cfg.lr, warmup_steps(cfg, iters))
    every = probe_interval(cfg)
    early = set(early_probe_steps(cfg))
    losses: list[np.ndarray] = []
    epochs: list[dict] = []
    probes: list[dict] = []
    start_epoch = 0
    if resume is not None:
        model.load_state_dict(resume.model)
        if optimizer is not None:
            optimizer.load_state_dict(resume.optimizer)
        generator.set_state(resume.generator)
        losses = [resume.losses.astype(np.float32)]
        epochs = [dict(row) for row in resume.epochs]
        probes = [dict(row) for row in resume.probes]
        start_epoch = resume.epoch
        log(f"resumed from the checkpoint after epoch {start_epoch}")
    probe = Prober(cfg, data, model, resume.probe_generator if resume is not None else None)
    train_eval_n = min(cfg.train_eval_size, n) if cfg.train_eval_size > 0 else n

    if optimizer is None:
        step_fn = fused_mlp_sgd_step(model)
    elif cfg.splits > 1:
        step_fn = split_step(model, optimizer, cfg.splits)
    else:
        step_fn = eager_step(model, optimizer)
    status, stopped_step, reason = "ok", None, None
    step = sum(len(chunk) for chunk in losses)
    first_step_s = None
    shuffled_x, shuffled_y = torch.empty_like(data.train_x), torch.empty_like(data.train_y)
    model.train()
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        probe_s0 = sum(probe.seconds.values())
        offset = step  # iterations before this epoch
        perm = torch.randperm(n, generator=generator).to(device)
        # one gather per epoch into buffers reused across epochs (6x faster than x[perm] on a
        # CPU: no fresh 188 MB to fault in), views per step
        xs = torch.index_select(data.train_x, 0, perm, out=shuffled_x)
        ys = torch.index_select(data.train_y, 0, perm, out=shuffled_y)
        epoch_losses: list[np.ndarray] = []
        since_probe: list[np.ndarray] = []
        pos = 0
        while pos < iters:
            stop = min(iters, pos + cfg.check_every - pos % cfg.check_every)
            if every:
                stop = min(stop, every - (offset + pos) % every + pos)
            upcoming = [s - offset for s in early if s > offset + pos]
            if upcoming:
                stop = min(stop, min(upcoming))
            first = offset + pos == 0
            if first:
                stop = 1  # the first step alone, timed: its one-off costs are part of a job's start-up
            window = run_iterations(step_fn, xs, ys, b, pos, stop, lr_at, offset)
            values = torch.stack(window).float().cpu().numpy()  # the one host sync per window
            if first:
                first_step_s = time.perf_counter() - t0
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
            since_probe.append(values)
            pos = stop
            at = offset + pos
            if pos < iters and ((every and at % every == 0) or at in early):
                recent = float(np.mean(np.concatenate(since_probe)))
                probes.append(probe(at, iters, recent, noise=at not in early))
                since_probe = []
        seconds = time.perf_counter() - t0 - (sum(probe.seconds.values()) - probe_s0)
        chunk = np.concatenate(epoch_losses) if epoch_losses else np.zeros(0, np.float32)
        losses.append(chunk)
        step += len(chunk)
        if status == "diverged":
            log(f"epoch {epoch}: DIVERGED: {reason}; stopping this cell")
            break
        train_eval = evaluate(model, data.train_x[:train_eval_n], data.train_y[:train_eval_n])
        test_eval = evaluate(model, data.test_x, data.test_y)
        recent = float(np.mean(np.concatenate(since_probe))) if since_probe else float(np.mean(chunk))
        probes.append(probe(step, iters, recent, test=test_eval))
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
                    probes=list(probes),
                    probe_generator=probe.generator.get_state(),
                )
            )

    all_losses = np.concatenate(losses) if losses else np.zeros(0, np.float32)
    epoch_of_step = np.minimum(np.arange(len(all_losses)) // iters + 1, cfg.epochs)
    if status == "diverged":
        final = {"train_loss": float("nan"), "train_acc": float("nan")}
        test_eval = evaluate(model, data.test_x, data.test_y)
        final.update(test_loss=test_eval["loss"], test_acc=test_eval["acc"], sharpness=float("nan"))
        sharp_s = 0.0
    else:
        last = epochs[-1]
        final = {k: last[k] for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
        t0 = time.perf_counter()
        final["sharpness"] = final_sharpness(cfg, data, model)
        sharp_s = time.perf_counter() - t0
    train_s = float(sum(row["seconds"] for row in epochs))
    measure = {**probe.seconds, "sharpness": sharp_s, "training": train_s}
    if train_s > 0:
        measure["noise_and_sharpness_share"] = (probe.seconds["noise"] + sharp_s) / train_s
    return TrainResult(
        config=cfg,
        losses=all_losses.astype(np.float32),
        epoch_of_step=epoch_of_step.astype(np.int32),
        epochs=epochs,
        status=status,
        stopped_step=stopped_step,
        stop_reason=reason,
        final=final,
        probes=probes,
        measure_seconds=measure,
        first_step_seconds=first_step_s,
    )
