"""What the end of a training window does to a cell's run (batchlab.train.Run): record each
seed's losses and catch a divergence at its own step, check the fixed subset (the model's
oscillation, a collapse), log the progress line, keep the probes' rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from batchlab.batches import Batches
from batchlab.fates import divergence_reason, first_bad_step, is_collapsed, subset_collapse_reason
from batchlab.schedule import subset_due

if TYPE_CHECKING:
    from batchlab.train import Run


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


def progress_line(run: Run, epoch: int, pos: int, seconds: float, since_probe) -> None:
    cfg, training = run.cfg, run.training()
    rate = pos * cfg.batch_size / seconds if seconds > 0 else float("nan")  # per seed
    recent = [mean_of(since_probe[i]) for i in training if since_probe[i]]
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


def mean_of(chunks: list[np.ndarray]) -> float:
    return float(np.mean(np.concatenate(chunks))) if chunks else float("nan")
