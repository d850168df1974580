"""Part 4 of benchmarks/bench.py: what a training job pays before its code, what one cell's
measurements cost beside its training (with the study's own `measure` group), and the peak
memory of a five-seed job; each in a fresh process (benchmarks/cell_probe.py)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from gpu_check import load_config
from plan import Plan

from batchlab import study

ROOT = Path(__file__).resolve().parents[1]


def probe(args, *argv) -> dict:
    cmd = [sys.executable, str(Path(__file__).parent / "cell_probe.py"), str(ROOT / "workflow/scripts"), str(args.data)]
    done = subprocess.run([*cmd, *map(str, argv)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"bench: cell_probe.py {' '.join(map(str, argv[:4]))} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def study_measure(model: str) -> dict:
    """The `measure` group a study of this model hands its jobs: params.yaml's, for the cnn with
    config/full.yaml (the cnn study) merged over it."""
    return study.measure_params(load_config(*(["config/full.yaml"] if model == "cnn" else [])))


def costs(args, plan: Plan) -> dict:
    starts = [probe(args, "start")["imports_s"] for _ in range(args.rounds)]
    out = {"job_imports_s": statistics.median(starts)}
    for model in args.models.split(","):
        measure = {**study_measure(model), **plan.measure}
        # one epoch at batch 64 with the study's measurements: what measuring costs beside training
        cost = probe(args, model, 1, plan.cell_images[model], 2, json.dumps(measure))
        # five seeds, the whole data resident: a job's peak memory
        memory = probe(args, model, 5, plan.memory_images, args.threads, json.dumps(measure))
        out[model] = {"measure": measure, "cell_1_seed_2_threads": cost, "peak_rss_mb_5_seeds": memory["peak_rss_mb"]}
    return out


def run(args, plan: Plan) -> dict:
    """The costs, printed; measure_share is batchlab.train.loop's: the probes and the sharpness
    against training (the epoch-end evaluations every record needs are shown apart)."""
    out = costs(args, plan)
    print(f"\njob start-up: Python + imports of a training job {out['job_imports_s']:.2f} s (median)")
    for model in args.models.split(","):
        c = out[model]["cell_1_seed_2_threads"]
        print(
            f"{model} cell, batch 64, one epoch of {plan.cell_images[model]} images, 2 threads: training"
            f" {c['training']:.2f} s; validation probes {c['val_eval']:.2f} s, noise {c['noise']:.2f} s,"
            f" track {c['track']:.2f} s, sharpness {c['sharpness']:.2f} s = {c['measure_share']:.0%} of"
            f" training (target < 25%); epoch-end evaluations {c['epoch_eval']:.2f} s; peak memory with"
            f" 5 seeds {out[model]['peak_rss_mb_5_seeds']:.0f} MB (target < 1500)"
        )
    return out
