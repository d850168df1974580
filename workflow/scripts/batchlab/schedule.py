"""Where a training window must end, and what each window end measures: the schedule of
probes, early probes, the tracked subset and the fate checks, from a run's fields
(batchlab.train.Run)."""

from __future__ import annotations


def window_end(run, offset: int, pos: int) -> int:
    """The step (of this epoch) where the window starting at pos must end at the latest."""
    stop = min(run.iters, pos + run.cfg.check_every - pos % run.cfg.check_every)
    if run.probe_every:
        stop = min(stop, run.probe_every - (offset + pos) % run.probe_every + pos)
    upcoming = [s - offset for s in run.early_probes if s - offset > pos]
    if tracking(run):
        upcoming.append(pos + run.track_every - pos % run.track_every)
    if run.fate_every:
        upcoming.append(pos + run.fate_every - pos % run.fate_every)
    return min([stop, *upcoming])


def subset_due(run, pos: int) -> tuple[bool, bool]:
    """(track, check fates): what the fixed subset's evaluation at step pos of the epoch is for."""
    track = tracking(run) and pos % run.track_every == 0
    fate = bool(run.fate_every) and pos % run.fate_every == 0 and pos < run.iters
    return track, fate


def tracking(run) -> bool:
    """Whether the epoch being trained is the last, where the fixed subset is tracked."""
    return bool(run.track_every) and run.epoch + 1 == run.cfg.epochs


def probe_due(run, at: int) -> bool | None:
    """None: no probe at step `at`; else whether it measures the gradient noise too."""
    if run.probe_every and at % run.probe_every == 0:
        every = run.cfg.noise_every_probes
        return bool(every) and (at // run.probe_every) % every == 0
    return False if at in run.early_probes else None
