"""The part of a validated config that aggregate reads: which cell plays which role, without
the runtime knobs. Its own module, outside the training jobs' imports, so that the aggregate
rule, `batchlab peek` and the manifest share it without retraining a cell when it changes."""

from __future__ import annotations


def design_config(config: dict) -> dict:
    train, report = config["train"], config["report"]
    return {
        "grid": config["grid"],
        "remedies": config["remedies"],
        "solution2": config["solution2"],
        "equal_updates": config["equal_updates"],
        "optimizers": config["optimizers"],
        "train": {"epochs": train["epochs"], "validation_size": train["validation_size"]},
        "report": {"reference_lr": report["reference_lr"]},
    }
