"""`batchlab status` on study folders built by hand: each state, the ETA, and bad input as one
clear line (the real run is tests/workflow/test_follow.py)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchlab.follow.status import last_progress, render, study_status

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow/scripts"
LINE = "epoch 2/3 step 41000/50000 | 5/5 seeds training | 21507 samples/s | recent loss 0.0841 | cell ETA 29 s"


def manifest(root, cells, later=(), cores=None, to_run=None, started=0.0, seeds=(0, 1)):
    (root / "logs").mkdir(parents=True, exist_ok=True)
    record = {"batchlab": "0", "started": "2026-12-01 10:00:00 UTC", "cores": cores, "seeds": list(seeds), "model": "mlp",
              "window_seconds": 10.0, "cells": cells, "later": list(later), "config": {"grid": {}}, "to_run": to_run,
              "started_unix": started}  # fmt: skip
    (root / "logs/manifest.json").write_text(json.dumps(record))


def entry(name, b, groups=("grid",), epochs=3):
    return {"cell": name, "groups": list(groups), "batch_size": b, "lr": 0.1, "epochs": epochs, "variant": ""}


def finished(root, name, seconds, statuses=("ok", "ok"), accs=(0.9, 0.9)):
    run = root / "results/runs" / name
    run.mkdir(parents=True)
    seeds = [{"seed": i, "status": s, "final_val_acc": a, "train_and_eval_seconds": seconds} for i, (s, a) in enumerate(zip(statuses, accs, strict=True))]
    (run / "metrics.json").write_text(json.dumps({"seeds": seeds}))


def log(root, name, text, age=0.0):
    path = root / "logs/train" / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    t = time.time() - age
    os.utime(path, (t, t))


def test_the_progress_line_is_read_back():
    assert last_progress("start-up\n" + LINE.replace("41000", "1") + "\n" + LINE + "\n") == {
        "epoch": 2, "epochs": 3, "step": 41000, "steps": 50000, "training": 5, "seeds": 5, "rate": 21507.0,
        "loss": "0.0841", "eta": 29.0,
    }  # fmt: skip
    assert last_progress("cell bs1_lr0.1: seeds [0] on cpu\nepoch 1: 2.0 s\n") is None  # an older format


def test_every_state_and_an_eta_from_the_finished_cells(tmp_path):
    cells = [entry("bs64_lr0.1", 64), entry("bs64_lr0.2", 64), entry("bs1_lr0.1", 1), entry("bs4_lr0.1", 4, ("grid", "remedies")),
             entry("bs16_lr0.1", 16), entry("bs256_lr0.1", 256)]  # fmt: skip
    manifest(tmp_path, cells)
    finished(tmp_path, "bs64_lr0.1", 30.0, ("ok", "diverged"), (0.9, 0.1))
    finished(tmp_path, "bs64_lr0.2", 60.0, ("ok", "ok"), (0.9, 0.3))  # one failed to learn
    log(tmp_path, "bs1_lr0.1", "cell bs1_lr0.1\n" + LINE + "\n")
    log(tmp_path, "bs4_lr0.1", "cell bs4_lr0.1\n" + LINE + "\n", age=31)  # silent for over 3 windows
    log(tmp_path, "bs16_lr0.1", "batchlab error: learning rate must be a positive number\n", age=100)
    status = study_status(tmp_path)
    states = {c.cell: c.state for c in status["cells"]}
    assert states == {"bs64_lr0.1": "done", "bs64_lr0.2": "done", "bs1_lr0.1": "running", "bs4_lr0.1": "interrupted",
                      "bs16_lr0.1": "failed", "bs256_lr0.1": "waiting"}  # fmt: skip
    # left: bs1 running (its own ETA, 29 s) and bs256 waiting (batch 64's median 15 s per
    # epoch x 3); bs4 interrupted, from batch 64 too; one at a time (one running)
    assert status["eta"]["seconds"] == pytest.approx(29 + 45 + 45 / 1)
    assert "batch 4, 256 from the nearest measured batch size" in status["eta"]["basis"]
    text = "\n".join(render(status))
    assert "2/6 cells done · 1 running · 1 waiting · 1 interrupted · 1 failed · ETA 1 min 59 s" in text
    assert "seeds: 1 diverged, 1 failed to learn" in text and "remedies" in text
    assert "running      bs1_lr0.1" in text and "epoch 2/3 step 41,000/50,000  21,507 samples/s" in text
    assert "interrupted  bs4_lr0.1             silent for 31 s" in text
    assert "failed       bs16_lr0.1            batchlab error: learning rate must be a positive number" in text


def test_no_finished_cell_gives_no_eta_and_a_complete_study_says_so(tmp_path):
    manifest(tmp_path, [entry("bs64_lr0.1", 64)])
    status = study_status(tmp_path)
    assert status["eta"] == {"seconds": None, "basis": "too little to go on: no cell has finished yet"}
    assert "ETA unknown (too little to go on" in "\n".join(render(status))
    finished(tmp_path, "bs64_lr0.1", 30.0)
    assert render(study_status(tmp_path))[1] == "study complete: 1/1 cells done"


def test_the_equal_updates_run_is_named_once_the_checkpoint_chose_its_lr(tmp_path):
    later = [{"group": "equal_updates", "batch_size": 1024, "epochs": 48, "suffix": "_e48"}]
    manifest(tmp_path, [entry("bs1024_lr0.64", 1024)], later)
    assert [c.cell for c in study_status(tmp_path)["cells"]] == ["bs1024_lr0.64", "bs1024_lr?_e48"]
    (tmp_path / "results/summary").mkdir(parents=True)
    (tmp_path / "results/summary/equal_updates.json").write_text('{"chosen": {"1024": 5e-05}}')
    assert study_status(tmp_path)["cells"][1].cell == "bs1024_lr0.00005_e48"  # spelled as cells are
    # a run that reruns the checkpoint: the choice and the old long run are not this run's
    finished(tmp_path, "bs1024_lr0.00005_e48", 100.0)
    manifest(tmp_path, [entry("bs1024_lr0.64", 1024)], later, to_run=[], started=time.time() + 5)
    record = json.loads((tmp_path / "logs/manifest.json").read_text())
    (tmp_path / "logs/manifest.json").write_text(json.dumps({**record, "later_rerun": True}))
    assert [c.cell for c in study_status(tmp_path)["cells"]] == ["bs1024_lr0.64", "bs1024_lr?_e48"]


def cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(SCRIPTS)}
    return subprocess.run([sys.executable, "-m", "batchlab", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_bad_input_is_one_clear_line(tmp_path):
    done = cli("status", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"batchlab: no study under {tmp_path}: logs/manifest.json is missing")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs/manifest.json").write_text("{not json")
    done = cli("status", cwd=tmp_path)
    assert done.returncode == 1 and "is not a batchlab manifest; start the study again" in done.stderr
    manifest(tmp_path, [entry("bs64_lr0.1", 64)])
    run = tmp_path / "results/runs/bs64_lr0.1"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text('{"seeds": [')  # half-written
    done = cli("status", cwd=tmp_path)
    assert done.returncode == 0 and "metrics.json cannot be read; delete its folder to train the cell again" in done.stdout
    done = cli("peek", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.startswith("batchlab: no cell has finished yet")


def test_a_cell_the_run_trains_again_is_not_done_until_it_is(tmp_path):
    """A rerun (new seeds, new code) retrains cells whose old outputs are still on disk: they
    wait until the new ones are written; a cell the run leaves alone stays done."""
    finished(tmp_path, "bs64_lr0.1", 30.0)
    finished(tmp_path, "bs64_lr0.2", 30.0)
    log(tmp_path, "bs64_lr0.1", "cell bs64_lr0.1\n" + LINE + "\n", age=500)  # the earlier run's log
    cells = [entry("bs64_lr0.1", 64), entry("bs64_lr0.2", 64)]
    manifest(tmp_path, cells, to_run=["bs64_lr0.1"], started=time.time())
    assert [c.state for c in study_status(tmp_path)["cells"]] == ["waiting", "done"]
    # without Snakemake's plan: a cell holding other seeds than the run's is not done either
    manifest(tmp_path, cells, started=time.time(), seeds=(0, 1, 2))
    assert [c.state for c in study_status(tmp_path)["cells"]] == ["waiting", "waiting"]


def test_watch_prints_plain_lines_off_a_terminal_and_stops_when_complete(tmp_path):
    manifest(tmp_path, [entry("bs64_lr0.1", 64)])
    finished(tmp_path, "bs64_lr0.1", 30.0)
    done = cli("status", "--watch", "0.1", cwd=tmp_path)
    assert done.returncode == 0 and "\x1b[" not in done.stdout
    assert done.stdout.splitlines()[1] == "study complete: 1/1 cells done"


def test_peek_waits_for_a_grid_cell(tmp_path):
    manifest(tmp_path, [entry("bs4096_lr0.1", 4096, ("remedies",)), entry("bs64_lr0.1", 64)])
    finished(tmp_path, "bs4096_lr0.1", 3.0)
    done = cli("peek", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.startswith("batchlab: no cell of the grid has finished yet")


def test_lr_windows_come_back_keyed_by_batch_size(tmp_path):
    """JSON writes a window's batch sizes as strings; the grid's and each optimizer's come back
    as integers, so the study's design can be rebuilt from the manifest."""
    from batchlab.follow.manifest import read_manifest

    manifest(tmp_path, [])
    path = tmp_path / "logs/manifest.json"
    record = json.loads(path.read_text())
    record["config"] = {"grid": {"learning_rates": {"16": [0.1]}}, "optimizers": {"adam": {"learning_rates": {"16": [0.001]}}, "sgd": {}}}
    path.write_text(json.dumps(record))
    config = read_manifest(tmp_path)["config"]
    assert config["grid"]["learning_rates"] == {16: [0.1]}
    assert config["optimizers"]["adam"]["learning_rates"] == {16: [0.001]} and config["optimizers"]["sgd"] == {}
