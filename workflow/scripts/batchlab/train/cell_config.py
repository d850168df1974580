"""What defines the training of a cell's seeds (CellConfig), checked, and the choices that
follow from it: the step, which seeds train together (its run step by step:
batchlab.train.plan)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from batchlab import BatchlabError
from batchlab.train.ensemble import PER_SEED
from batchlab.train.models import MODELS, has_batch_norm
from batchlab.train.plan import SCHEDULES, EpochPlan
from batchlab.train.settings import BY_NAME, OPTIMIZERS, OptimizerSettings

SETTING_FIELDS = tuple(f.name for f in fields(OptimizerSettings) if f.name != "name")


@dataclass(frozen=True)
class CellConfig:
    """Everything that defines the training of one cell's seeds; saved beside its results."""

    batch_size: int
    lr: float
    seeds: tuple[int, ...] = (0,)
    epochs: int = 3
    model: str = "mlp"
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)  # batchlab.train.settings
    schedule: str = "constant"  # after the warm-up: constant, linear (decay to 0) or cosine
    divergence_loss: float = 1000.0
    check_every: int = 1000
    fused: bool = True  # the fused plain-SGD step for the mlp, where it applies
    warmup_epochs: float = 0.0  # linear warm-up of the lr from lr/steps to lr over these epochs
    splits: int = 1  # "Solution 2": k updates per forward pass, each from 1/k of the batch
    micro_batch: int = 0  # gradient accumulation over micro-batches of this many images (0: off)
    ghost_batch: int = 0  # BatchNorm over virtual batches of this many images (0: the whole batch)
    # a batch-size ramp (Smith et al. 2018): the first epoch's batch size, doubled every
    # ramp_every epochs up to batch_size (0: batch_size throughout), the lr held or, with
    # ramp_scaled, scaled with the batch (lr x b / batch_size)
    ramp_from: int = 0
    ramp_every: int = 1
    ramp_scaled: bool = False
    validation_size: int = 0  # training images held out for selection (0: select on the test set)
    probe_every_samples: int = 20000  # validation accuracy + gradient noise every this many samples
    probe_val_size: int = 2000  # validation images of the probes between epoch ends (0: all)
    noise_batch: int = 512  # B_big of the noise-scale measurement
    noise_micro_batches: int = 4  # B_small = noise_batch / noise_micro_batches
    noise_draws: int = 1  # independent draws of B_big per probe, averaged
    noise_every_probes: int = 1  # the noise (and gradient cosine) at every n-th regular probe; 0: epoch ends only
    train_eval_size: int = 10000  # training loss/accuracy at epoch ends: the first n images
    sharpness_subset: int = 512  # Hessian of the training loss on the first n images
    track_subset: int = 1024  # the model's loss on the first n training images, tracked ...
    track_every_samples: int = 1024  # ... every this many samples through the run (0: off)
    fate_every_samples: int = 5000  # the tracked subset checked for collapse every this many samples (0: epoch ends)
    noise_at_val_acc: float = 0.0  # the noise measured too at the first probe reaching this accuracy (0: off)
    sharpness_iterations: int = 12  # power-iteration steps (0: no sharpness)
    # each initial weight times (1 + init_jitter * N(0, 1)), from the seed's own generator: one
    # part in 10^7 changes the float rounding of a run and nothing else (0: off)
    init_jitter: float = 0.0
    # seeds trained together, about (0: all of the cell's; see seed_groups): how fast, not what;
    # a seed's run is the same to the bit in any group, so it is not part of a seed's record
    group_size: int = 0

    def plan(self, n_train: int) -> EpochPlan:
        """Each epoch's batch size and iterations over n_train training images."""
        return EpochPlan.of(n_train, self.epochs, self.batch_size, self.ramp_from, self.ramp_every)

    def of_seed(self, seed: int) -> dict:
        """What defines one seed's run, flat: this config with that seed alone, the optimizer by
        its name beside its settings (the records' and the seed store's keys)."""
        record = asdict(self)
        del record["seeds"], record["group_size"]
        settings = record.pop("optimizer")
        return {**record, "optimizer": settings.pop("name"), **settings, "seed": int(seed)}


