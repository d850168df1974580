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
    (work / "grid.yaml").write_text(GRID.replace("epochs: 3", "epochs: 1"))
    env = {"BATCHLAB_MNIST_MIRROR": str(mnist_mirror)}
    first = start_snakemake(work, "--cores", "1", "--configfile", "grid.yaml", env=env)
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
