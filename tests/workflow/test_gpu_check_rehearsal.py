"""The prepared GPU check itself (benchmarks/gpu_check.py), rehearsed on the CPU: every part runs
through the package's own training jobs and writes its JSON; without a GPU and without the
rehearsal flag it refuses, saying why, and writes nothing. Its figures here mean nothing."""

import json
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

OVERLAY = """\
grid:
  batch_sizes: [1000]
  learning_rates: [0.1, 0.2]
  seeds: [0, 1]
  optimizers: [sgd]
train:
  epochs: 1
remedies: {enabled: false}
solution2: {enabled: false}
equal_updates: {enabled: false}
late_blowup: {enabled: false}
gradient_probe: {enabled: false}
"""


def gpu_check(*args, cwd=REPO):
    cmd = [sys.executable, str(REPO / "benchmarks/gpu_check.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd)


def test_the_check_rehearsed_on_the_cpu_runs_every_part_and_writes_its_json(tmp_path, mnist_mirror):
    (tmp_path / "tiny.yaml").write_text(OVERLAY)
    out = tmp_path / "check.json"
    done = gpu_check("--rehearse", "--study-config", str(tmp_path / "tiny.yaml"), "--jobs", "1,2",
                     "--mnist", str(mnist_mirror), "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["complete"] and result["rehearsal"]
    parts = ("facts", "tests", "steps", "jobs_per_gpu", "study", "profile")
    assert all(not (isinstance(result[p], dict) and ("error" in result[p] or "skipped" in result[p])) for p in parts), result
    assert result["tests"]["returncode"] == 0  # pytest -m gpu: skipped here, but it ran
    assert {(r["model"], r["batch_size"], r["seeds"], r["graphs"]) for r in result["steps"]} >= {("mlp", 1, 5, True), ("mlp", 4096, 1, False)}
    assert [s["jobs_per_gpu"] for s in result["jobs_per_gpu"]] == [1, 2]
    study = result["study"]
    assert study["cells"] == 2 and {c["cell"] for c in study["done"]} == {"bs1000_lr0.1", "bs1000_lr0.2"}
    assert all(r["status"] == "ok" and 0.5 < r["val_acc"] <= 1 for c in study["done"] for r in c["rows"])
    assert study["against_cpu"]["missing_on_cpu"] == ["bs1000_lr0.1", "bs1000_lr0.2"]  # not in the reference
    targets = result["targets"]
    assert set(targets) >= {"step_us_bs1_s5_graphs", "study_wall_s", "full_projection", "full_projection_min"}
    assert "projection" in targets["full_projection"]["kind"] and targets["full_projection"]["cells"] > 200
    assert "=== GPU check ===" in done.stdout


def test_without_a_gpu_the_check_says_so_and_writes_nothing(tmp_path):
    out = tmp_path / "check.json"
    done = gpu_check("--out", str(out))
    assert done.returncode == 1 and "no CUDA device here" in done.stderr
    assert not out.exists()


def test_a_folder_without_mnist_is_named(tmp_path):
    done = gpu_check("--rehearse", "--mnist", str(tmp_path), "--out", str(tmp_path / "x.json"))
    assert done.returncode == 1 and f"cannot read MNIST from {tmp_path}" in done.stderr
    assert "train-images-idx3-ubyte.gz" in done.stderr and not (tmp_path / "x.json").exists()
