"""Two snakemake runs on one folder: the second is refused, the first finishes."""

import os
import signal

import pandas as pd
import pytest

from conftest import RESILIENCE_GRID as GRID
from conftest import copy_workflow, snakemake, start_snakemake, wait_for

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


def test_second_concurrent_run_is_refused_and_first_finishes(tmp_path, mnist_mirror):
    work = copy_workflow(tmp_path / "w")
    (work / "grid.yaml").write_text(GRID.replace("epochs: 3", "epochs: 6"))  # a long slow cell
    env = {"BATCHLAB_MNIST_MIRROR": str(mnist_mirror)}
    first = start_snakemake(work, "--cores", "1", "--configfile", "grid.yaml", env=env)
    try:
        # Start the second run while the first is inside the slow training job (one core: one job
        # at a time). Just after a job finishes, its outputs still carry Snakemake's "incomplete"
        # marker for a moment, and a second run started then stops with IncompleteFilesException
        # before it ever asks for the lock.
        slow_log = work / "logs/train/bs16_lr0.05.log"
        wait_for(
            lambda: slow_log.exists() and "epoch 1/6" in slow_log.read_text(),
            300,
            "the first run to be training the slow cell",
        )
        second = snakemake(work, "--cores", "1", "--configfile", "grid.yaml", env=env)
        out, _ = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert second.returncode != 0
    assert "LockException" in second.stderr and "cannot be locked" in second.stderr
    assert first.returncode == 0, out[-3000:]
    cells = pd.read_parquet(work / "results/summary/cells.parquet")
    assert len(cells) == 4 and cells["cell"].nunique() == 2 and set(cells["status"]) == {"ok"}
