"""Train one cell: every seed of it at once, as one vectorized ensemble.

The whole dataset stays on the device; each seed draws its own `randperm` per epoch (from its own
generator, so its data order is that of a lone run of it), and its batches are gathered a few
thousand samples at a time. No DataLoader and no `.item()` per step: the seeds' losses stay on
the device and are copied to the host once per *window*, which ends after `check_every` steps or
about `window_seconds`, whichever comes first, at a probe and at the epoch's end. Results never
depend on where a window ends: a seed's divergence is caught on the device at its own step (see
batchlab.train.steps).

A training job reads like the short script it is (`train_cell`): set up; for each epoch train its
windows, evaluate, check each seed's fate, snapshot; finish. On CUDA the step is replayed from a
CUDA graph where it can be (batchlab.train.graphs), in full fp32 (no TF32), like the CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from batchlab.data.tensors import DeviceData
from batchlab.train.batches import Batches
from batchlab.train.cell_config import (
    CellConfig,
    CellError,
    check_cell,
    seed_groups,
    step_implementation,
    uses_fused_step,
)
from batchlab.train.devices import strict_fp32
from batchlab.train.ensemble import Ensemble, evaluate
from batchlab.train.fates import collapse_reason, first_bad_step, is_collapsed, subset_collapse_reason
from batchlab.train.graphs import graphed, step_note
from batchlab.train.optimizers import build_optimizer
from batchlab.train.plan import EpochPlan, lr_schedule, warmup_steps
from batchlab.train.probes import Probes, early_probe_steps, final_sharpness
from batchlab.train.records import CellResult, SeedResult, TrainState
from batchlab.train.run import Run
from batchlab.train.steps import autograd_step, fused_mlp_sgd


def train_cell(
    cfg: CellConfig,
    data: DeviceData,
    device: torch.device,
    resume: list[TrainState] | None = None,
    on_epoch_end: Callable[[list[TrainState]], None] | None = None,
    log: Callable[[str], None] = print,
    window_seconds: float = 10.0,
    cuda_graphs: bool = True,
) -> CellResult:
    """Train every seed of a cell; a seed that diverges or collapses is frozen at its step while
    the others train on, and the cell ends early when none is left. The checkpoint after each
    epoch (on_epoch_end) holds every group of seeds. cuda_graphs: replay the step from a CUDA
    graph on CUDA where it can be (ignored on the CPU)."""
    groups = seed_groups(cfg)
    if resume is not None and [tuple(s["seed"] for s in state.seeds) for state in resume] != groups:
        raise ValueError("the checkpoint's seed groups are not this cell's")
    states = resume or [None] * len(groups)
    runs = [
        setup(replace(cfg, seeds=g), data, device, st, log, cuda_graphs)
        for g, st in zip(groups, states, strict=True)
    ]
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
            on_epoch_end([run.snapshot() for run in runs])
    seeds = [seed for run in runs for seed in finish(run)]
    return CellResult(
        config=cfg,
        seeds=seeds,
        step_implementation=step_implementation(cfg) + step_note(runs[0].step_fn),
        measure_seconds=measure_seconds(runs),
        first_step_seconds=runs[0].first_step_seconds,
        resumed_from_epoch=min(state.epoch for state in resume) if resume is not None else None,
    )


def setup(cfg, data, device, resume: TrainState | None, log, cuda_graphs: bool = True) -> Run:
    check_cell(cfg)
    if device.type == "cuda":
        strict_fp32()
    seeds = list(cfg.seeds)
    ens = Ensemble.initialize(cfg.model, seeds, device, cfg.init_jitter)
    ens.ghost = cfg.ghost_batch
    plan = cfg.plan(data.n_train)
    for b in set(plan.batch_sizes) if ens.buffers else ():
        if data.n_train % b == 1:
            raise CellError(
                f"an epoch of {data.n_train} images in batches of {b} ends with a batch of one image,"
                " which BatchNorm cannot normalize: choose another batch size"
            )
    threshold = cfg.divergence_loss
    alive = torch.ones(len(seeds), dtype=torch.bool, device=device)
    # a group of one seed rewinds a window in which it diverged (see train_epoch) instead of
    # masking every update: fewer ops per step, a pass less over the weights
    masked = len(seeds) > 1
    graphs = device.type == "cuda" and cuda_graphs  # a captured step keeps no Python state
    if uses_fused_step(cfg):
        optimizer, step_fn = None, fused_mlp_sgd(ens, alive, threshold, cfg.batch_size, masked, defer=not graphs)
    else:
        optimizer = build_optimizer(ens.tensors(), cfg.optimizer)
        step_fn = autograd_step(ens, optimizer, alive, threshold, cfg.splits, masked, cfg.micro_batch)
    step_fn = graphed(step_fn, device, cuda_graphs, log)
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
        plan=plan,
        lr_at=ramped_lr(cfg, plan, lr_schedule(cfg.lr, warmup_steps(cfg.warmup_epochs, plan.iters[0]), plan.total, cfg.schedule)),
        log=log,
        early_probes=frozenset(early_probe_steps(cfg.probe_every_samples, plan.batch_sizes[0])),
    )
    run.begin_epoch(1)
    if resume is not None:
        run.restore(resume)
    run.chunks = [[] for _ in seeds]
    return run


def ramped_lr(cfg: CellConfig, plan: EpochPlan, lr_at: Callable[[int], float]) -> Callable[[int], float]:
    """On a batch-size ramp with cfg.ramp_scaled, the lr scaled with the batch (lr x b / B, so
    lr / b holds); otherwise as scheduled."""
    if not (cfg.ramp_from and cfg.ramp_scaled):
        return lr_at
    return lambda t: lr_at(t) * plan.batch_sizes[plan.epoch_of(t + 1) - 1] / cfg.batch_size


def train_epoch(run: Run, epoch: int, window_seconds: float) -> float:
    """One epoch of the ensemble, window by window; returns its training seconds."""
    device = run.device
    run.begin_epoch(epoch)
    _sync(device)
    t0 = time.perf_counter()
    probe_s0 = run.probes.total_seconds()
    offset = run.step
    order = torch.stack([torch.randperm(run.data.n_train, generator=g) for g in run.generators])
    batches = Batches(run.data, order.to(device), run.batch_size)
    since_probe: list[list[np.ndarray]] = [[] for _ in run.seeds]
    pos, last_line = 0, t0
    while pos < run.iters and run.training():
        stop = 1 if offset + pos == 0 else run.window_end(offset, pos)
        deadline = time.perf_counter() + window_seconds
        window, start, saved = [], pos, None if run.step_fn.masked else [t.detach().clone() for t in run.weights()]
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
        run.record_window(values, since_probe)
        now = time.perf_counter()
        if now - last_line >= window_seconds or pos == run.iters:
            progress_line(run, epoch, pos, now - t0 - (run.probes.total_seconds() - probe_s0), since_probe)
            last_line = now
        subset_checks(run, pos)
        noise = run.probe_due(offset + pos)
        if pos < run.iters and noise is not None and run.training():
            recent = {i: mean_of(since_probe[i]) for i in run.training()}
            run.add_probes(run.probes(offset + pos, run.plan, recent, noise=noise, reached=run.reached_target()))
            since_probe = [[] for _ in run.seeds]
    run.since_probe = since_probe
    return time.perf_counter() - t0 - (run.probes.total_seconds() - probe_s0)


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
    recent = {i: mean_of(run.since_probe[i]) if run.since_probe[i] else mean_of(run.chunks[i][-1:]) for i in training}
    run.add_probes(run.probes(run.step, run.plan, recent, val=val_eval, reached=run.reached_target()))
    per_seed = seconds / run.ens.size  # the ensemble's time, shared by its seeds
    for i in training:
        seed = run.seeds[i]
        row = {
            "seed": seed.seed,
            "epoch": epoch,
            "epoch_batch_size": run.batch_size,
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
            run.freeze_collapsed(i, collapse_reason(epoch, row))
    run.log(
        f"epoch {epoch}/{cfg.epochs}: {seconds:.2f} s for {run.ens.size} seed(s),"
        f" {n * run.ens.size / seconds:.0f} samples/s, {1000 * seconds / run.iters:.3f} ms/step"
    )
    run.epoch = epoch


def stopped_within_an_epoch(seed: SeedResult, plan: EpochPlan) -> bool:
    """Diverged, or collapsed at a check inside an epoch: its last epoch row predates its
    frozen weights."""
    return seed.status == "diverged" or not seed.epochs or (seed.stopped_step or 0) > plan.steps_before(len(seed.epochs) + 1)


def finish(run: Run) -> list[SeedResult]:
    """Each seed's final record: the last epoch's evaluation and the sharpness, or for a seed
    frozen inside an epoch the evaluation of the weights it was frozen with (a diverged seed's
    training loss and sharpness are NaN: its loss exploded)."""
    data = run.data
    unfinished = any(stopped_within_an_epoch(s, run.plan) for s in run.seeds)
    train_n = min(run.cfg.train_eval_size, data.n_train) if run.cfg.train_eval_size > 0 else data.n_train
    train_eval = evaluate(run.ens, data.train_x[:train_n], data.train_y[:train_n]) if unfinished else None
    val_eval = evaluate(run.ens, data.select_x, data.select_y) if unfinished else None
    test_eval = evaluate(run.ens, data.test_x, data.test_y) if unfinished and data.val_x is not None else val_eval
    sharp_s = 0.0
    for i, seed in enumerate(run.seeds):
        seed.losses, seed.final = run.losses(i), {}
        if stopped_within_an_epoch(seed, run.plan):
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


def measure_seconds(runs: list[Run]) -> dict:
    """What measuring cost beside training, summed over the cell's groups of seeds."""
    probe_s = {k: sum(run.probes.seconds[k] for run in runs) for k in runs[0].probes.seconds}
    sharp_s, train_s = sum(r.sharpness_seconds for r in runs), sum(r.train_seconds for r in runs)
    measure = {**probe_s, "sharpness": sharp_s, "training": train_s}
    if train_s > 0:
        measure["noise_and_sharpness_share"] = (probe_s["noise"] + sharp_s) / train_s
        # what measuring costs beside training: the probes and the sharpness (the epoch-end
        # evaluations, which every cell's record needs, are timed apart as epoch_eval)
        measure["measure_share"] = (
            probe_s["val_eval"] + probe_s["noise"] + probe_s["track"] + sharp_s
        ) / train_s
    return measure


