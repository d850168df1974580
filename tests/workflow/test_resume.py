"""Interrupted studies lose nothing: kill -9 of the whole process tree, then resume."""

import json
import os
import signal

import pandas as pd
import pytest

from conftest import RESILIENCE_GRID as GRID
from conftest import copy_workflow, snakemake, start_snakemake, wait_for

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

SLOW = "results/runs/bs16_lr0.05"
QUICK = "results/runs/bs1000_lr0.05"


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
    checkpoint = work / "results/checkpoints/bs16_lr0.05.pt"
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
    assert [s["resumed_from_epoch"] >= 1 for s in metrics["seeds"]] == [True, True]  # the whole ensemble
    resumed = pd.read_parquet(work / SLOW / "losses.parquet")
    expected = pd.read_parquet(reference / SLOW / "losses.parquet")
    pd.testing.assert_frame_equal(resumed, expected)
    assert not checkpoint.exists()  # finished: the outputs are the record


def test_more_seeds_train_only_the_new_ones_and_keep_the_old_bit_for_bit(tmp_path, mnist_mirror, reference):
    """grid.seeds grows from [0, 1] to [0, 1, 2]: the cell's job reruns (its seed list changed),
    takes seeds 0 and 1 from the store and trains seed 2 alone."""
    work = copy_workflow(tmp_path / "w")
    (work / "grid.yaml").write_text(GRID)
    env = {"BATCHLAB_MNIST_MIRROR": str(mnist_mirror)}
    first = snakemake(work, QUICK + "/metrics.json", "--cores", "1", "--configfile", "grid.yaml", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    before = {name: pd.read_parquet(work / QUICK / name) for name in ("losses.parquet", "epochs.parquet", "probes.parquet")}
    (work / "grid.yaml").write_text(GRID.replace("seeds: [0, 1]", "seeds: [0, 1, 2]"))
    again = snakemake(work, QUICK + "/metrics.json", "--cores", "1", "--configfile", "grid.yaml", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    log = (work / "logs/train/bs1000_lr0.05.log").read_text()
    assert "seeds [0, 1] are stored from an earlier run of this cell: not trained again" in log
    assert "epoch 1/3 step 50/50 | 1/1 seeds training" in log  # seed 2 trained alone
    for name, old in before.items():
        new = pd.read_parquet(work / QUICK / name)
        assert sorted(new["seed"].unique()) == [0, 1, 2]
        # the stored seeds come back as they were, timings included
        pd.testing.assert_frame_equal(new[new["seed"] < 2].reset_index(drop=True), old)
    metrics = json.loads((work / QUICK / "metrics.json").read_text())
    assert [s["ensemble_size"] for s in metrics["seeds"]] == [2, 2, 1]
