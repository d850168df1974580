"""The ensemble's optimizer step over stacked seeds against the same optimizer looped seed by seed.

For each optimizer: one update of the mlp's parameters (784-256-10) for S seeds, (a) as the
trainer does it, one step over the stacked tensors [S, ...] (batchlab.train.optimizers), and (b) as S
separate optimizers, one per seed (torch.optim with foreach where it has the optimizer, else
batchlab's own with S = 1). Rounds alternate a b a b; the ratio is the median of the per-round
ratios, so a noisy machine slows both sides alike. Prints a table; --json writes the rows.

    .venv/bin/python benchmarks/optimizer_step.py [--seeds 5] [--rounds 7] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow/scripts"))

from batchlab.train.optimizers import build_optimizer
from batchlab.train.settings import OPTIMIZERS
from batchlab.train.settings import OptimizerSettings as Settings

SHAPES = [(256, 784), (256,), (10, 256), (10,)]
SETTINGS = {name: Settings(name, momentum=0.9) for name in OPTIMIZERS}
TORCH = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.01, foreach=True),
    "momentum": lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9, foreach=True),
    "adam": lambda ps: torch.optim.Adam(ps, lr=0.001, foreach=True),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.001, foreach=True),
}


def stacked(name: str, seeds: int, device):
    params = [torch.randn(seeds, *s, device=device) for s in SHAPES]
    grads = [torch.randn_like(p) for p in params]
    opt = build_optimizer(params, SETTINGS[name])
    return lambda: opt.step_all(grads, 0.001)


def looped(name: str, seeds: int, device):
    """S optimizers, one per seed."""
    steps = []
    for _ in range(seeds):
        params = [torch.randn(*s, device=device, requires_grad=True) for s in SHAPES]
        for p in params:
            p.grad = torch.randn_like(p)
        if name in TORCH:
            steps.append(TORCH[name](params).step)
        else:  # batchlab's own, one seed at a time
            one = [p.detach().unsqueeze(0) for p in params]
            opt = build_optimizer(one, SETTINGS[name])
            grads = [p.grad.unsqueeze(0) for p in params]
            steps.append(lambda o=opt, g=grads: o.step_all(g, 0.001))
    return lambda: [s() for s in steps]


def time_it(step, device, reps: int) -> float:
    step()  # warm
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(1)
    rows = []
    print(f"optimizer step, mlp 784-256-10, S = {args.seeds} seeds, {device} (ms per step of all seeds; median of {args.rounds} rounds)")
    print(f"{'optimizer':<10} {'stacked':>9} {'loop':>9} {'loop / stacked':>15}")
    for name in OPTIMIZERS:
        a, b = stacked(name, args.seeds, device), looped(name, args.seeds, device)
        pairs = [(time_it(a, device, args.reps), time_it(b, device, args.reps)) for _ in range(args.rounds)]
        ratio = statistics.median(lo / st for st, lo in pairs)
        row = {"optimizer": name, "stacked_ms": statistics.median(p[0] for p in pairs),
               "loop_ms": statistics.median(p[1] for p in pairs), "loop_over_stacked": ratio}  # fmt: skip
        rows.append(row)
        print(f"{name:<10} {row['stacked_ms']:>9.3f} {row['loop_ms']:>9.3f} {ratio:>15.2f}")
    if args.json:
        args.json.write_text(json.dumps({"seeds": args.seeds, "device": str(device), "torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
