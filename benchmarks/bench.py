"""Benchmark the batchlab trainer against a typical tutorial training loop, side by side.

For each model and batch size the two loops run interleaved (A B A B ...) after a warm-up, the
same model, optimizer, batch size and number of steps each time, and the median of the per-round
ratios is reported, so a noisy, shared machine slows both alike. It also measures this
machine's fp32 matmul throughput and the fraction of it the trainer reaches at batch 512 (mlp),
and the start-up cost of a training job. Prints a table; writes benchmarks/results.json.

    make bench                                  # or, with the data prepared:
    .venv/bin/python benchmarks/bench.py --data data/mnist/mnist.pt
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow/scripts"))

from batchlab.data import load_prepared, to_device  # noqa: E402
from batchlab.models import build_model, input_shape, train_step_flops  # noqa: E402
from batchlab.provenance import package_versions  # noqa: E402
from batchlab.train import (  # noqa: E402
    CellConfig,
    eager_step,
    fused_mlp_sgd_step,
    make_optimizer,
    run_iterations,
    uses_fused_step,
)

BATCH_SIZES = (1, 8, 64, 512)
# steps per timed measurement: about a third of a second each on one CPU thread
STEPS = {
    "mlp": {1: 1500, 8: 800, 64: 200, 512: 30},
    "cnn": {1: 60, 8: 25, 64: 6, 512: 2},
}
TARGETS = {("mlp", 1): 3.0, ("mlp", 64): 5.0, ("mlp", 512): 8.0}
LR = 0.01


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """The batchlab hot path: resident tensors, a randperm, slices, the cell's step function."""

    def __init__(self, model_name: str, b: int, data, device: torch.device):
        torch.manual_seed(0)
        cfg = CellConfig(batch_size=b, lr=LR, seed=0, model=model_name)
        self.model = build_model(model_name).to(device)
        if uses_fused_step(cfg):
            self.step = fused_mlp_sgd_step(self.model)
        else:
            self.step = eager_step(self.model, make_optimizer(cfg, self.model.parameters()))
        perm = torch.randperm(data.n_train, generator=torch.Generator().manual_seed(0)).to(device)
        self.xs, self.ys, self.b, self.pos = data.train_x[perm], data.train_y[perm], b, 0
        self.iters = data.n_train // b

    def run(self, n: int) -> None:
        done = 0
        while done < n:
            take = min(n - done, self.iters - self.pos)
            losses = run_iterations(
                self.step, self.xs, self.ys, self.b, self.pos, self.pos + take, lambda t: LR
            )
            torch.stack(losses).cpu()  # the trainer copies losses to the host once per window
            self.pos = (self.pos + take) % self.iters
            done += take


class Tutorial:
    """The loop of the PyTorch MNIST tutorials: torchvision dataset, transforms, DataLoader."""

    def __init__(self, model_name: str, b: int, root: Path, device: torch.device):
        from torchvision import datasets, transforms

        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
        dataset = datasets.MNIST(str(root), train=True, download=False, transform=transform)
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=b, shuffle=True)
        torch.manual_seed(0)
        body = build_model(model_name)
        self.model = (nn.Sequential(nn.Flatten(), body) if model_name == "mlp" else body).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.device = device
        self.batches = iter(self.loader)

    def run(self, n: int) -> None:
        running = 0.0
        for _ in range(n):
            try:
                x, y = next(self.batches)
            except StopIteration:
                self.batches = iter(self.loader)
                x, y = next(self.batches)
            x, y = x.to(self.device), y.to(self.device)
            self.optimizer.zero_grad()
            loss = F.cross_entropy(self.model(x), y)
            loss.backward()
            self.optimizer.step()
            running += loss.item()


