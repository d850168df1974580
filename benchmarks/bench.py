"""Benchmark the batchlab trainer, side by side with what it is measured against.

1. The ensemble: ms per seed-step of a cell's epoch loop (as epochs.parquet reports it) with
   S = 1 and S = 5 seeds, against the single-seed trainer of an earlier commit (--baseline,
   checked out from git into a temporary folder), each version in a persistent worker process
   (benchmarks/worker.py), requests interleaved A B A B.
2. The trainer's hot path against a typical tutorial loop (torchvision dataset, DataLoader).
3. This machine's fp32 matmul throughput and the fraction of it the trainer reaches at batch 512.
4. What a training job pays before its code, and what one cell's measurements cost beside its
   training, and its peak memory.

Every comparison reports the median of per-round ratios, so a noisy, shared machine slows both
sides alike. Prints tables; writes benchmarks/results.json.

    make bench                                  # or, with the data prepared:
    .venv/bin/python benchmarks/bench.py --data data/mnist/mnist.pt
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
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

from batchlab.batches import Batches  # noqa: E402
from batchlab.data import load_prepared, to_device  # noqa: E402
from batchlab.ensemble import Ensemble  # noqa: E402
from batchlab.models import build_model, input_shape, train_step_flops  # noqa: E402
from batchlab.provenance import package_versions  # noqa: E402
from batchlab.steps import fused_mlp_sgd  # noqa: E402

BASELINE = "aceeb53"  # the last single-seed trainer (one job per seed)
ENSEMBLE_BATCHES = (1, 4, 16, 64, 256, 1024)
# steps per seed per timed epoch: a fraction of a second to a few seconds on one CPU thread
ENSEMBLE_STEPS = {
    "mlp": {1: 3000, 4: 2000, 16: 1000, 64: 400, 256: 100, 1024: 30},
    "cnn": {1: 100, 4: 60, 16: 30, 64: 10, 256: 3, 1024: 1},
}
ENSEMBLE_TARGET = {1: 1.8}  # per seed-step, S = 5 against the baseline; 1.0 elsewhere
TUTORIAL_BATCHES = (1, 8, 64, 512)
TUTORIAL_STEPS = {"mlp": {1: 1500, 8: 800, 64: 200, 512: 30}}
TUTORIAL_TARGETS = {1: 3.0, 64: 5.0, 512: 8.0}
LR = 0.01


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- 1. the ensemble


class Worker:
    """A persistent benchmarks/worker.py process timing one version of the trainer."""

    def __init__(self, scripts: Path, data: Path, device: str, threads: int):
        cmd = [sys.executable, str(Path(__file__).parent / "worker.py"), str(scripts), str(data), device, str(threads)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def epoch(self, model: str, b: int, seeds: list[int]) -> float:
        """ms per seed-step of one epoch over ENSEMBLE_STEPS[model][b] steps per seed."""
        n = ENSEMBLE_STEPS[model][b] * b
        self.proc.stdin.write(json.dumps({"model": model, "batch_size": b, "seeds": seeds, "n_train": n}) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            sys.exit(f"bench: the worker for {model} at batch {b} died (see its error above)")
        got = json.loads(answer)
        return 1000 * got["seconds"] / (got["steps"] * len(seeds))

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def baseline_checkout(commit: str, into: Path) -> Path:
    """The package as it was at commit, in a folder of its own (git archive)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "workflow/scripts/batchlab"], capture_output=True, check=False
    )
    if archive.returncode != 0:
        sys.exit(f"bench: cannot check out the baseline {commit}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "workflow/scripts"


def ensemble_rows(args, device: str) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        old = Worker(baseline_checkout(args.baseline, Path(tmp)), args.data, device, args.threads)
        new = Worker(ROOT / "workflow/scripts", args.data, device, args.threads)
        five = list(range(5))
        try:
            for model in args.models.split(","):
                for b in ENSEMBLE_BATCHES:
                    for worker in (old, new):  # warm-up: allocator, caches, lazy initialisation
                        worker.epoch(model, b, [0])
                    times: dict[str, list[float]] = {"old": [], "new1": [], "new5": []}
                    for _ in range(args.rounds):
                        times["old"].append(old.epoch(model, b, five))
                        times["new1"].append(new.epoch(model, b, [0]))
                        times["new5"].append(new.epoch(model, b, five))
                    row = {
                        "device": device,
                        "model": model,
                        "batch_size": b,
                        "baseline_ms_per_seed_step": statistics.median(times["old"]),
                        "s1_ms_per_seed_step": statistics.median(times["new1"]),
                        "s5_ms_per_seed_step": statistics.median(times["new5"]),
                        "ratio_s1": statistics.median(o / n for o, n in zip(times["old"], times["new1"], strict=True)),
                        "ratio_s5": statistics.median(o / n for o, n in zip(times["old"], times["new5"], strict=True)),
                    }
                    rows.append(row)
                    print(
                        f"{device:4} {model} bs {b:4}: baseline {row['baseline_ms_per_seed_step']:8.3f} | S=1"
                        f" {row['s1_ms_per_seed_step']:8.3f} ({row['ratio_s1']:4.2f}x) | S=5"
                        f" {row['s5_ms_per_seed_step']:8.3f} ({row['ratio_s5']:4.2f}x)  ms per seed-step",
                        flush=True,
                    )
        finally:
            old.close()
            new.close()
    return rows


# ----------------------------------------------------------------------------- 2. the tutorial


class Trainer:
    """The batchlab hot path at S = 1: resident tensors, a randperm, gathered batches, the fused step."""

    def __init__(self, b: int, data, device: torch.device):
        ens = Ensemble.initialize("mlp", [0], device)
        self.step = fused_mlp_sgd(ens, torch.ones(1, dtype=torch.bool, device=device), 1000.0)
        perm = torch.randperm(data.n_train, generator=torch.Generator().manual_seed(0)).to(device)
        self.batches, self.pos = Batches(data, perm.view(1, -1), b), 0
        self.iters = data.n_train // b

    def run(self, n: int) -> None:
        losses = []
        for _ in range(n):
            losses.append(self.step(*self.batches(self.pos), LR))
            self.pos = (self.pos + 1) % self.iters
        torch.stack(losses).cpu()  # the trainer copies losses to the host once per window


class Tutorial:
    """The loop of the PyTorch MNIST tutorials: torchvision dataset, transforms, DataLoader."""

    def __init__(self, b: int, root: Path, device: torch.device):
        from torchvision import datasets, transforms

        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
        dataset = datasets.MNIST(str(root), train=True, download=False, transform=transform)
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=b, shuffle=True)
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Flatten(), build_model("mlp")).to(device)
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


