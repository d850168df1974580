"""Where each seed stands at matched stage: the first moment its tracked training loss (the model's
loss on the fixed training subset, evaluated through the run) falls to each of LEVELS, and there
its oscillation (over the tracked points around that moment) and its validation accuracy
(interpolated between probes). Comparing two batch sizes at the same level compares them at the
same stage of training, not at the same number of epochs: a large batch that is merely further
behind is not mistaken for one that oscillates less or generalizes worse.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# tracked training loss levels (the subset's mean cross-entropy; 2.30 at chance)
LEVELS = (0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01)
WINDOW = 12  # tracked points around the level's first crossing that the oscillation reads


def column(kind: str, level: float) -> str:
    """The cells table's column of `kind` (osc or val_acc) at a level, e.g. osc_at_0.1."""
    return f"{kind}_at_{level:g}"


def oscillation(loss) -> float:
    """The mean |Δ| about the mean Δ of a stretch of a tracked series (the trend's steps removed);
    NaN with fewer than three points."""
    d = np.diff(np.asarray(loss, dtype=np.float64))
    d = d[np.isfinite(d)]
    return float(np.mean(np.abs(d - d.mean()))) if d.size >= 2 else float("nan")


def at_levels(track, probes: pd.DataFrame) -> dict:
    """Per level, for one seed: its oscillation over the WINDOW tracked points centred on the
    first one at or below the level (shifted to fit inside the run; NaN when it never gets
    there or the run tracked fewer points), and its validation accuracy at that step. The
    oscillation is read on the log of the loss: the fall is close to geometric there, so the
    linear trend removes it, and at one level it is the absolute oscillation over the level."""
    steps = np.asarray([s for s, _ in track or []], dtype=float)
    loss = np.asarray([v for _, v in track or []], dtype=float)
    have = {"step", "val_acc"} <= set(probes.columns) and len(probes) > 0
    if have:
        p = probes.sort_values("step")
        probe_steps, probe_acc = p["step"].astype(float), p["val_acc"].astype(float)
    out = {}
    for level in LEVELS:
        hits = np.flatnonzero(loss <= level)
        osc = acc = float("nan")
        if hits.size and loss.size >= WINDOW:
            i = int(hits[0])
            start = min(max(0, i - WINDOW // 2), loss.size - WINDOW)
            osc = oscillation(np.log(loss[start : start + WINDOW]))
            if have:
                acc = float(np.interp(steps[i], probe_steps, probe_acc))
        out[column("osc", level)] = osc
        out[column("val_acc", level)] = acc
    return out


def matched_level(a: pd.DataFrame, b: pd.DataFrame, kind: str) -> float | None:
    """The lowest level at which `kind` is measured for every seed that two cells share (rows of
    the cells table) and that reached the highest level in both (a seed that never learned is
    left out, not allowed to veto): the latest stage the two runs both reach. None if none."""
    x, y = a.set_index("seed"), b.set_index("seed")
    top = column(kind, LEVELS[0])
    if top not in x or top not in y:
        return None
    seeds = [s for s in x.index.intersection(y.index) if np.isfinite(x.at[s, top]) and np.isfinite(y.at[s, top])]
    for level in reversed(LEVELS):
        col = column(kind, level)
        if seeds and all(np.isfinite(x.at[s, col]) and np.isfinite(y.at[s, col]) for s in seeds):
            return level
    return None
