"""Train one cell: every seed of it at once, as one vectorized ensemble.

The whole dataset stays on the device; each seed draws its own `randperm` per epoch (from its own
generator, so its data order is that of a lone run of it), and its batches are gathered a few
thousand samples at a time. No DataLoader and no `.item()` per step: the seeds' losses stay on
the device and are copied to the host once per *window*, which ends after `check_every` steps or
about `window_seconds`, whichever comes first, at a probe and at the epoch's end. Results never
depend on where a window ends: a seed's divergence is caught on the device at its own step (see
batchlab.steps).

A training job reads like the short script it is (`train_cell`): set up; for each epoch train its
windows, evaluate, check each seed's fate, snapshot; finish.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from batchlab.batches import Batches
from batchlab.cell_config import (
    CellConfig,
    check_cell,
    iterations_per_epoch,
    lr_schedule,
    seed_groups,
    step_implementation,
    uses_fused_step,
    warmup_steps,
)
from batchlab.data import DeviceData
from batchlab.ensemble import Ensemble, evaluate
from batchlab.fates import (
    collapse_reason,
    divergence_reason,
    first_bad_step,
    is_collapsed,
    subset_collapse_reason,
)
from batchlab.probes import Probes, early_probe_steps, final_sharpness, probe_interval
from batchlab.records import CellResult, SeedResult, TrainState
from batchlab.schedule import probe_due, subset_due, window_end
from batchlab.steps import SGD, autograd_step, fused_mlp_sgd

__all__ = ["CellConfig", "CellResult", "SeedResult", "TrainState", "train_cell"]  # the trainer's API


@dataclass
class Run:
    """A cell's ensemble in training: its weights, their update, and each seed's record."""

    cfg: CellConfig
    data: DeviceData
    device: torch.device
    ens: Ensemble
    optimizer: SGD | None
    step_fn: Callable
    alive: torch.Tensor  # on the device, kept by the step
    generators: list[torch.Generator]
    probes: Probes
    seeds: list[SeedResult]
    iters: int
    lr_at: Callable[[int], float]
    log: Callable[[str], None]
    step: int = 0
    epoch: int = 0
    chunks: list[list[np.ndarray]] = field(default_factory=list)  # per seed, this run's losses
    first_step_seconds: float | None = None
    train_seconds: float = 0.0
    sharpness_seconds: float = 0.0
    since_probe: list[list[np.ndarray]] = field(default_factory=list)  # per seed, since the last probe
    probe_every: int = 0  # steps between regular probes (0: at epoch ends only)
    track_every: int = 0  # steps between evaluations of the fixed subset in the last epoch (0: off)
    early_probes: frozenset[int] = frozenset()  # steps of the early, test-only probes
    fate_every: int = 0  # steps between collapse checks on the fixed subset within an epoch (0: off)

    def training(self) -> list[int]:
        return [i for i, s in enumerate(self.seeds) if s.status == "ok"]

    def losses(self, i: int) -> np.ndarray:
        return np.concatenate([self.seeds[i].losses, *self.chunks[i]]).astype(np.float32)


def setup(cfg, data, device, resume: TrainState | None, log) -> Run:
    check_cell(cfg)
    seeds = list(cfg.seeds)
    ens = Ensemble.initialize(cfg.model, seeds, device)
    threshold = cfg.divergence_loss
    alive = torch.ones(len(seeds), dtype=torch.bool, device=device)
    # a group of one seed rewinds a window in which it diverged (see train_epoch) instead of
    # masking every update: fewer ops per step, a pass less over the weights
    masked = len(seeds) > 1
    if uses_fused_step(cfg):
        optimizer, step_fn = None, fused_mlp_sgd(ens, alive, threshold, cfg.batch_size, masked)
    else:
        optimizer = SGD(ens.tensors(), cfg.momentum, cfg.weight_decay)
        step_fn = autograd_step(ens, optimizer, alive, threshold, cfg.splits, masked)
    iters = iterations_per_epoch(data.n_train, cfg.batch_size)
    run = Run(
        cfg=cfg,
        data=data,
        device=device,
        ens=ens,
        optimizer=optimizer,
        step_fn=step_fn,
        alive=alive,
        generators=[torch.Generator().manual_seed(s) for s in seeds],  # CPU: same order everywhere
        probes=Probes(cfg, data, ens, resume.probe_generators if resume else None),
        seeds=[SeedResult(s, np.zeros(0, np.float32), [], []) for s in seeds],
        iters=iters,
        lr_at=lr_schedule(cfg.lr, warmup_steps(cfg, iters)),
        log=log,
        probe_every=probe_interval(cfg.probe_every_samples, cfg.batch_size),
        track_every=probe_interval(cfg.track_every_samples, cfg.batch_size) if cfg.track_subset > 0 else 0,
        early_probes=frozenset(early_probe_steps(cfg.probe_every_samples, cfg.batch_size)),
        fate_every=probe_interval(cfg.fate_every_samples, cfg.batch_size) if cfg.track_subset > 0 else 0,
    )
    if resume is not None:
        restore(run, resume)
    run.chunks = [[] for _ in seeds]
    return run


def restore(run: Run, state: TrainState) -> None:
    run.ens.load(state.params)
    if run.optimizer is not None:
        run.optimizer.load(state.momentum)
    run.alive.copy_(torch.tensor(state.alive, dtype=torch.bool))
    for gen, saved in zip(run.generators, state.generators, strict=True):
        gen.set_state(saved)
    run.seeds = [SeedResult(**{**s, "losses": np.asarray(s["losses"], np.float32)}) for s in state.seeds]
    run.step, run.epoch = state.step, state.epoch
    run.train_seconds = max(sum(r["ensemble_seconds"] for r in s.epochs) for s in run.seeds)
    run.log(f"resumed from the checkpoint after epoch {state.epoch}")


def subset_checks(run: Run, pos: int) -> None:
    """At step pos of the epoch, where due: each training seed's loss on the fixed subset (the
    model's oscillation, in the last epoch) and its fate (collapsed: it answers one class at
    chance), from one evaluation of the subset."""
    track, fate = subset_due(run, pos)
    if not (track or fate) or not run.training():
        return
    out, step = run.probes.subset(), run.step
    for i in run.training():
        if track:
            run.seeds[i].track.append([step, out[i]["loss"]])
        if fate and is_collapsed(out[i]["loss"], out[i]["acc"], out[i]["top_class_share"]):
            freeze_collapsed(run, i, subset_collapse_reason(step, run.probes.track_n, out[i]))


def freeze_collapsed(run: Run, i: int, reason: str) -> None:
    seed = run.seeds[i]
    seed.status, seed.stopped_step, seed.stop_reason = "collapsed", run.step, reason
    run.alive[i] = False
    run.log(f"seed {seed.seed}: COLLAPSED: {reason}; frozen, the other seeds train on")


def reached_target(run: Run) -> set[int]:
    """Indexes of the seeds whose probes reached cfg.noise_at_val_acc already."""
    target = run.cfg.noise_at_val_acc
    if not target:
        return set()
    return {i for i, s in enumerate(run.seeds) if any(r["val_acc"] >= target for r in s.probes)}


def record_window(run: Run, values: np.ndarray, since_probe: list[list[np.ndarray]]) -> None:
    """Each training seed's losses of a window [W, S]; a seed that diverged keeps its losses up
    to the bad step and is recorded as diverged there."""
    start = run.step
    for i in run.training():
        column = values[:, i]
        bad = first_bad_step(column, run.cfg.divergence_loss)
        if bad is not None:
            column = column[: bad + 1]
            seed = run.seeds[i]
            seed.status, seed.stopped_step = "diverged", start + bad + 1
            seed.stop_reason = divergence_reason(float(column[-1]), seed.stopped_step, run.cfg.divergence_loss)
            run.log(f"seed {seed.seed}: DIVERGED: {seed.stop_reason}; frozen, the other seeds train on")
        run.chunks[i].append(column)
        since_probe[i].append(column)
    run.step += len(values)


def saved_weights(run: Run) -> list[torch.Tensor]:
    buffers = run.optimizer.buffers if run.optimizer is not None else []
    return [t.detach().clone() for t in [*run.ens.tensors(), *buffers]]


def rewind_to_divergence(run: Run, values: np.ndarray, saved, batches: Batches, offset: int, start: int) -> None:
    """An unmasked group of one seed whose loss went bad at some step of this window goes back
    to the window's start and replays the steps before that one: its weights are then those the
    bad loss came from, exactly as a masked step would have frozen them."""
    bad = first_bad_step(values[:, 0], run.cfg.divergence_loss)
    if bad is None or run.seeds[0].status != "ok":
        return
    with torch.no_grad():
        buffers = run.optimizer.buffers if run.optimizer is not None else []
        for tensor, copy in zip([*run.ens.tensors(), *buffers], saved, strict=True):
            tensor.copy_(copy)
    for pos in range(start, start + bad):
        run.step_fn(*batches(pos), run.lr_at(offset + pos))
    run.alive[0] = False


def train_epoch(run: Run, epoch: int, window_seconds: float) -> float:
    """One epoch of the ensemble, window by window; returns its training seconds."""
    cfg, device = run.cfg, run.device
    _sync(device)
    t0 = time.perf_counter()
    probe_s0 = run.probes.total_seconds()
    offset = run.step
    order = torch.stack([torch.randperm(run.data.n_train, generator=g) for g in run.generators])
    batches = Batches(run.data, order.to(device), cfg.batch_size)
    since_probe: list[list[np.ndarray]] = [[] for _ in run.seeds]
    pos, last_line = 0, t0
    while pos < run.iters and run.training():
        stop = 1 if offset + pos == 0 else window_end(run, offset, pos)
        deadline = time.perf_counter() + window_seconds
        window, start, saved = [], pos, None if run.step_fn.masked else saved_weights(run)
        while pos < stop:
            window.append(run.step_fn(*batches(pos), run.lr_at(offset + pos)))
            pos += 1
            if time.perf_counter() > deadline and run.step_fn.settled():
                break
        run.step_fn.flush()  # the weights are complete again: probes, evaluations, checkpoints
        values = torch.stack(window).float().cpu().numpy()  # the one host sync per window
        if saved is not None:
            rewind_to_divergence(run, values, saved, batches, offset, start)
        if offset + pos == 1:
            run.first_step_seconds = time.perf_counter() - t0
        record_window(run, values, since_probe)
        now = time.perf_counter()
        if now - last_line >= window_seconds or pos == run.iters:
            progress_line(run, epoch, pos, now - t0 - (run.probes.total_seconds() - probe_s0), since_probe)
            last_line = now
        subset_checks(run, pos)
        noise = probe_due(run, offset + pos)
        if pos < run.iters and noise is not None and run.training():
            recent = {i: _mean(since_probe[i]) for i in run.training()}
            add_probes(run, run.probes(offset + pos, run.iters, recent, noise=noise, reached=reached_target(run)))
            since_probe = [[] for _ in run.seeds]
    run.since_probe = since_probe
    return time.perf_counter() - t0 - (run.probes.total_seconds() - probe_s0)


def progress_line(run: Run, epoch: int, pos: int, seconds: float, since_probe) -> None:
    cfg, training = run.cfg, run.training()
    rate = pos * cfg.batch_size / seconds if seconds > 0 else float("nan")  # per seed
    recent = [_mean(since_probe[i]) for i in training if since_probe[i]]
    left = (run.iters - pos + (cfg.epochs - epoch) * run.iters) * cfg.batch_size / rate if rate > 0 else 0
    run.log(
        f"epoch {epoch}/{cfg.epochs} step {pos}/{run.iters} | {len(training)}/{len(run.seeds)} seeds training"
        f" | {rate * run.ens.size:.0f} samples/s | recent loss {np.mean(recent) if recent else float('nan'):.4f}"
        f" | cell ETA {left:.0f} s"
    )


def add_probes(run: Run, rows: list[dict]) -> None:
    by_seed = {s.seed: s for s in run.seeds}
    for row in rows:
        by_seed[row["seed"]].probes.append(row)


def _mean(chunks: list[np.ndarray]) -> float:
    return float(np.mean(np.concatenate(chunks))) if chunks else float("nan")


def end_epoch(run: Run, epoch: int, seconds: float) -> None:
    """Evaluate every training seed, probe it, and freeze the ones that collapsed."""
    cfg, data, n = run.cfg, run.data, run.data.n_train
    train_n = min(cfg.train_eval_size, n) if cfg.train_eval_size > 0 else n
    t0 = time.perf_counter()
    train_eval = evaluate(run.ens, data.train_x[:train_n], data.train_y[:train_n])
    val_eval = evaluate(run.ens, data.select_x, data.select_y)
    test_eval = evaluate(run.ens, data.test_x, data.test_y) if data.val_x is not None else val_eval
    run.probes.seconds["epoch_eval"] += time.perf_counter() - t0
    training = run.training()
    recent = {i: _mean(run.since_probe[i]) if run.since_probe[i] else _mean(run.chunks[i][-1:]) for i in training}
    add_probes(run, run.probes(run.step, run.iters, recent, val=val_eval, reached=reached_target(run)))
    per_seed = seconds / run.ens.size  # the ensemble's time, shared by its seeds
    for i in training:
        seed = run.seeds[i]
        row = {
            "seed": seed.seed,
            "epoch": epoch,
            "iterations": run.iters,
            "samples": n,
            "seconds": per_seed,
            "samples_per_s": n / per_seed if per_seed > 0 else float("nan"),
            "ms_per_step": 1000.0 * per_seed / run.iters,
            "ensemble_seconds": seconds,
            "running_loss": float(np.mean(run.losses(i)[-run.iters :])),
            "train_loss": train_eval[i]["loss"],
            "train_acc": train_eval[i]["acc"],
            "val_loss": val_eval[i]["loss"],
            "val_acc": val_eval[i]["acc"],
            "top_class_share": val_eval[i]["top_class_share"],
            "test_loss": test_eval[i]["loss"],
            "test_acc": test_eval[i]["acc"],
        }
        seed.epochs.append(row)
        run.log(
            f"epoch {epoch}/{cfg.epochs} seed {seed.seed}: train loss {row['train_loss']:.4f} acc"
            f" {row['train_acc']:.4f} | {data.selection_set} loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}"
            f" | test acc {row['test_acc']:.4f}"
        )
        if is_collapsed(row["train_loss"], row["val_acc"], row["top_class_share"]):
            freeze_collapsed(run, i, collapse_reason(epoch, row))
    run.log(
        f"epoch {epoch}/{cfg.epochs}: {seconds:.2f} s for {run.ens.size} seed(s),"
        f" {n * run.ens.size / seconds:.0f} samples/s, {1000 * seconds / run.iters:.3f} ms/step"
    )
    run.epoch = epoch


def snapshot(run: Run) -> TrainState:
    seeds = []
    for i, s in enumerate(run.seeds):
        record = {
            **s.__dict__,
            "losses": run.losses(i),
            "epochs": list(s.epochs),
            "probes": list(s.probes),
            "track": list(s.track),
        }
        seeds.append(record)
    return TrainState(
        epoch=run.epoch,
        step=run.step,
        params=run.ens.cpu_state(),
        momentum=run.optimizer.state() if run.optimizer is not None else [],
        alive=run.alive.cpu().tolist(),
        generators=[g.get_state() for g in run.generators],
        probe_generators=run.probes.states(),
        seeds=seeds,
    )


def stopped_within_an_epoch(seed: SeedResult, iters: int) -> bool:
    """Diverged, or collapsed at a check inside an epoch: its last epoch row predates its
    frozen weights."""
    return seed.status == "diverged" or not seed.epochs or (seed.stopped_step or 0) > len(seed.epochs) * iters


def finish(run: Run) -> list[SeedResult]:
    """Each seed's final record: the last epoch's evaluation and the sharpness, or for a seed
    frozen inside an epoch the evaluation of the weights it was frozen with (a diverged seed's
    training loss and sharpness are NaN: its loss exploded)."""
    data = run.data
    unfinished = any(stopped_within_an_epoch(s, run.iters) for s in run.seeds)
    train_n = min(run.cfg.train_eval_size, data.n_train) if run.cfg.train_eval_size > 0 else data.n_train
    train_eval = evaluate(run.ens, data.train_x[:train_n], data.train_y[:train_n]) if unfinished else None
    val_eval = evaluate(run.ens, data.select_x, data.select_y) if unfinished else None
    test_eval = evaluate(run.ens, data.test_x, data.test_y) if unfinished and data.val_x is not None else val_eval
    sharp_s = 0.0
    for i, seed in enumerate(run.seeds):
        seed.losses, seed.final = run.losses(i), {}
        if stopped_within_an_epoch(seed, run.iters):
            diverged = seed.status == "diverged" or not seed.epochs
            seed.final = {
                "train_loss": float("nan") if diverged else train_eval[i]["loss"],
                "train_acc": float("nan") if diverged else train_eval[i]["acc"],
                "val_loss": val_eval[i]["loss"],
                "val_acc": val_eval[i]["acc"],
                "test_loss": test_eval[i]["loss"],
                "test_acc": test_eval[i]["acc"],
                "sharpness": float("nan"),
                "sharpness_change": float("nan"),
            }
            if diverged:
                continue
        else:
            last = seed.epochs[-1]
            seed.final = {k: last[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")}
        t0 = time.perf_counter()
        seed.final["sharpness"], seed.final["sharpness_change"] = final_sharpness(
            run.cfg, run.data, run.ens.module(i), seed.seed
        )
        sharp_s += time.perf_counter() - t0
    run.sharpness_seconds = sharp_s
    return run.seeds


def train_cell(
    cfg: CellConfig,
    data: DeviceData,
    device: torch.device,
    resume: list[TrainState] | None = None,
    on_epoch_end: Callable[[list[TrainState]], None] | None = None,
    log: Callable[[str], None] = print,
    window_seconds: float = 10.0,
) -> CellResult:
    """Train every seed of a cell; a seed that diverges or collapses is frozen at its step while
    the others train on, and the cell ends early when none is left. The checkpoint after each
    epoch (on_epoch_end) holds every group of seeds."""
    groups = seed_groups(cfg)
    if resume is not None and [tuple(s["seed"] for s in state.seeds) for state in resume] != groups:
        raise ValueError("the checkpoint's seed groups are not this cell's")
    states = resume or [None] * len(groups)
    runs = [setup(replace(cfg, seeds=g), data, device, st, log) for g, st in zip(groups, states, strict=True)]
    for epoch in range(min(run.epoch for run in runs) + 1, cfg.epochs + 1):
        for run in runs:
            if run.training() and run.epoch < epoch:
                seconds = train_epoch(run, epoch, window_seconds)
                run.train_seconds += seconds
                if run.training():
                    end_epoch(run, epoch, seconds)
        if not any(run.training() for run in runs):
            log(f"epoch {epoch}: every seed has stopped; ending this cell")
            break
        if on_epoch_end is not None:
            on_epoch_end([snapshot(run) for run in runs])
    seeds = [seed for run in runs for seed in finish(run)]
    probe_s = {k: sum(run.probes.seconds[k] for run in runs) for k in runs[0].probes.seconds}
    sharp_s, train_s = sum(r.sharpness_seconds for r in runs), sum(r.train_seconds for r in runs)
    measure = {**probe_s, "sharpness": sharp_s, "training": train_s}
    if train_s > 0:
        measure["noise_and_sharpness_share"] = (probe_s["noise"] + sharp_s) / train_s
        # what measuring costs beside training: the probes and the sharpness (the epoch-end
        # evaluations, which every cell's record needs, are timed apart as epoch_eval)
        measure["measure_share"] = (probe_s["val_eval"] + probe_s["noise"] + probe_s["track"] + sharp_s) / train_s
    return CellResult(
        config=cfg,
        seeds=seeds,
        step_implementation=step_implementation(cfg),
        measure_seconds=measure,
        first_step_seconds=runs[0].first_step_seconds,
        resumed_from_epoch=min(state.epoch for state in resume) if resume is not None else None,
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