def timed(fn, n: int, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn(n)
    sync(device)
    return (time.perf_counter() - t0) / n


def compare(model_name, b, data, root, device, rounds) -> dict:
    n = STEPS[model_name][b] * (20 if device.type == "cuda" and model_name == "cnn" else 1)
    trainer, tutorial = Trainer(model_name, b, data, device), Tutorial(model_name, b, root, device)
    trainer.run(max(3, n // 5))  # warm-up: allocator, caches, lazy initialisation
    tutorial.run(max(3, n // 5))
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(timed(trainer.run, n, device))
        theirs.append(timed(tutorial.run, n, device))
    ratios = [t / o for o, t in zip(ours, theirs, strict=True)]
    trainer_ms, tutorial_ms = 1000 * statistics.median(ours), 1000 * statistics.median(theirs)
    return {
        "model": model_name,
        "batch_size": b,
        "device": device.type,
        "steps_per_round": n,
        "rounds": rounds,
        "trainer_ms_per_step": trainer_ms,
        "tutorial_ms_per_step": tutorial_ms,
        "trainer_samples_per_s": 1000 * b / trainer_ms,
        "tutorial_samples_per_s": 1000 * b / tutorial_ms,
        "ratio": statistics.median(ratios),
        "step_implementation": "fused plain SGD" if model_name == "mlp" else "eager autograd + torch.optim",
    }


def matmul_gflops(device: torch.device, size: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / statistics.median(times) / 1e9


def startup_probe(expect: str, startup: dict) -> None:
    """A job that only starts: it imports what a training job imports, then ends (failing when
    it did not start the way it was meant to)."""
    import batchlab.train_job  # noqa: F401

    if startup["mode"] != expect:
        sys.exit(f"bench: a job meant to start {expect} started {startup['mode']}: {startup.get('why_cold')}")


# a job's process, as the Snakemake adapter runs it (workflow/scripts/train.py)
JOB = """
import sys
sys.path[:0] = [{bench!r}, {scripts!r}]
from batchlab import warm
warm.exit_with(warm.run("bench", "startup_probe", {{"expect": sys.argv[1]}}))
"""


def job_overhead(data_path: Path, device: torch.device, rounds: int) -> dict:
    """What a training job pays before its first step, measured as a job would: a process that
    starts Python and reaches the job's code, cold (imports PyTorch itself) and warm (forked from
    the warm-start server, started beforehand and not timed), interleaved."""
    from batchlab import warm

    code = JOB.format(bench=str(Path(__file__).parent), scripts=str(ROOT / "workflow/scripts"))
    times: dict[str, list[float]] = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "BATCHLAB_WARM_DIR": folder, "BATCHLAB_WARM_IDLE": "60"}
        modes = {"cold": {**env, "BATCHLAB_WARM_START": "0"}, "warm": {**env, "BATCHLAB_WARM_START": "1"}}
        subprocess.run(
            [sys.executable, "-c", code, "warm"], env=modes["warm"], check=True
        )  # starts the server
        try:
            for _ in range(rounds):
                for mode, mode_env in modes.items():
                    t0 = time.perf_counter()
                    subprocess.run([sys.executable, "-c", code, mode], env=mode_env, check=True)
                    times[mode].append(time.perf_counter() - t0)
        finally:
            warm.stop_all(Path(folder), wait_s=30)
    t0 = time.perf_counter()
    data = to_device(load_prepared(data_path), input_shape("mlp"), device)
    loaded = time.perf_counter()
    Trainer("mlp", 64, data, device).run(1)
    sync(device)
    first = time.perf_counter()
    cold, warm_s = statistics.median(times["cold"]), statistics.median(times["warm"])
    return {
        "job_process_cold_s": cold,
        "job_process_warm_s": warm_s,
        "warm_speedup": cold / warm_s,
        "data_load_s": loaded - t0,
        "first_step_s": first - loaded,
    }


def torchvision_root(raw_dir: Path, into: Path) -> Path:
    """torchvision's MNIST wants the decompressed files under ROOT/MNIST/raw/."""
    target = into / "MNIST" / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for gz in raw_dir.glob("*-ubyte.gz"):
        (target / gz.name[:-3]).write_bytes(gzip.decompress(gz.read_bytes()))
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data/mnist/mnist.pt")
    parser.add_argument("--raw", type=Path, default=ROOT / "data/mnist/raw")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the study's default: 1)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results.json")
    args = parser.parse_args()
    for path in (args.data, args.raw):
        if not path.exists():
            sys.exit(f"bench: {path} is missing; run `snakemake --cores 1 data/mnist/mnist.pt` first")
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    tensors = load_prepared(args.data)
    rows, matmul = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(args.raw, Path(tmp))
        for device in devices:
            matmul[device.type] = matmul_gflops(device)
            for model_name in args.models.split(","):
                data = to_device(tensors, input_shape(model_name), device)
                for b in map(int, args.batch_sizes.split(",")):
                    row = compare(model_name, b, data, root, device, args.rounds)
                    if model_name == "mlp":
                        flops = train_step_flops("mlp", b) / (row["trainer_ms_per_step"] / 1000)
                        row["trainer_gflops"] = flops / 1e9
                    rows.append(row)
                    print(
                        f"{device.type:4} {model_name} bs {b:4}: trainer {row['trainer_ms_per_step']:8.3f} ms/step"
                        f" ({row['trainer_samples_per_s']:9.0f} samples/s) | tutorial"
                        f" {row['tutorial_ms_per_step']:8.3f} ms/step | ratio {row['ratio']:5.2f}x",
                        flush=True,
                    )
        overhead = job_overhead(args.data, devices[0], args.rounds)
    cpu512 = next(
        (r for r in rows if r["device"] == "cpu" and r["model"] == "mlp" and r["batch_size"] == 512), None
    )
    fraction = cpu512["trainer_gflops"] / matmul["cpu"] if cpu512 else None
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "threads": args.threads,
        "rounds": args.rounds,
        "packages": package_versions(("torch", "torchvision")),
        "matmul_gflops": matmul,
        "matmul_fraction_bs512": fraction,
        "job_overhead": overhead,
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(
        f"\nfp32 matmul 1024x1024, {args.threads} thread(s): "
        + ", ".join(f"{d} {g:.1f} GFLOP/s" for d, g in matmul.items())
    )
    if fraction is not None:
        print(
            f"trainer at batch 512 (mlp, cpu): {cpu512['trainer_gflops']:.1f} GFLOP/s = {fraction:.0%} of matmul"
            " (target >= 60%)"
        )
    print(
        "job start-up (Python start to the job's code, median): cold {job_process_cold_s:.2f} s,"
        " warm {job_process_warm_s:.2f} s ({warm_speedup:.0f}x less); then data load {data_load_s:.2f} s,"
        " first step {first_step_s:.3f} s".format(**overhead)
    )
    print("\nmedian ratio tutorial/trainer against the targets (cpu):")
    for r in rows:
        if r["device"] != "cpu":
            continue
        target = TARGETS.get((r["model"], r["batch_size"]), 1.0 if r["model"] == "cnn" else None)
        verdict = (
            "" if target is None else (" met" if r["ratio"] >= target else " NOT met") + f" (>= {target:g}x)"
        )
        print(f"  {r['model']} bs {r['batch_size']:4}: {r['ratio']:5.2f}x{verdict}")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
