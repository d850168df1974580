"""How many seeds to train together: ms per seed-step of a cell's seeds trained in groups of each
size, per batch size, on this machine (one thread, as a training job runs).

    python benchmarks/seed_groups.py [--seeds 10] [--rounds 3] [--batch-sizes 1 4 16 64 256]

Stacked seeds share each step's overheads, but a large stack's weights (S x 784 x 256 floats)
leave the cache at small batches: the fastest group size is measured, not assumed. Every size
is timed in each round, in turn, so a noisy machine slows them alike; the median over rounds is
printed with its ratio to all seeds at once, and the train.seeds_together entries that follow.
A seed's run is the same to the bit in any group (tests/unit/test_train.py), so only time differs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))

from batchlab.data.tensors import load_prepared, to_device  # noqa: E402
from batchlab.train.cell_config import CellConfig  # noqa: E402
from batchlab.train.loop import train_cell  # noqa: E402
from batchlab.train.models import input_shape  # noqa: E402

QUIET = {
    "epochs": 1,
    "probe_every_samples": 0,
    "sharpness_iterations": 0,
    "train_eval_size": 100,
    "track_subset": 0,
}
STEPS = 1000  # per timed epoch


def seed_step_ms(data, b: int, seeds: int, group: int) -> float:
    n = min(STEPS * b, data.n_train)
    part = type(data)(data.train_x[:n], data.train_y[:n], data.test_x[:100], data.test_y[:100])
    cfg = CellConfig(batch_size=b, lr=0.01, seeds=tuple(range(seeds)), group_size=group, **QUIET)
    result = train_cell(cfg, part, torch.device("cpu"), log=lambda m: None)
    steps = len(result.seeds[0].losses)
    return 1000.0 * result.measure_seconds["training"] / (steps * seeds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/mnist/mnist.pt")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = to_device(load_prepared(args.data), input_shape("mlp"), torch.device("cpu"))
    sizes = [
        g for g in (2, 5, 10, 20) if g <= args.seeds and args.seeds % g == 0
    ]  # a stack of one runs other kernels
    print(f"ms per seed-step, {args.seeds} seeds in groups of each size (median of {args.rounds} rounds)")
    print("batch " + "".join(f"{g:>10}" for g in sizes) + "   fastest  (x all at once)")
    best = {}
    for b in args.batch_sizes:
        times = {g: [] for g in sizes}
        for _ in range(args.rounds):
            for g in sizes:
                times[g].append(seed_step_ms(data, b, args.seeds, g))
        med = {g: statistics.median(t) for g, t in times.items()}
        fastest = min(med, key=med.get)
        best[b] = fastest
        cells = "".join(f"{med[g]:>10.4f}" for g in sizes)
        print(f"{b:>5} {cells}   {fastest:>7}  (x{med[args.seeds] / med[fastest]:.2f})")
    listed = {b: g for b, g in best.items() if g != args.seeds}
    print(f"train.seeds_together: {listed or '{}'}")


if __name__ == "__main__":
    main()
