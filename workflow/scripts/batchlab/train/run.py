"""A cell's ensemble in training (Run): its weights, their update and each seed's record, with
what a window end reads and writes of it (the schedule of probes and subset checks, each seed's
losses and fate) and its checkpoint. The loop that drives it is batchlab.train.loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from batchlab.data.tensors import DeviceData
from batchlab.train.cell_config import CellConfig
from batchlab.train.ensemble import Ensemble
from batchlab.train.fates import divergence_reason, first_bad_step
from batchlab.train.plan import EpochPlan
from batchlab.train.probes import Probes, probe_interval
from batchlab.train.records import SeedResult, TrainState


@dataclass
class Run:
    cfg: CellConfig
    data: DeviceData
    device: torch.device
    ens: Ensemble
    optimizer: object | None  # batchlab.train.optimizers (None: the fused step updates by itself)
    step_fn: Callable
    alive: torch.Tensor  # on the device, kept by the step
    generators: list[torch.Generator]
    probes: Probes
    seeds: list[SeedResult]
    plan: EpochPlan  # each epoch's batch size and iterations
    lr_at: Callable[[int], float]
    log: Callable[[str], None]
    step: int = 0
    epoch: int = 0
    chunks: list[list[np.ndarray]] = field(default_factory=list)  # per seed, this run's losses
    first_step_seconds: float | None = None
    train_seconds: float = 0.0
    sharpness_seconds: float = 0.0
    since_probe: list[list[np.ndarray]] = field(default_factory=list)  # per seed, since the last probe
    early_probes: frozenset[int] = frozenset()  # steps of the early, test-only probes
    # this epoch's (begin_epoch): batch size, iterations, and the intervals, in its steps, of
    batch_size: int = 0
    iters: int = 0
    probe_every: int = 0  # regular probes (0: at epoch ends only)
    track_every: int = 0  # evaluations of the fixed subset (0: off)
    fate_every: int = 0  # collapse checks on the fixed subset within an epoch (0: off)

    def begin_epoch(self, epoch: int) -> None:
        """This epoch's batch size and iterations, and the intervals (set in samples) in its steps."""
        cfg = self.cfg
        self.batch_size, self.iters = self.plan.batch_sizes[epoch - 1], self.plan.iters[epoch - 1]
        subset = cfg.track_subset > 0
        self.probe_every = probe_interval(cfg.probe_every_samples, self.batch_size)
        self.track_every = probe_interval(cfg.track_every_samples, self.batch_size) if subset else 0
        self.fate_every = probe_interval(cfg.fate_every_samples, self.batch_size) if subset else 0

    def training(self) -> list[int]:
        return [i for i, s in enumerate(self.seeds) if s.status == "ok"]

    def losses(self, i: int) -> np.ndarray:
        return np.concatenate([self.seeds[i].losses, *self.chunks[i]]).astype(np.float32)

    # -- where a window must end, and what its end measures ------------------------------------

    def window_end(self, offset: int, pos: int) -> int:
        """The step (of this epoch) where the window starting at pos must end at the latest."""
        stop = min(self.iters, pos + self.cfg.check_every - pos % self.cfg.check_every)
        if self.probe_every:
            stop = min(stop, self.probe_every - (offset + pos) % self.probe_every + pos)
        upcoming = [s - offset for s in self.early_probes if s - offset > pos]
        if self.tracking():
            upcoming.append(pos + self.track_every - pos % self.track_every)
        if self.fate_every:
            upcoming.append(pos + self.fate_every - pos % self.fate_every)
        return min([stop, *upcoming])

    def subset_due(self, pos: int) -> tuple[bool, bool]:
        """(track, check fates): what the fixed subset's evaluation at step pos of the epoch is for."""
        track = self.tracking() and pos % self.track_every == 0
        fate = bool(self.fate_every) and pos % self.fate_every == 0 and pos < self.iters
        return track, fate

    def tracking(self) -> bool:
        """Whether the fixed subset is tracked (through the whole run: the oscillation at the end
        reads the last epoch, the comparisons at matched stage the rest)."""
        return bool(self.track_every)

    def probe_due(self, at: int) -> bool | None:
        """None: no probe at step `at`; else whether it measures the gradient noise too."""
        if self.probe_every and at % self.probe_every == 0:
            every = self.cfg.noise_every_probes
            return bool(every) and (at // self.probe_every) % every == 0
        return False if at in self.early_probes else None

    # -- each seed's record --------------------------------------------------------------------

    def record_window(self, values: np.ndarray, since_probe: list[list[np.ndarray]]) -> None:
        """Each training seed's losses of a window [W, S]; a seed that diverged keeps its losses
        up to the bad step and is recorded as diverged there."""
        start = self.step
        for i in self.training():
            column = values[:, i]
            bad = first_bad_step(column, self.cfg.divergence_loss)
            if bad is not None:
                column = column[: bad + 1]
                seed = self.seeds[i]
                seed.status, seed.stopped_step = "diverged", start + bad + 1
                seed.stop_reason = divergence_reason(float(column[-1]), seed.stopped_step, self.cfg.divergence_loss)
                self.log(f"seed {seed.seed}: DIVERGED: {seed.stop_reason}; frozen, the other seeds train on")
            self.chunks[i].append(column)
            since_probe[i].append(column)
        self.step += len(values)

    def freeze_collapsed(self, i: int, reason: str) -> None:
        seed = self.seeds[i]
        seed.status, seed.stopped_step, seed.stop_reason = "collapsed", self.step, reason
        self.alive[i] = False
        self.log(f"seed {seed.seed}: COLLAPSED: {reason}; frozen, the other seeds train on")

    def reached_target(self) -> set[int]:
        """Indexes of the seeds whose probes reached cfg.noise_at_val_acc already."""
        target = self.cfg.noise_at_val_acc
        if not target:
            return set()
        return {i for i, s in enumerate(self.seeds) if any(r["val_acc"] >= target for r in s.probes)}

    def add_probes(self, rows: list[dict]) -> None:
        by_seed = {s.seed: s for s in self.seeds}
        for row in rows:
            by_seed[row["seed"]].probes.append(row)

    # -- weights and checkpoints ---------------------------------------------------------------

    def weights(self) -> list[torch.Tensor]:
        """Every tensor a step updates: the parameters, BatchNorm's running statistics and the
        optimizer's state."""
        return [*self.ens.tensors(), *self.ens.buffer_tensors(), *(self.optimizer.buffers if self.optimizer is not None else [])]

    def restore(self, state: TrainState) -> None:
        self.ens.load(state.params)
        if self.optimizer is not None:
            self.optimizer.load(state.momentum)
        self.alive.copy_(torch.tensor(state.alive, dtype=torch.bool))
        for gen, saved in zip(self.generators, state.generators, strict=True):
            gen.set_state(saved)
        self.seeds = [SeedResult(**{**s, "losses": np.asarray(s["losses"], np.float32)}) for s in state.seeds]
        self.step, self.epoch = state.step, state.epoch
        self.train_seconds = max(sum(r["ensemble_seconds"] for r in s.epochs) for s in self.seeds)
        self.log(f"resumed from the checkpoint after epoch {state.epoch}")

    def snapshot(self) -> TrainState:
        seeds = []
        for i, s in enumerate(self.seeds):
            record = {
                **s.__dict__,
                "losses": self.losses(i),
                "epochs": list(s.epochs),
                "probes": list(s.probes),
                "track": list(s.track),
            }
            seeds.append(record)
        return TrainState(
            epoch=self.epoch,
            step=self.step,
            params=self.ens.cpu_state(),
            momentum=self.optimizer.state() if self.optimizer is not None else [],
            alive=self.alive.cpu().tolist(),
            generators=[g.get_state() for g in self.generators],
            probe_generators=self.probes.states(),
            seeds=seeds,
        )
