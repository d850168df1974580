"""How a seed's training can end before its last epoch: diverged (its loss, at every step) or
collapsed (on the fixed training subset every measure.fate_every_samples samples, and on the
validation set at epoch ends; never on the test set)."""

from __future__ import annotations

import math

import numpy as np

LN10 = math.log(10.0)
# An epoch that ends with the training loss within COLLAPSE_LOSS_TOLERANCE of ln 10 (the loss of
# a uniform guess), validation accuracy at most COLLAPSE_MAX_ACCURACY and one class predicted for
# at least COLLAPSE_MIN_SHARE of the validation set is "collapsed": the network outputs (almost) the same
# answer for every image, typically because its ReLU units died after too large a step.
COLLAPSE_LOSS_TOLERANCE = 0.03
COLLAPSE_MAX_ACCURACY = 0.15
COLLAPSE_MIN_SHARE = 0.5


def first_bad_step(losses: np.ndarray, threshold: float) -> int | None:
    """Index of the first loss that is not finite or exceeds threshold, else None."""
    bad = ~np.isfinite(losses) | (losses > threshold)
    hits = np.flatnonzero(bad)
    return int(hits[0]) if hits.size else None


def is_collapsed(train_loss: float, val_acc: float, top_class_share: float) -> bool:
    """True when the network answers (almost) the same class for every image, at chance level."""
    return (
        math.isfinite(train_loss)
        and abs(train_loss - LN10) <= COLLAPSE_LOSS_TOLERANCE * LN10
        and val_acc <= COLLAPSE_MAX_ACCURACY
        and top_class_share >= COLLAPSE_MIN_SHARE
    )


def divergence_reason(loss: float, step: int, threshold: float) -> str:
    what = "is not finite" if not math.isfinite(loss) else f"exceeds {threshold:g}"
    return f"training loss {loss:.4g} at iteration {step} {what}"


def collapse_reason(epoch: int, row: dict) -> str:
    return (
        f"after epoch {epoch} the training loss is {row['train_loss']:.3f} (ln 10 = {LN10:.3f}),"
        f" validation accuracy {row['val_acc']:.1%} and {row['top_class_share']:.0%} of validation"
        " images get the same class"
    )


def subset_collapse_reason(step: int, n: int, row: dict) -> str:
    return (
        f"at iteration {step} the loss on the fixed {n:,}-image training subset is {row['loss']:.3f}"
        f" (ln 10 = {LN10:.3f}), its accuracy {row['acc']:.1%} and {row['top_class_share']:.0%} of it"
        " gets the same class"
    )
