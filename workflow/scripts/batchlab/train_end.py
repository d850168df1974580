"""A cell's run (batchlab.train.Run) brought back from a checkpoint, saved to one, and turned
into each seed's final record."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from batchlab.ensemble import evaluate
from batchlab.probes import final_sharpness
from batchlab.records import SeedResult, TrainState

if TYPE_CHECKING:
    from batchlab.train import Run


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
