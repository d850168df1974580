"""The prepared GPU check: one command on a machine with one CUDA GPU, in at most 8 minutes.

    make gpu-check                       # or: python3 benchmarks/gpu_check.py [--mnist DIR]

It runs on the environment it finds (Python 3.12, PyTorch 2.11 or newer, numpy, pandas,
pyarrow, pyyaml, pytest): it installs nothing, needs no network and no Snakemake (it drives the
package's own training jobs), and reads MNIST from a folder of the four .gz files (default
data/mnist/raw, where the workflow's fetch puts them). Parts, in order; a part that no longer
fits the budget is skipped and the JSON says so:

1. facts: nvidia-smi, PyTorch, CUDA.
2. tests: `pytest -m gpu` (CUDA against the CPU, graphs on and off, no host sync per step).
3. steps: ms per seed-step of the mlp's fused step at batch 1, 8, 64, 512, 4096, CUDA graphs
   on and off, S = 1 and S = 5; the cnn's (S = 1, graphs on) at config/full.yaml's batch sizes.
4. jobs per GPU: a fixed set of the default study's cells, 1, 2, 4 and 8 jobs at once on the
   GPU (each a process with its own CUDA context, as Snakemake's jobs are): cells per minute.
5. the study: every cell of the default study (params.yaml) on CUDA, K jobs at once (the best
   of part 4), its wall time, the GPU's utilization sampled during it, and each cell's final
   losses against the CPU's (benchmarks/cpu_reference.csv, written from results/ with
   --write-reference).
6. a profile of one batch-1 cell (torch.profiler), and the targets: met, or missed by how much,
   with config/full.yaml's wall time projected from the measured rates (labelled a projection).

Prints one summary; writes benchmarks/gpu_check.json (after every part, so a run cut short
still leaves what it measured: "complete" says whether it finished).

    python3 benchmarks/gpu_check.py --rehearse --out /tmp/check.json

rehearses it on the CPU (every part, a few steps each, the study of --study-config) so that the
project's tests run the check itself where there is no GPU; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow/scripts"))

from batchlab import study
from batchlab.bench import gpu_check as check
from batchlab.data.tensors import read_mnist_folder, to_device
from batchlab.train.batches import Batches
from batchlab.train.devices import strict_fp32
from batchlab.train.ensemble import Ensemble
from batchlab.train.graphs import graphed
from batchlab.train.optimizers import build_optimizer
from batchlab.train.settings import OptimizerSettings as Settings
from batchlab.train.steps import autograd_step, fused_mlp_sgd

REFERENCE = ROOT / "benchmarks/cpu_reference.csv"
MLP_BATCHES, MLP_STEPS = (1, 8, 64, 512, 4096), {1: 3000, 8: 2000, 64: 1000, 512: 300, 4096: 100}
SWEEP_JOBS = (1, 2, 4, 8)
SWEEP_CELLS = 8  # of the default study, batch sizes 16 to 256: seconds each on a GPU
COLUMNS = ("cell", "seed", "status", "train_loss", "val_loss", "val_acc", "test_acc")


def load_config(*overlays: str) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for path in overlays:
        raw = check.merge(raw, yaml.safe_load((ROOT / path).read_text()))
    return check.study_config(raw, yaml.safe_load((ROOT / "workflow/schemas/params.schema.yaml").read_text()))


# ----------------------------------------------------------------------------- 1. facts and 2. tests


def facts(device: torch.device) -> dict:
    query = "name,driver_version,memory.total,clocks.max.sm,power.limit"
    try:
        smi = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True)
        nvidia = smi.stdout.strip() or smi.stderr.strip()
    except FileNotFoundError:
        nvidia = "nvidia-smi not found"
    return {
        "nvidia_smi": nvidia,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (a rehearsal)",
        "python": sys.version.split()[0],
    }


def tests(mnist: Path) -> dict:
    env = {**os.environ, "BATCHLAB_TEST_MNIST": str(mnist)}
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests/unit/test_gpu.py"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    return {"command": " ".join(cmd[1:]), "returncode": done.returncode, "tail": done.stdout.strip().splitlines()[-12:]}


# ----------------------------------------------------------------------------- 3. steps


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_ms(data, model: str, b: int, seeds: int, graphs: bool, steps: int, around=None) -> float:
    """ms per seed-step of the cell's step over `steps` batches, after a warm-up (and capture);
    `around`: a context manager for the timed steps alone (a profiler)."""
    device = data.train_x.device
    ens = Ensemble.initialize(model, list(range(seeds)), device)
    alive = torch.ones(seeds, dtype=torch.bool, device=device)
    if model == "mlp":
        step = fused_mlp_sgd(ens, alive, 1000.0, b, masked=seeds > 1, defer=not graphs)
    else:
        step = autograd_step(ens, build_optimizer(ens.tensors(), Settings("sgd")), alive, 1000.0, masked=seeds > 1)
    step = graphed(step, device, graphs, lambda line: None)
    order = torch.stack([torch.randperm(data.n_train) for _ in range(seeds)]).to(device)
    batches, iters = Batches(data, order, b), data.n_train // b
    for pos in range(min(10, steps)):
        step(*batches(pos % iters), 0.01)
    sync(device)
    with around or contextlib.nullcontext():
        t0 = time.perf_counter()
        for pos in range(steps):
            step(*batches((10 + pos) % iters), 0.01)
        step.flush()
        sync(device)
    return 1000 * (time.perf_counter() - t0) / (steps * seeds)


def step_rows(data_mlp, data_cnn, full_batches: list[int], scale: float = 1.0) -> list[dict]:
    """The rows of part 3; scale < 1 (a rehearsal) takes that share of the steps."""
    rows = []
    for b in MLP_BATCHES:
        for seeds in (1, 5):
            for graphs in (True, False):
                ms = step_ms(data_mlp, "mlp", b, seeds, graphs, max(2, int(MLP_STEPS[b] * scale)))
                rows.append({"model": "mlp", "batch_size": b, "seeds": seeds, "graphs": graphs, "ms_per_seed_step": ms})
                print(f"  mlp bs {b:5} S={seeds} graphs {'on ' if graphs else 'off'}: {1000 * ms:9.1f} us/seed-step", flush=True)
    for b in full_batches:
        ms = step_ms(data_cnn, "cnn", b, 1, True, max(2, int(scale * max(20, min(400, 40000 // b)))))
        rows.append({"model": "cnn", "batch_size": b, "seeds": 1, "graphs": True, "ms_per_seed_step": ms})
        print(f"  cnn bs {b:5} S=1 graphs on : {1000 * ms:9.1f} us/seed-step", flush=True)
    return rows


# ----------------------------------------------------------------------------- 4. and 5. cells as jobs


def _worker_init(per_gpu: int, lock_dir: str) -> None:
    os.environ["BATCHLAB_JOBS_PER_GPU"] = str(per_gpu)
    os.environ["BATCHLAB_GPU_LOCK_DIR"] = lock_dir


def run_cell(spec: dict) -> dict:
    """One training job, as the train rule runs it; its seeds' final rows and wall time."""
    from batchlab.cells import FILES
    from batchlab.cli import Log
    from batchlab.train.job import Job, main

    out = Path(spec.pop("out"))
    job = Job(
        **spec,
        outputs={name: str(out / file) for name, file in FILES.items()},
        checkpoint=str(out / "checkpoint.pt"),
        store=str(out / "seeds"),
        log_path=str(out / "train.log"),
    )
    t0 = time.perf_counter()
    main(job, Log(job.log_path))
    metrics = json.loads((out / FILES["metrics"]).read_text())
    return {
        "cell": job.cell,
        "wall_s": time.perf_counter() - t0,
        "training_s": metrics["seeds"][0]["measure_seconds"].get("training", 0.0),
        "step_implementation": metrics["seeds"][0]["step_implementation"],
        "rows": check.seed_rows(metrics),
    }


