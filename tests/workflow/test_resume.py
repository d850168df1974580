"""Interrupted studies lose nothing: kill -9 of the whole process tree, then resume."""

import json
import os
import signal

import pandas as pd
import pytest

from conftest import RESILIENCE_GRID as GRID
from conftest import copy_workflow, snakemake, start_snakemake, wait_for

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

SLOW = "results/runs/bs16_lr0.05_s0"
QUICK = "results/runs/bs1000_lr0.05_s0"


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
    run = start_snakemake(work, "--cores", "2", "--configfile", "grid.yaml", env=env)
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
