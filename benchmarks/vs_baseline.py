"""Part 1 of benchmarks/bench.py: the ensemble's ms per seed-step of a cell's epoch loop (as
epochs.parquet reports it) with S = 1 and S = 5 seeds, against the single-seed trainer of an
earlier commit, each version in a persistent benchmarks/worker.py, requests interleaved A B A B."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from plan import Plan

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "aceeb53"  # the last single-seed trainer (one job per seed)
TARGETS = {1: 1.8}  # per seed-step, S = 5 against the baseline, by batch size; 1.0 elsewhere


class Worker:
    """A persistent benchmarks/worker.py process timing one version of the trainer."""

    def __init__(self, scripts: Path, data: Path, device: str, threads: int):
        cmd = [sys.executable, str(Path(__file__).parent / "worker.py"), str(scripts), str(data), device, str(threads)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def epoch(self, model: str, b: int, seeds: list[int], steps: int) -> float:
        """ms per seed-step of one epoch of `steps` steps per seed."""
        request = {"model": model, "batch_size": b, "seeds": seeds, "n_train": steps * b}
        self.proc.stdin.write(json.dumps(request) + "\n")
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


def row(old: Worker, new: Worker, model: str, b: int, steps: int, rounds: int) -> dict:
    """One model and batch size: the median ms per seed-step of each side and of per-round ratios."""
    for worker in (old, new):  # warm-up: allocator, caches, lazy initialisation
        worker.epoch(model, b, [0], steps)
    five = list(range(5))
    times: dict[str, list[float]] = {"old": [], "new1": [], "new5": []}
    for _ in range(rounds):
        times["old"].append(old.epoch(model, b, five, steps))
        times["new1"].append(new.epoch(model, b, [0], steps))
        times["new5"].append(new.epoch(model, b, five, steps))
    return {
        "model": model,
        "batch_size": b,
        "baseline_ms_per_seed_step": statistics.median(times["old"]),
        "s1_ms_per_seed_step": statistics.median(times["new1"]),
        "s5_ms_per_seed_step": statistics.median(times["new5"]),
        "ratio_s1": statistics.median(o / n for o, n in zip(times["old"], times["new1"], strict=True)),
        "ratio_s5": statistics.median(o / n for o, n in zip(times["old"], times["new5"], strict=True)),
    }


def rows(args, plan: Plan, device: str) -> list[dict]:
    """Every model and batch size of the plan on one device, printed as they come."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        old = Worker(baseline_checkout(args.baseline, Path(tmp)), args.data, device, args.threads)
        new = Worker(ROOT / "workflow/scripts", args.data, device, args.threads)
        try:
            for model in args.models.split(","):
                for b, steps in plan.ensemble_steps[model].items():
                    r = {"device": device, **row(old, new, model, b, steps, args.rounds)}
                    out.append(r)
                    print(
                        f"{device:4} {model} bs {b:4}: baseline {r['baseline_ms_per_seed_step']:8.3f} | S=1"
                        f" {r['s1_ms_per_seed_step']:8.3f} ({r['ratio_s1']:4.2f}x) | S=5"
                        f" {r['s5_ms_per_seed_step']:8.3f} ({r['ratio_s5']:4.2f}x)  ms per seed-step",
                        flush=True,
                    )
        finally:
            old.close()
            new.close()
    return out


def run(args, plan: Plan, devices: list[str]) -> list[dict]:
    print(f"ensemble: ms per seed-step of the epoch loop; baseline = the single-seed trainer at {args.baseline}")
    return [r for device in devices for r in rows(args, plan, device)]


def summary(ensemble: list[dict]) -> None:
    """S = 5 against the baseline, with the CPU's targets."""
    print("\nS = 5 per seed-step against the baseline, against the targets:")
    for r in ensemble:
        target = TARGETS.get(r["batch_size"], 1.0) if r["device"] == "cpu" else None
        verdict = "" if target is None else (" met" if r["ratio_s5"] >= target else " NOT met") + f" (>= {target:g}x)"
        print(f"  {r['device']} {r['model']} bs {r['batch_size']:4}: {r['ratio_s5']:5.2f}x{verdict}")
