"""Benchmark the batchlab trainer, side by side with what it is measured against.

1. The ensemble: ms per seed-step of a cell's epoch loop with S = 1 and S = 5 seeds, against
   the single-seed trainer of an earlier commit (--baseline) (benchmarks/vs_baseline.py).
2. The trainer's hot path against a typical tutorial loop (torchvision dataset, DataLoader), and
3. this machine's fp32 matmul throughput and the fraction of it the trainer reaches at batch 512
   (benchmarks/vs_tutorial.py).
4. What a training job pays before its code, what one cell's measurements cost beside its
   training, and its peak memory (benchmarks/job_costs.py).

Every comparison reports the median of per-round ratios, so a noisy, shared machine slows both
sides alike. Prints tables; writes benchmarks/results.json. --quick rehearses every part on a
few steps (benchmarks/plan.py) in under a minute: its figures mean nothing, and it writes them only
where --out says.

    make bench                                  # or, with the data prepared:
    .venv/bin/python benchmarks/bench.py --data data/mnist/mnist.pt
    make bench BENCH_ARGS=--quick
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow/scripts"))

import job_costs
import vs_baseline
import vs_tutorial
from plan import FULL, QUICK

from batchlab.provenance import package_versions

PARTS = ("ensemble", "tutorial", "costs")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every part on a few steps, in seconds (a rehearsal)")
    parser.add_argument("--data", type=Path, default=ROOT / "data/mnist/mnist.pt")
    parser.add_argument("--raw", type=Path, default=ROOT / "data/mnist/raw")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the study's default: 1)")
    parser.add_argument("--rounds", type=int, help="rounds of each comparison (default: the plan's, 3 or 1)")
    parser.add_argument("--models", help="comma-separated (default: mlp,cnn; with --quick mlp)")
    parser.add_argument("--baseline", default=vs_baseline.BASELINE, help="the commit whose trainer is the baseline")
    parser.add_argument("--cnn-cell-images", type=int, help="training images of the cnn cell-cost epoch")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: " + ",".join(PARTS))
    parser.add_argument("--out", type=Path, help="the JSON (default: benchmarks/results.json; none with --quick)")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    args.rounds = args.rounds or plan.rounds
    args.models = args.models or plan.models
    if args.cnn_cell_images:
        plan = replace(plan, cell_images={**plan.cell_images, "cnn": args.cnn_cell_images})
    args.plan = plan
    if args.out is None and not args.quick:
        args.out = ROOT / "benchmarks/results.json"
    return args


def main() -> None:
    args = parse_args()
    for path in (args.data, args.raw):
        if not path.exists():
            sys.exit(f"bench: {path} is missing; run `snakemake --cores 1 data/mnist/mnist.pt` first")
    skip = set(filter(None, args.skip.split(",")))
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "threads": args.threads,
        "rounds": args.rounds,
        "baseline": args.baseline,
        "packages": package_versions(("torch", "torchvision")),
    }
    if "ensemble" not in skip:
        result["ensemble"] = vs_baseline.run(args, args.plan, devices)
    if "tutorial" not in skip:
        result["tutorial"], result["matmul_gflops"] = vs_tutorial.run(args, args.plan, devices)
    if "costs" not in skip:
        result["costs"] = job_costs.run(args, args.plan)
    if "ensemble" in result:
        vs_baseline.summary(result["ensemble"])
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
