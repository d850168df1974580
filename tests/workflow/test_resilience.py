"""Nothing finished is lost: kill -9 and resume, concurrent runs, bad data through the workflow."""

import json
import os
import signal
import subprocess
import time

import pandas as pd
import pytest

from conftest import VENV_BIN, copy_workflow, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

GRID = """\
grid:
  batch_sizes: [16, 1000]
  learning_rates: [0.05]
  seeds: [0]
train:
  epochs: 3
"""
SLOW = "results/runs/bs16_lr0.05_s0"
QUICK = "results/runs/bs1000_lr0.05_s0"


def start(work, *args, env):
    full_env = {**os.environ, **env, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    return subprocess.Popen(
        [str(VENV_BIN / "snakemake"), *args],
        cwd=work,
        env=full_env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mnist_mirror):
    """The same grid run without interruption."""
    work = copy_workflow(tmp_path_factory.mktemp("reference"))
    (work / "grid.yaml").write_text(GRID)
    # targets before --configfile, which takes every word after it
    done = snakemake(
        work,
        SLOW + "/metrics.json",
        QUICK + "/metrics.json",
        "--cores",
        "2",
        "--configfile",
        "grid.yaml",
        env={"BATCHLAB_MNIST_MIRROR": str(mnist_mirror)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return work


def test_kill_9_then_rerun_resumes_and_loses_nothing(tmp_path, mnist_mirror, reference):
    work = copy_workflow(tmp_path / "w")
    (work / "grid.yaml").write_text(GRID)
    env = {"BATCHLAB_MNIST_MIRROR": str(mnist_mirror)}
    # one cell finishes first; then the whole study starts and is killed mid-training
    done = snakemake(work, QUICK + "/metrics.json", "--cores", "1", "--configfile", "grid.yaml", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    run = start(work, "--cores", "2", "--configfile", "grid.yaml", env=env)
    checkpoint = work / "results/checkpoints/bs16_lr0.05_s0.pt"
    try:
        wait_for(checkpoint.exists, 300, "the slow cell's first checkpoint")
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the whole snakemake process tree, at once
        run.wait()
    assert not (work / SLOW / "metrics.json").exists()
    quick_mtime = (work / QUICK / "metrics.json").stat().st_mtime_ns

    # Snakemake's own advice after a hard kill: unlock, then rerun the incomplete jobs.
    assert snakemake(work, "--unlock", "--configfile", "grid.yaml").returncode == 0
    again = snakemake(work, "--cores", "2", "--configfile", "grid.yaml", "--rerun-incomplete", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (work / QUICK / "metrics.json").stat().st_mtime_ns == quick_mtime  # not retrained
    assert "bs=1000" not in "".join(line for line in again.stderr.splitlines() if "wildcards:" in line)
    metrics = json.loads((work / SLOW / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] >= 1
    resumed = pd.read_parquet(work / SLOW / "losses.parquet")
    expected = pd.read_parquet(reference / SLOW / "losses.parquet")
    pd.testing.assert_frame_equal(resumed, expected)
    assert not checkpoint.exists()  # finished: the outputs are the record


def test_second_concurrent_run_is_refused_and_first_finishes(tmp_path, mnist_mirror):
    work = copy_workflow(tmp_path / "w")
    (work / "grid.yaml").write_text(GRID.replace("epochs: 3", "epochs: 1"))
    env = {"BATCHLAB_MNIST_MIRROR": str(mnist_mirror)}
    first = start(work, "--cores", "1", "--configfile", "grid.yaml", env=env)
    try:
        wait_for(lambda: (work / "logs/fetch.log").exists(), 120, "the first run to start a job")
        second = snakemake(work, "--cores", "1", "--configfile", "grid.yaml", env=env)
        out, _ = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert second.returncode != 0
    assert "LockException" in second.stderr and "cannot be locked" in second.stderr
    assert first.returncode == 0, out[-3000:]
    cells = pd.read_parquet(work / "results/summary/cells.parquet")
    assert len(cells) == 2 and set(cells["status"]) == {"ok"}


def test_corrupt_mirror_fails_fetch_with_nothing_left(tmp_path, mnist_mirror):
    work = copy_workflow(tmp_path / "w")
    bad = tmp_path / "bad-mirror"
    bad.mkdir()
    for f in mnist_mirror.glob("*.gz"):
        blob = bytearray(f.read_bytes())
        if f.name.startswith("t10k-labels"):
            blob = blob[: len(blob) // 2]  # truncated download
        (bad / f.name).write_bytes(bytes(blob))
    (work / "m.yaml").write_text(f"data:\n  mirrors: ['{bad}']\n  retries: 0\n")
    done = snakemake(work, "--cores", "1", "--configfile", "m.yaml", env={"BATCHLAB_MNIST_MIRROR": ""})
    assert done.returncode != 0
    log = (work / "logs/fetch.log").read_text()
    assert "could not fetch MNIST file t10k-labels-idx1-ubyte" in log
    assert "corrupt gzip data" in log and str(bad) in log
    assert "Error in rule fetch" in done.stderr and "logs/fetch.log" in done.stderr
    left = [p for p in (work / "data").rglob("*") if p.is_file() and p.name != ".gitkeep"]
    assert left == []
    assert not (work / "results").exists()
