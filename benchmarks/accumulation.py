"""What gradient accumulation costs and saves: a huge batch trained in one piece against the same
batch summed from micro-batches, one epoch of every seed, each run in a fresh process.

    python benchmarks/accumulation.py [--batch-sizes 4096 16384] [--micro 2048 512] [--rounds 3]

Per (batch size, micro-batch): the training job's peak memory above what it held before
training (on the CPU the process's peak resident set, getrusage; on CUDA the tensors' peak) and
the seconds per epoch, each the median over rounds, with its ratio to the batch in one piece.
The runs alternate within a round, so a noisy machine slows them alike. Without BatchNorm the
updates are the same to float rounding (tests/unit/test_batch_norm.py), so only cost differs.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
QUIET = {"epochs": 1, "probe_every_samples": 0, "sharpness_iterations": 0, "train_eval_size": 100, "track_subset": 0}


def one_run(data_path: str, batch_size: int, micro: int, seeds: int, device: str, out) -> None:
    """In a fresh process: one epoch; puts (peak memory MiB above the start, epoch seconds)."""
    sys.path.insert(0, str(SCRIPTS))
    import torch

    from batchlab.data.tensors import load_prepared, to_device
    from batchlab.train.cell_config import CellConfig
    from batchlab.train.job import memory_mb
    from batchlab.train.loop import train_cell

    torch.set_num_threads(1)
    dev = torch.device(device)
    data = to_device(load_prepared(data_path), (784,), dev, 10000)
    cfg = CellConfig(batch_size=batch_size, lr=0.1, seeds=tuple(range(seeds)), micro_batch=micro, fused=False, **QUIET)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    before = memory_mb(dev, peak=False)
    result = train_cell(cfg, data, dev, log=lambda m: None)
    out.put((memory_mb(dev) - before, result.measure_seconds["training"]))


def measure(args, b: int, micro: int) -> tuple[float, float]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=one_run, args=(args.data, b, micro, args.seeds, args.device, out))
    proc.start()
    found = out.get()
    proc.join()
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/mnist/mnist.pt")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--micro", type=int, nargs="+", default=[2048, 512])
    args = ap.parse_args()
    print(f"{args.seeds} seeds, one epoch, {args.device}; median of {args.rounds} rounds; x: against the batch in one piece")
    print(f"{'batch':>6} {'micro-batch':>12} {'peak MiB':>10} {'x':>6} {'s/epoch':>9} {'x':>6}")
    for b in args.batch_sizes:
        micros = [0, *(m for m in args.micro if m < b)]
        found = {m: [] for m in micros}
        for _ in range(args.rounds):
            for m in micros:
                found[m].append(measure(args, b, m))
        med = {m: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)) for m, runs in found.items()}
        base = med[0]
        for m in micros:
            mem, sec = med[m]
            print(f"{b:>6} {m or 'whole':>12} {mem:>10.0f} {mem / base[0]:>6.2f} {sec:>9.2f} {sec / base[1]:>6.2f}")


if __name__ == "__main__":
    main()