def subset_checks(run: Run, pos: int) -> None:
    """At step pos of the epoch, where due: each training seed's loss on the fixed subset (the
    model's oscillation, in the last epoch) and its fate (collapsed: it answers one class at
    chance), from one evaluation of the subset."""
    track, fate = run.subset_due(pos)
    if not (track or fate) or not run.training():
        return
    out, step = run.probes.subset(), run.step
    for i in run.training():
        if track:
            run.seeds[i].track.append([step, out[i]["loss"]])
        if fate and is_collapsed(out[i]["loss"], out[i]["acc"], out[i]["top_class_share"]):
            run.freeze_collapsed(i, subset_collapse_reason(step, run.probes.track_n, out[i]))


def rewind_to_divergence(run: Run, values: np.ndarray, saved, batches: Batches, offset: int, start: int) -> None:
    """An unmasked group of one seed whose loss went bad at some step of this window goes back
    to the window's start and replays the steps before that one: its weights are then those the
    bad loss came from, exactly as a masked step would have frozen them."""
    bad = first_bad_step(values[:, 0], run.cfg.divergence_loss)
    if bad is None or run.seeds[0].status != "ok":
        return
    with torch.no_grad():
        for tensor, copy in zip(run.weights(), saved, strict=True):
            tensor.copy_(copy)
    for pos in range(start, start + bad):
        run.step_fn(*batches(pos), run.lr_at(offset + pos))
    run.alive[0] = False


def progress_line(run: Run, epoch: int, pos: int, seconds: float, since_probe) -> None:
    cfg, training = run.cfg, run.training()
    rate = pos * run.batch_size / seconds if seconds > 0 else float("nan")  # per seed
    recent = [mean_of(since_probe[i]) for i in training if since_probe[i]]
    left = (run.plan.samples_at(run.plan.total) - run.plan.samples_at(run.step)) / rate if rate > 0 else 0
    run.log(
        f"epoch {epoch}/{cfg.epochs} step {pos}/{run.iters} | {len(training)}/{len(run.seeds)} seeds training"
        f" | {rate * run.ens.size:.0f} samples/s | recent loss {np.mean(recent) if recent else float('nan'):.4f}"
        f" | cell ETA {left:.0f} s"
    )


def mean_of(chunks: list[np.ndarray]) -> float:
    return float(np.mean(np.concatenate(chunks))) if chunks else float("nan")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