def run_cells(config: dict, cells, per_gpu: int, work: Path, name: str, device: str, sample_gpu: bool = False) -> dict:
    """Every cell as a job (on the device, outputs under work/name), per_gpu of them at once; wall
    time, cells per minute, the GPU's utilization."""
    specs = []
    for c in cells:
        spec = check.job_settings(config, c)
        spec["train"] = {**spec["train"], "device": device}
        specs.append({**spec, "data_path": str(work / "mnist.pt"), "out": str(work / name / c.name())})
    sampler = Sampler() if sample_gpu else None
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(per_gpu, _worker_init, (per_gpu, str(work / name / "locks"))) as pool:
        done = list(pool.imap_unordered(run_cell, specs))
    wall = time.perf_counter() - t0
    result = {"jobs_per_gpu": per_gpu, "cells": len(done), "wall_s": wall, "cells_per_min": 60 * len(done) / wall}
    if sampler is not None:
        result["gpu_utilization"] = sampler.stop()
    result["done"] = done
    return result


class Sampler:
    """nvidia-smi's utilization and memory every 0.5 s, in a thread, while a part runs."""

    def __init__(self):
        cmd = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms", "500"]
        self.lines: list[str] = []
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        except FileNotFoundError:  # a rehearsal on a machine without NVIDIA's tools
            self.proc = None
            return
        self.thread = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.thread.start()

    def stop(self) -> dict:
        if self.proc is None:
            return {"samples": 0, "note": "nvidia-smi not found"}
        self.proc.terminate()
        self.thread.join(timeout=5)
        values = [[float(v) for v in line.split(",")] for line in self.lines if line.count(",") == 1]
        if not values:
            return {"samples": 0}
        util = sorted(v[0] for v in values)
        return {
            "samples": len(values),
            "mean_percent": sum(util) / len(util),
            "median_percent": util[len(util) // 2],
            "max_memory_mib": max(v[1] for v in values),
        }


def sweep_cells(config: dict) -> list:
    """SWEEP_CELLS cells of the default study's grid, batch sizes 16 to 256, spread over them."""
    grid = [c for c in study.design(config) if c.in_group("grid")]
    grid = [c for c in grid if 16 <= c.batch_size <= 256] or grid  # a rehearsal's tiny grid: its own
    step = max(1, len(grid) // SWEEP_CELLS)
    return grid[::step][:SWEEP_CELLS]


def read_reference() -> list[dict]:
    if not REFERENCE.exists():
        return []
    with open(REFERENCE) as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["seed"] = int(row["seed"])
        for key in COLUMNS[3:]:
            row[key] = float(row[key]) if row[key] not in ("", "None") else float("nan")
    return rows


def write_reference() -> None:
    """benchmarks/cpu_reference.csv from the default study's CPU results (results/runs)."""
    rows = []
    for path in sorted((ROOT / "results/runs").glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        if metrics.get("device") != "cpu":
            sys.exit(f"gpu_check: {path} was not trained on the CPU")
        rows += check.seed_rows(metrics)
    if not rows:
        sys.exit("gpu_check: no results/runs/*/metrics.json: run the default study first (make study or make pull)")
    with open(REFERENCE, "w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {REFERENCE} ({len(rows)} seeds)")


# ----------------------------------------------------------------------------- 6. profile


def profile_cell(data_mlp, steps: int = 500) -> str:
    """Where a batch-1 cell's time goes: torch.profiler over 500 steps of 5 seeds, graphs on."""
    from torch.profiler import ProfilerActivity, profile

    cuda = data_mlp.train_x.device.type == "cuda"
    prof = profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else []))
    step_ms(data_mlp, "mlp", 1, 5, True, steps, around=prof)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


# ----------------------------------------------------------------------------- main


class Parts:
    """Runs the parts within the budget, keeps each one's result or error, writes the JSON."""

    def __init__(self, budget_s: float, out: Path, result: dict):
        self.t0, self.budget, self.out, self.result = time.perf_counter(), budget_s, out, result

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def run(self, name: str, needs_s: float, fn):
        if self.left() < needs_s:
            self.result[name] = {"skipped": f"{self.left():.0f} s of the budget left, the part needs about {needs_s:.0f} s"}
            print(f"{name}: SKIPPED ({self.result[name]['skipped']})", flush=True)
            return None
        print(f"{name} ({self.left():.0f} s of the budget left) ...", flush=True)
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as error:  # one part's failure must not cost the others their GPU time
            value = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc().splitlines()[-8:]}
            print(f"{name}: ERROR {value['error']}", flush=True)
        self.result[name] = value
        self.result.setdefault("part_seconds", {})[name] = time.perf_counter() - t0
        self.write()
        return value

    def write(self) -> None:
        self.out.write_text(json.dumps(self.result, indent=2, default=str) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=ROOT / "data/mnist/raw", help="folder of the four MNIST .gz files")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/gpu_check.json")
    parser.add_argument("--budget-s", type=float, default=450.0, help="stop starting parts after this (8 minutes in all)")
    parser.add_argument("--write-reference", action="store_true", help="write benchmarks/cpu_reference.csv and stop")
    parser.add_argument("--rehearse", action="store_true", help="on the CPU, a few steps a part (for the tests)")
    parser.add_argument("--study-config", help="a config file merged into params.yaml for parts 4 and 5")
    parser.add_argument("--jobs", default=",".join(map(str, SWEEP_JOBS)), help="jobs per GPU to try in part 4")
    args = parser.parse_args()
    if args.write_reference:
        return write_reference()
    if not (args.rehearse or torch.cuda.is_available()):
        sys.exit("gpu_check: no CUDA device here (torch.cuda.is_available() is False); run it on a machine with one GPU")
    try:
        tensors = read_mnist_folder(args.mnist)
    except Exception as error:
        sys.exit(f"gpu_check: cannot read MNIST from {args.mnist}: {error} (--mnist DIR: a folder of the four .gz files)")
    device = torch.device("cpu" if args.rehearse else "cuda")
    strict_fp32()
    result = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "complete": False, "rehearsal": args.rehearse}
    parts = Parts(args.budget_s, args.out, result)
    config = load_config(*([args.study_config] if args.study_config else []))
    full = load_config("config/full.yaml")
    full_batches = [1, 64] if args.rehearse else sorted(full["grid"]["batch_sizes"])
    jobs = [int(k) for k in args.jobs.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.save(tensors, work / "mnist.pt")
        data_mlp = to_device(tensors, (784,), device, config["train"]["validation_size"])
        data_cnn = to_device(tensors, (1, 28, 28), device, full["train"]["validation_size"])
        parts.run("facts", 0, lambda: facts(device))
        parts.run("tests", 120, lambda: tests(args.mnist))
        parts.run("steps", 60, lambda: step_rows(data_mlp, data_cnn, full_batches, 0.01 if args.rehearse else 1.0))
        sweep = parts.run(
            "jobs_per_gpu", 150, lambda: [run_cells(config, sweep_cells(config), k, work, f"sweep{k}", device.type) for k in jobs]
        )
        sweep = sweep if isinstance(sweep, list) else []
        run = parts.run("study", 130, lambda: study_part(config, best_jobs(sweep), work, device.type))
        parts.run("profile", 20, lambda: profile_cell(data_mlp, 20 if args.rehearse else 500))
    result["targets"] = targets(result, sweep, run, full)
    result["complete"] = True
    parts.write()
    summary(result)
    print(f"\nwrote {args.out}")


def best_jobs(sweep) -> int:
    rates = {s["jobs_per_gpu"]: s["cells_per_min"] for s in sweep}
    return max(rates, key=rates.get) if rates else 4


def study_part(config: dict, per_gpu: int, work: Path, device: str) -> dict:
    run = run_cells(config, study.design(config), per_gpu, work, "study", device, sample_gpu=True)
    rows = [row for cell in run["done"] for row in cell["rows"]]
    run["against_cpu"] = check.compare_with_cpu(rows, read_reference())
    run["against_cpu"]["reference"] = str(REFERENCE.relative_to(ROOT)) if REFERENCE.exists() else "missing"
    run["step_implementations"] = sorted({cell["step_implementation"] for cell in run["done"]})
    return run


def targets(result: dict, sweep, run, full: dict) -> dict:
    steps = result.get("steps") if isinstance(result.get("steps"), list) else []
    bs1 = next((r for r in steps if r["model"] == "mlp" and r["batch_size"] == 1 and r["seeds"] == 5 and r["graphs"]), None)
    out = {
        "step_us_bs1_s5_graphs": check.verdict(5000 * bs1["ms_per_seed_step"] if bs1 else None, check.TARGETS["step_us_bs1_s5_graphs"]),
        "study_wall_s": check.verdict(run.get("wall_s") if isinstance(run, dict) else None, check.TARGETS["study_wall_s"]),
    }
    cnn = {r["batch_size"]: r["ms_per_seed_step"] for r in steps if r["model"] == "cnn"}
    if cnn and isinstance(run, dict) and "done" in run:
        overhead = sum(c["wall_s"] for c in run["done"]) / max(sum(c["training_s"] for c in run["done"]), 1e-9)
        rates = {s["jobs_per_gpu"]: s["cells_per_min"] for s in sweep}
        speedup = max(rates.values()) / rates[1] if 1 in rates else 1.0
        projected = check.projection(check.cell_steps(full), cnn, overhead, speedup)
        out["full_projection"] = projected
        out["full_projection_min"] = check.verdict(projected["several_at_once_min"], check.TARGETS["full_projection_min"])
    return out


def summary(result: dict) -> None:
    print("\n=== GPU check ===")
    print(f"device: {result['facts'].get('device')}; torch {result['facts'].get('torch')}")
    tests_ = result.get("tests", {})
    print(f"pytest -m gpu: {'passed' if tests_.get('returncode') == 0 else 'FAILED or skipped'} {tests_.get('tail', [''])[-1:]}")
    for name, t in result["targets"].items():
        if name == "full_projection":
            continue
        state = "not measured" if t["met"] is None else ("met" if t["met"] else f"MISSED ({t['times_target']:.2f}x the target)")
        print(f"{name}: {t['measured']} against {t['target']}: {state}")
    run = result.get("study")
    if isinstance(run, dict) and "against_cpu" in run:
        a = run["against_cpu"]
        print(f"study: {run['cells']} cells, {run['jobs_per_gpu']} jobs per GPU, {run['wall_s']:.0f} s; against the CPU: {a['within']}/{a['compared']} within the seed interval")


if __name__ == "__main__":
    main()
