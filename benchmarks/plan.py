"""How much each part of benchmarks/bench.py measures: the full benchmark, or its quick rehearsal
(--quick: every part end to end on a few steps, in under a minute; its figures mean nothing)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    rounds: int
    models: str  # comma-separated
    # 1. steps per seed per timed epoch, by model and batch size: a fraction of a second to a few
    # seconds on one CPU thread
    ensemble_steps: dict[str, dict[int, int]]
    # 2. the mlp's steps per timed round, by batch size (512 among them: the matmul share reads it)
    tutorial_steps: dict[int, int]
    matmul_size: int
    matmul_repeats: int
    # 4. training images of the one-epoch cell whose measurements are costed, by model, and of
    # the five-seed cell whose peak memory is read
    cell_images: dict[str, int]
    memory_images: int
    measure: dict  # over the study's `measure` group


FULL = Plan(
    rounds=3,
    models="mlp,cnn",
    ensemble_steps={
        "mlp": {1: 3000, 4: 2000, 16: 1000, 64: 400, 256: 100, 1024: 30},
        "cnn": {1: 100, 4: 60, 16: 30, 64: 10, 256: 3, 1024: 1},
    },
    tutorial_steps={1: 1500, 8: 800, 64: 200, 512: 30},
    matmul_size=1024,
    matmul_repeats=20,
    cell_images={"mlp": 60000, "cnn": 60000},
    memory_images=6400,
    measure={},
)

QUICK = Plan(
    rounds=1,
    models="mlp",
    ensemble_steps={"mlp": {64: 5}, "cnn": {64: 2}},
    tutorial_steps={512: 3},
    matmul_size=256,
    matmul_repeats=5,
    cell_images={"mlp": 512, "cnn": 256},
    memory_images=512,
    measure={"sharpness_iterations": 2, "sharpness_subset": 64, "noise_draws": 1, "probe_val_size": 256},
)