def tutorial_row(b, data, root, device, rounds) -> dict:
    n = TUTORIAL_STEPS["mlp"][b]
    trainer, tutorial = Trainer(b, data, device), Tutorial(b, root, device)
    trainer.run(max(3, n // 5))
    tutorial.run(max(3, n // 5))
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(timed(trainer.run, n, device))
        theirs.append(timed(tutorial.run, n, device))
    trainer_ms, tutorial_ms = 1000 * statistics.median(ours), 1000 * statistics.median(theirs)
    return {
        "model": "mlp",
        "batch_size": b,
        "device": device.type,
        "trainer_ms_per_step": trainer_ms,
        "tutorial_ms_per_step": tutorial_ms,
        "ratio": statistics.median(t / o for o, t in zip(ours, theirs, strict=True)),
        "trainer_gflops": train_step_flops("mlp", b) / trainer_ms / 1e6,
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


def torchvision_root(raw_dir: Path, into: Path) -> Path:
    """torchvision's MNIST wants the decompressed files under ROOT/MNIST/raw/."""
    target = into / "MNIST" / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for gz in raw_dir.glob("*-ubyte.gz"):
        (target / gz.name[:-3]).write_bytes(gzip.decompress(gz.read_bytes()))
    return into


# ----------------------------------------------------------------------------- 4. a job, a cell

CELL_PROBE = """
import json, resource, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {scripts!r})
import torch
import batchlab.train_job
from batchlab.data import DeviceData, load_prepared, to_device
from batchlab.models import input_shape
from batchlab.train import CellConfig, train_cell
imported = time.perf_counter() - t0
if sys.argv[1] == "start":
    print(json.dumps({{"imports_s": imported}}))
    sys.exit()
model, seeds, n, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
measure = json.loads(sys.argv[5])
torch.set_num_threads(threads)
full = to_device(load_prepared({data!r}), input_shape(model), torch.device("cpu"))
# the whole training set stays resident (as in a job); the epoch covers its first n images
data = DeviceData(full.train_x[:n], full.train_y[:n], full.test_x, full.test_y)
cfg = CellConfig(batch_size=64, lr=0.01, seeds=tuple(range(seeds)), model=model, **measure)
result = train_cell(cfg, data, torch.device("cpu"), log=lambda m: None)
m = result.measure_seconds
print(json.dumps({{**m, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def probe(args, *argv) -> dict:
    code = CELL_PROBE.format(scripts=str(ROOT / "workflow/scripts"), data=str(args.data))
    done = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def study_measure(model: str) -> dict:
    """The `measure` group a study of this model uses: params.yaml's, and for the cnn with
    config/full.yaml (the cnn study) merged over it."""
    import yaml

    measure = yaml.safe_load((ROOT / "params.yaml").read_text())["measure"]
    if model == "cnn":
        measure.update(yaml.safe_load((ROOT / "config/full.yaml").read_text()).get("measure", {}))
    return measure


def job_and_cell_costs(args) -> dict:
    starts = [probe(args, "start")["imports_s"] for _ in range(args.rounds)]
    out = {"job_imports_s": statistics.median(starts)}
    for model in args.models.split(","):
        measure = json.dumps(study_measure(model))
        # one epoch at batch 64 with the study's measurements: what measuring costs beside training
        cost = probe(args, model, 1, 60000 if model == "mlp" else args.cnn_cell_images, 2, measure)
        cost["measure_share"] = (cost["test_eval"] + cost["noise"] + cost["sharpness"]) / cost["training"]
        # five seeds, the whole data resident: a job's peak memory
        memory = probe(args, model, 5, 6400, args.threads, measure)
        out[model] = {"measure": measure, "cell_1_seed_2_threads": cost, "peak_rss_mb_5_seeds": memory["peak_rss_mb"]}
    return out


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data/mnist/mnist.pt")
    parser.add_argument("--raw", type=Path, default=ROOT / "data/mnist/raw")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the study's default: 1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--baseline", default=BASELINE, help="the commit whose trainer is the baseline")
    parser.add_argument("--cnn-cell-images", type=int, default=60000, help="training images of the cnn cell-cost epoch")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: ensemble,tutorial,costs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results.json")
    args = parser.parse_args()
    for path in (args.data, args.raw):
        if not path.exists():
            sys.exit(f"bench: {path} is missing; run `snakemake --cores 1 data/mnist/mnist.pt` first")
    skip = set(filter(None, args.skip.split(",")))
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "threads": args.threads,
        "rounds": args.rounds,
        "baseline": args.baseline,
        "packages": package_versions(("torch", "torchvision")),
    }
    if "ensemble" not in skip:
        print(f"ensemble: ms per seed-step of the epoch loop; baseline = the single-seed trainer at {args.baseline}")
        result["ensemble"] = [row for device in devices for row in ensemble_rows(args, device)]
    if "tutorial" not in skip:
        print("\ntrainer (S = 1) against a tutorial loop (DataLoader), mlp:")
        tensors = load_prepared(args.data)
        result["tutorial"], result["matmul_gflops"] = [], {}
        with tempfile.TemporaryDirectory() as tmp:
            root = torchvision_root(args.raw, Path(tmp))
            for name in devices:
                device = torch.device(name)
                result["matmul_gflops"][name] = matmul_gflops(device)
                data = to_device(tensors, input_shape("mlp"), device)
                for b in TUTORIAL_BATCHES:
                    row = tutorial_row(b, data, root, device, args.rounds)
                    result["tutorial"].append(row)
                    print(
                        f"{name:4} mlp bs {b:4}: trainer {row['trainer_ms_per_step']:8.3f} ms/step | tutorial"
                        f" {row['tutorial_ms_per_step']:8.3f} ms/step | ratio {row['ratio']:5.2f}x"
                        f" (target >= {TUTORIAL_TARGETS.get(b, 1.0):g}x)",
                        flush=True,
                    )
        cpu512 = next(r for r in result["tutorial"] if r["device"] == "cpu" and r["batch_size"] == 512)
        share = cpu512["trainer_gflops"] / result["matmul_gflops"]["cpu"]
        print(
            f"fp32 matmul 1024x1024, {args.threads} thread(s): {result['matmul_gflops']['cpu']:.1f} GFLOP/s;"
            f" trainer at batch 512: {cpu512['trainer_gflops']:.1f} GFLOP/s = {share:.0%} of it (target >= 60%)"
        )
    if "costs" not in skip:
        costs = result["costs"] = job_and_cell_costs(args)
        print(f"\njob start-up: Python + imports of a training job {costs['job_imports_s']:.2f} s (median)")
        for model in args.models.split(","):
            c = costs[model]["cell_1_seed_2_threads"]
            print(
                f"{model} cell, batch 64, one epoch, 2 threads: training {c['training']:.1f} s; test evaluations"
                f" {c['test_eval']:.1f} s, noise {c['noise']:.1f} s, sharpness {c['sharpness']:.1f} s ="
                f" {c['measure_share']:.0%} of training (target < 25%); peak memory with 5 seeds"
                f" {costs[model]['peak_rss_mb_5_seeds']:.0f} MB (target < 1500)"
            )
    if "ensemble" in result:
        print("\nS = 5 per seed-step against the baseline, against the targets:")
        for r in result["ensemble"]:
            target = ENSEMBLE_TARGET.get(r["batch_size"], 1.0) if r["device"] == "cpu" else None
            verdict = "" if target is None else (" met" if r["ratio_s5"] >= target else " NOT met") + f" (>= {target:g}x)"
            print(f"  {r['device']} {r['model']} bs {r['batch_size']:4}: {r['ratio_s5']:5.2f}x{verdict}")
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
