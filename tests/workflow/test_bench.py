"""The benchmark (benchmarks/bench.py, `make bench`) rehearsed end to end, so that it cannot rot
unnoticed: --quick runs every part on a few steps (the trainer against the baseline commit's, the
tutorial loop, the matmul, a job's start-up and a cell's measuring costs) on MNIST from the local
mirror, and prints each part's figures beside what they are compared with. Its figures mean
nothing here: only that each part ran and reported them."""

import json
import math
import re
import subprocess
import sys

import pytest
import torch

from batchlab.data.tensors import read_mnist_folder
from conftest import REPO

pytestmark = pytest.mark.slow

NUMBER = r"\d+\.\d+"


def positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_the_quick_benchmark_runs_every_part_and_prints_its_figures(tmp_path, mnist_mirror):
    has_baseline = subprocess.run(["git", "cat-file", "-e", "aceeb53^{commit}"], cwd=REPO, capture_output=True)
    if has_baseline.returncode != 0:
        pytest.skip("the baseline commit aceeb53 is not in this clone's history (a shallow clone?)")
    data, out = tmp_path / "mnist.pt", tmp_path / "bench.json"
    torch.save(read_mnist_folder(mnist_mirror), data)  # what the prepare rule writes
    cmd = [sys.executable, str(REPO / "benchmarks/bench.py"), "--quick", "--data", str(data),
           "--raw", str(mnist_mirror), "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text, result = done.stdout, json.loads(out.read_text())
    assert result["quick"] and result["rounds"] == 1

    # 1. the ensemble against the single-seed trainer of the baseline commit
    assert "baseline = the single-seed trainer at aceeb53" in text
    [row] = [r for r in result["ensemble"] if r["device"] == "cpu"]
    assert (row["model"], row["batch_size"]) == ("mlp", 64)
    assert all(positive(row[k]) for k in ("baseline_ms_per_seed_step", "s5_ms_per_seed_step", "ratio_s1", "ratio_s5"))
    assert re.search(rf"cpu  mlp bs   64: baseline +{NUMBER} \| S=1 +{NUMBER} \({NUMBER}x\) \| S=5 +{NUMBER} \({NUMBER}x\)", text)
    assert f"({row['ratio_s5']:4.2f}x)  ms per seed-step" in text
    assert "S = 5 per seed-step against the baseline, against the targets:" in text
    assert re.search(rf"cpu mlp bs   64: +{row['ratio_s5']:.2f}x (met|NOT met) \(>= 1x\)", text)

    # 2. and 3. the trainer against the tutorial loop, and against the machine's matmul
    assert "trainer (S = 1) against a tutorial loop (DataLoader), mlp:" in text
    [tutorial] = [r for r in result["tutorial"] if r["device"] == "cpu"]
    assert tutorial["batch_size"] == 512 and positive(tutorial["ratio"]) and positive(tutorial["trainer_gflops"])
    assert f"ratio {tutorial['ratio']:5.2f}x (target >= 8x)" in text
    assert positive(result["matmul_gflops"]["cpu"])
    assert re.search(rf"fp32 matmul 256x256, 1 thread\(s\): {NUMBER} GFLOP/s; trainer at batch 512: {NUMBER} GFLOP/s = \d+% of it", text)

    # 4. a job's start-up, a cell's measuring costs (the trainer's measure_seconds) and peak memory
    costs = result["costs"]
    assert positive(costs["job_imports_s"]) and re.search(rf"job start-up: .* {NUMBER} s \(median\)", text)
    cell = costs["mlp"]["cell_1_seed_2_threads"]
    assert all(positive(cell[k]) for k in ("training", "val_eval", "noise", "sharpness", "epoch_eval", "measure_share"))
    assert positive(costs["mlp"]["peak_rss_mb_5_seeds"])
    assert f"= {cell['measure_share']:.0%} of training (target < 25%)" in text
    assert re.search(r"peak memory with 5 seeds \d+ MB \(target < 1500\)", text)
    assert costs["mlp"]["measure"]["noise_batch"] == 2048  # the study's own measure group (params.yaml)
