"""The real snakemake command line on a tiny grid with real MNIST from the local mirror."""

import json
import re

import pandas as pd
import pytest

from conftest import REPO, VENV_BIN, copy_workflow, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]
CELLS = [(128, "0.1"), (128, "50"), (1000, "0.1"), (1000, "50")]


def test_every_stage_writes_its_outputs(tiny_study):
    for raw in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "checksums.json"):
        assert (tiny_study / "data/mnist/raw" / raw).stat().st_size > 0
    assert (tiny_study / "data/mnist/mnist.pt").exists()
    assert not list((tiny_study / "data").rglob("*.tmp"))
    for b, lr in CELLS:
        cell = tiny_study / f"results/runs/bs{b}_lr{lr}_s0"
        for name in ("losses.parquet", "epochs.parquet", "metrics.json"):
            assert (cell / name).exists(), cell / name
        assert (tiny_study / f"results/benchmarks/train/bs{b}_lr{lr}_s0.tsv").exists()
        log = (tiny_study / f"logs/train/bs{b}_lr{lr}_s0.log").read_text()
        assert f"cell bs{b}_lr{lr}_s0" in log
    assert not (tiny_study / "results/checkpoints").exists() or not list(
        (tiny_study / "results/checkpoints").iterdir()
    )


def test_cells_log_every_iteration_and_diverged_cells_say_when(tiny_study):
    for b, lr in CELLS:
        cell = tiny_study / f"results/runs/bs{b}_lr{lr}_s0"
        metrics = json.loads((cell / "metrics.json").read_text())
        losses = pd.read_parquet(cell / "losses.parquet")
        epochs = pd.read_parquet(cell / "epochs.parquet")
        ipe = -(-60000 // b)
        assert metrics["iterations_per_epoch"] == ipe
        assert list(losses.columns[:3]) == ["step", "epoch", "loss"]
        assert losses["step"].tolist() == list(range(1, len(losses) + 1))
        if lr == "50":
            assert metrics["status"] == "diverged"
            assert metrics["stopped_step"] == len(losses) >= 1
            assert "iteration" in metrics["stop_reason"]
        else:
            assert metrics["status"] == "ok"
            assert len(losses) == 2 * ipe and set(losses["epoch"]) == {1, 2}
            assert len(epochs) == 2 and epochs["test_acc"].iloc[-1] > 0.85
            assert (epochs["iterations"] == ipe).all() and (epochs["samples_per_s"] > 0).all()
            log = (tiny_study / f"logs/train/bs{b}_lr{lr}_s0.log").read_text()
            assert re.search(
                r"epoch 2/2: train loss [\d.]+ acc [\d.]+ \| test loss [\d.]+ acc [\d.]+ \| .* samples/s", log
            )


def test_summary_tables_and_metrics(tiny_study):
    cells = pd.read_parquet(tiny_study / "results/summary/cells.parquet")
    assert len(cells) == 4
    assert sorted(zip(cells["batch_size"], cells["lr"], strict=True)) == [
        (128, 0.1),
        (128, 50.0),
        (1000, 0.1),
        (1000, 50.0),
    ]
    ok = cells[cells["status"] == "ok"].set_index("batch_size")
    assert ok.loc[128, "oscillation"] > ok.loc[1000, "oscillation"] > 0
    assert ok.loc[128, "iterations_per_epoch"] == 469
    metrics = json.loads((tiny_study / "results/summary/metrics.json").read_text())
    assert metrics["cells"] == 4 and metrics["diverged_cells"] == 2
    assert metrics["bs128"]["best_lr"] == 0.1
    assert (tiny_study / "results/summary/cells.csv").read_text().startswith("cell,batch_size,lr,seed,status")


def test_report_answers_the_questions(tiny_study):
    page = (tiny_study / "results/report/index.html").read_text()
    for section in ("findings", "loss-curves", "oscillation", "speed", "lr-grid", "convergence", "version"):
        assert f'<section id="{section}">' in page
    assert "An epoch is ceil(N/b) iterations: 469 at batch 128 and 60 at batch 1000." in page
    assert "2 cells diverged: batch 128 at lr 50 (seed 0) at iteration" in page
    assert "Grid edge: at batch 128 the best lr is the lowest lr of the grid (0.1)" in page
    stamp = json.loads(re.search(r'id="version-stamp-json">(.*?)</script>', page).group(1))
    assert stamp["devices"] == ["cpu"] and len(stamp["params_hash"]) == 12
    assert stamp["data_md5"]["train-images-idx3-ubyte"] == "6bbc9ace898e44ae57da46a324031adb"
    assert stamp["packages"]["torch"] == "2.14.1"
    assert not re.search(r"<script[^>]+src=", page)


def test_second_run_has_nothing_to_do(tiny_study):
    done = snakemake(tiny_study, "-n", "--cores", "1", "--configfile", "tiny.yaml")
    assert done.returncode == 0, done.stderr
    assert "Nothing to be done" in done.stdout + done.stderr


def test_lint_is_clean(tmp_path):
    work = copy_workflow(tmp_path / "w")
    done = snakemake(work, "--lint")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Congratulations, your workflow is in a good condition!" in done.stdout + done.stderr


def test_snakefmt_and_ruff_are_clean():
    import subprocess

    fmt = subprocess.run(
        [str(VENV_BIN / "snakefmt"), "--check", "Snakefile", "workflow/rules"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    ruff = subprocess.run(
        [str(VENV_BIN / "ruff"), "check", "workflow", "tests", "benchmarks"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr


def test_numbers_as_strings_agree_across_tools(tmp_path):
    """1e-3 in YAML (a string to PyYAML) and --config overrides (strings) are numbers."""
    work = copy_workflow(tmp_path / "w")
    (work / "s.yaml").write_text("grid:\n  batch_sizes: [64]\n  learning_rates: [1e-3]\n  seeds: [0]\n")
    done = snakemake(
        work, "-n", "--cores", "1", "--configfile", "s.yaml", "--config", "train={'epochs': '2'}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "results/runs/bs64_lr0.001_s0/metrics.json" in done.stdout


def test_snakemake_report_embeds_the_study_report(tiny_study):
    done = snakemake(tiny_study, "--cores", "1", "--configfile", "tiny.yaml", "--report", "sm-report.zip")
    assert done.returncode == 0, done.stderr[-3000:]
    import zipfile

    archive = zipfile.ZipFile(tiny_study / "sm-report.zip")
    ours = (tiny_study / "results/report/index.html").read_bytes()
    embedded = [n for n in archive.namelist() if n.endswith("/index.html") and "/data/raw/" in n]
    assert [archive.read(n) == ours for n in embedded] == [True]
    assert any(n.endswith("/cells.csv") for n in archive.namelist())