def make_config(optimizer: str = "sgd", **given) -> CellConfig:
    """A CellConfig from flat fields, the optimizer's settings among them: those the optimizer
    does not read are dropped, so they keep their defaults."""
    settings = {k: given.pop(k) for k in SETTING_FIELDS if k in given}
    return CellConfig(optimizer=OptimizerSettings.of(optimizer, settings), **given)


class CellError(BatchlabError):
    pass


def check_cell(cfg: CellConfig) -> None:
    """A cell asked for by path (results/runs/bs{B}_lr{LR}/...) bypasses the config schema, so
    the trainer checks its own inputs."""
    if cfg.batch_size < 1:
        raise CellError(f"batch size must be at least 1, got {cfg.batch_size}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise CellError(f"learning rate must be a positive number, got {cfg.lr:g}")
    if cfg.epochs < 1:
        raise CellError(f"epochs must be at least 1, got {cfg.epochs}")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise CellError(f"a cell needs one or more distinct seeds, got {list(cfg.seeds)}")
    if cfg.splits < 1:
        raise CellError(f"Solution 2 needs at least 1 split, got {cfg.splits}")
    if cfg.splits > cfg.batch_size:
        raise CellError(f"Solution 2 cannot split a batch of {cfg.batch_size} into {cfg.splits} parts")
    if not (0 <= cfg.warmup_epochs <= cfg.epochs):
        raise CellError(f"warm-up must last 0 to {cfg.epochs} epochs, got {cfg.warmup_epochs:g}")
    opt = cfg.optimizer
    if opt.name not in OPTIMIZERS:
        raise CellError(f"unknown optimizer {opt.name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if not (0 <= opt.momentum < 1):
        raise CellError(f"momentum must be in [0, 1), got {opt.momentum:g}")
    if opt.name == "nesterov" and opt.momentum == 0:
        raise CellError("Nesterov momentum needs a momentum above 0 (optimizers.nesterov.momentum)")
    if not (0 <= opt.beta1 < 1 and 0 <= opt.beta2 < 1):
        raise CellError(f"betas must be in [0, 1), got ({opt.beta1:g}, {opt.beta2:g})")
    if not (opt.eps > 0 and opt.weight_decay >= 0 and opt.trust_coefficient > 0):
        raise CellError("eps and the trust coefficient must be positive, the weight decay at least 0")
    if cfg.schedule not in SCHEDULES:
        raise CellError(f"unknown lr schedule {cfg.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if not (0 <= cfg.init_jitter < 0.01):
        raise CellError(f"init_jitter must be in [0, 0.01), got {cfg.init_jitter:g}")
    if cfg.group_size == 1 or cfg.group_size < 0:
        raise CellError(f"seeds train together in groups of 2 or more (0: all at once), got {cfg.group_size}")
    check_batch_parts(cfg)
    check_ramp(cfg)


def check_ramp(cfg: CellConfig) -> None:
    if cfg.ramp_from and not (1 <= cfg.ramp_from < cfg.batch_size):
        raise CellError(f"a batch-size ramp starts at 1 to {cfg.batch_size - 1} images (0: no ramp), got {cfg.ramp_from}")
    if cfg.ramp_every < 1:
        raise CellError(f"a batch-size ramp doubles every 1 or more epochs, got {cfg.ramp_every}")
    if cfg.ramp_from and (cfg.micro_batch or cfg.splits > 1):
        raise CellError("a batch-size ramp cannot be combined with gradient accumulation or Solution 2: choose one")
    if cfg.ramp_from == 1 and has_batch_norm(cfg.model):
        raise CellError("BatchNorm cannot normalize a batch of one image: start the ramp at 2 or more")


def check_batch_parts(cfg: CellConfig) -> None:
    """The model, and the parts a batch is cut into: micro-batches, BatchNorm's virtual batches."""
    if cfg.model not in MODELS:
        raise CellError(f"unknown model {cfg.model!r}; choose one of {', '.join(MODELS)}")
    least = 2 if has_batch_norm(cfg.model) else 1  # BatchNorm cannot normalize one image
    if cfg.micro_batch and not (least <= cfg.micro_batch < cfg.batch_size):
        raise CellError(f"micro-batches must hold {least} to {cfg.batch_size - 1} images (0: off), got {cfg.micro_batch}")
    if cfg.micro_batch and cfg.splits > 1:
        raise CellError("gradient accumulation and Solution 2 cannot be combined: choose one")
    if cfg.ghost_batch and not has_batch_norm(cfg.model):
        raise CellError(f"ghost BatchNorm needs a BatchNorm model (mlp_bn, cnn_bn), not {cfg.model!r}")
    if cfg.ghost_batch and not (2 <= cfg.ghost_batch < cfg.batch_size):
        raise CellError(f"virtual batches must hold 2 to {cfg.batch_size - 1} images (0: the whole batch), got {cfg.ghost_batch}")
    if has_batch_norm(cfg.model) and cfg.batch_size < 2:
        raise CellError("BatchNorm cannot normalize a batch of one image: use a batch size of 2 or more")


def uses_fused_step(cfg: CellConfig) -> bool:
    """The fused step computes exactly plain SGD on the mlp: no momentum, no weight decay."""
    plain = cfg.splits == 1 and cfg.micro_batch == 0 and cfg.ramp_from == 0
    return cfg.fused and cfg.model == "mlp" and cfg.optimizer.name == "sgd" and cfg.optimizer.weight_decay == 0 and plain


def step_implementation(cfg: CellConfig) -> str:
    if cfg.splits > 1:
        how = f"Solution 2: one forward pass, {cfg.splits} {BY_NAME[cfg.optimizer.name].description} updates"
    else:
        how = "fused plain SGD" if uses_fused_step(cfg) else f"eager autograd + {BY_NAME[cfg.optimizer.name].description}"
    if cfg.micro_batch:
        how += f", the gradient accumulated over micro-batches of {cfg.micro_batch}"
    if cfg.ghost_batch:
        how += f", ghost BatchNorm over virtual batches of {cfg.ghost_batch}"
    if cfg.ramp_from:
        lr = "scaled with it" if cfg.ramp_scaled else "held"
        how += f", the batch ramped from {cfg.ramp_from} to {cfg.batch_size} (x2 every {cfg.ramp_every} epoch(s), the lr {lr})"
    groups = seed_groups(cfg)
    together = "one after another" if cfg.model in PER_SEED else "stacked"
    if cfg.model not in PER_SEED and len(groups) > 1:
        together += f" in {len(groups)} groups"
    return f"{how}, {len(cfg.seeds)} seed(s) {together}"


def seed_groups(cfg: CellConfig) -> list[tuple[int, ...]]:
    """The seeds that train together: where stacking pays (the mlp), all of a cell's at once, or
    with cfg.group_size in S // group_size groups as even as possible (10 in groups of 4: 5 and
    5; 5 in groups of 2: 2 and 3), never a seed alone: a stack of one runs other kernels, and a
    seed's bits must not depend on its group. One after another, epoch by epoch, where stacking
    does not pay (the cnn; see batchlab.train.ensemble)."""
    if cfg.model in PER_SEED:
        return [(s,) for s in cfg.seeds]
    count = max(1, len(cfg.seeds) // cfg.group_size) if cfg.group_size else 1
    bounds = [i * len(cfg.seeds) // count for i in range(count + 1)]
    return [tuple(cfg.seeds[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
