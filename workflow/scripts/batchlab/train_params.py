"""What the train rule hands each training job from the validated config, in one place: the
rule (workflow/rules/train.smk) and the GPU check (batchlab.gpu_check) both read it."""

from __future__ import annotations


def train(config: dict) -> dict:
    """The `train` group without `threads`: a runtime knob (it sets the job's threads, not its
    params), so changing it retrains nothing."""
    return {k: v for k, v in config["train"].items() if k != "threads"}


def measure(config: dict) -> dict:
    """The `measure` group; the noise scale is measured too where a seed first reaches the
    report's target accuracy."""
    return {**config["measure"], "noise_at_val_acc": config["report"]["target_val_acc"]}
