"""The real snakemake command line on a tiny grid with real MNIST from the local mirror."""

import html
import json
import re

import numpy as np
import pandas as pd
import pytest

from batchlab import summary
from conftest import GRID_ONLY, REPO, VENV_BIN, copy_workflow, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]
CELLS = [(128, "0.1"), (128, "50"), (1000, "0.1"), (1000, "50")]


def test_every_stage_writes_its_outputs(tiny_study):
    for raw in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "checksums.json"):
        assert (tiny_study / "data/mnist/raw" / raw).stat().st_size > 0
    assert (tiny_study / "data/mnist/mnist.pt").exists()
    assert not list((tiny_study / "data").rglob("*.tmp"))
    for b, lr in CELLS:
        cell = tiny_study / f"results/runs/bs{b}_lr{lr}"  # one folder per cell, every seed in it
        for name in ("losses.parquet", "epochs.parquet", "probes.parquet", "metrics.json"):
            assert (cell / name).exists(), cell / name
        assert (tiny_study / f"results/benchmarks/train/bs{b}_lr{lr}.tsv").exists()
        log = (tiny_study / f"logs/train/bs{b}_lr{lr}.log").read_text()
        assert f"cell bs{b}_lr{lr}: seeds [0, 1] on cpu" in log
        # every job says what its start-up cost
        assert re.search(
            r"start-up: [\d.]+ s from process start to the job's code \(Python, Snakemake's preamble,"
            r" imports\), data load [\d.]+ s",
            log,
        ), log
        assert re.search(r"first step [\d.]+ s", log)
    assert not list((tiny_study / "results/checkpoints").glob("*.pt"))
    # one job per cell, not per seed: 4 sgd grid cells, 4 adam ones, 4 remedies (one LARS),
    # 3 Solution 2 and the equal-updates run
    assert len(list((tiny_study / "results/runs").iterdir())) == 16
    adam = json.loads((tiny_study / "results/runs/bs128_lr0.001_adam/metrics.json").read_text())
    assert (adam["optimizer"], adam["beta2"]) == ("adam", 0.999) and "eager autograd + Adam" in adam["seeds"][0]["step_implementation"]
    # the equal-updates run: after the grid, the checkpoint picked batch 1000's lr on validation
    # (lr 50 diverges) and batch 1000 trained for 16 epochs, 800 updates against batch 128's 782
    assert json.loads((tiny_study / "results/summary/equal_updates.json").read_text()) == {"chosen": {"1000": 0.1}}
    long = json.loads((tiny_study / "results/runs/bs1000_lr0.1_e16/metrics.json").read_text())
    assert long["epochs"] == 16 and {s["steps"] for s in long["seeds"]} == {800}


def test_cells_log_every_iteration_of_every_seed_and_diverged_seeds_say_when(tiny_study):
    for b, lr in CELLS:
        cell = tiny_study / f"results/runs/bs{b}_lr{lr}"
        metrics = json.loads((cell / "metrics.json").read_text())
        losses = pd.read_parquet(cell / "losses.parquet")
        epochs = pd.read_parquet(cell / "epochs.parquet")
        ipe = -(-50000 // b)  # 60,000 minus the 10,000 held out for validation
        assert metrics["iterations_per_epoch"] == ipe
        assert list(losses.columns) == ["seed", "step", "epoch", "loss"]
        assert [s["seed"] for s in metrics["seeds"]] == [0, 1]
        assert metrics["seeds"][0]["step_implementation"] == "fused plain SGD, 2 seed(s) stacked"
        for entry in metrics["seeds"]:
            mine = losses[losses["seed"] == entry["seed"]]
            assert mine["step"].tolist() == list(range(1, len(mine) + 1))
            if lr == "50":
                assert entry["status"] == "diverged"
                assert entry["stopped_step"] == len(mine) >= 1
                assert "iteration" in entry["stop_reason"]
            else:
                assert entry["status"] == "ok"
                assert len(mine) == 2 * ipe and set(mine["epoch"]) == {1, 2}
                own = epochs[epochs["seed"] == entry["seed"]]
                assert len(own) == 2 and own["test_acc"].iloc[-1] > 0.85
                assert (own["iterations"] == ipe).all() and (own["samples_per_s"] > 0).all()
        if lr != "50":
            log = (tiny_study / f"logs/train/bs{b}_lr{lr}.log").read_text()
            assert re.search(
                r"epoch 2/2 seed 1: train loss [\d.]+ acc [\d.]+ \| validation loss [\d.]+ acc [\d.]+ \| test acc [\d.]+",
                log,
            )
            assert re.search(r"epoch 2/2: [\d.]+ s for 2 seed\(s\), \d+ samples/s", log)
            # a progress line at each window end: epoch, step, samples/s, recent loss, the cell's ETA
            assert re.search(
                rf"epoch 1/2 step {ipe}/{ipe} \| 2/2 seeds training \| \d+ samples/s \| recent loss [\d.]+ \| cell ETA \d+ s",
                log,
            ), log
        else:
            log = (tiny_study / f"logs/train/bs{b}_lr{lr}.log").read_text()
            assert "seed 0: DIVERGED" in log and "every seed has stopped; ending this cell" in log


def test_a_seed_trained_alone_follows_the_same_seed_in_the_ensemble(tiny_study, tmp_path, mnist_mirror):
    """One seed of a cell in a job of its own (seeds: [1]) against seed 1 of the tiny study's
    two-seed job: the same data order and start, so the same losses to float tolerance."""
    work = copy_workflow(tmp_path / "alone")
    (work / "tiny.yaml").write_text((tiny_study / "tiny.yaml").read_text())
    cell = "results/runs/bs1000_lr0.1"
    env = {"BATCHLAB_MNIST_MIRROR": str(mnist_mirror)}
    done = snakemake(
        work, f"{cell}/metrics.json", "--cores", "1", "--configfile", "tiny.yaml", "--config", "grid={'seeds': [1]}", env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    alone = pd.read_parquet(work / cell / "losses.parquet")
    together = pd.read_parquet(tiny_study / cell / "losses.parquet")
    together = together[together["seed"] == 1].reset_index(drop=True)
    assert len(alone) == len(together) == 100 and set(alone["seed"]) == {1}  # 2 epochs of 50,000 / 1000
    np.testing.assert_allclose(alone["loss"], together["loss"], rtol=1e-4, atol=1e-5)
    metrics = json.loads((work / cell / "metrics.json").read_text())
    assert metrics["seeds"][0]["step_implementation"] == "fused plain SGD, 1 seed(s) stacked"


def test_summary_tables_and_metrics(tiny_study):
    # aggregate writes every file of the summary registry, and nothing else beside the checkpoint's
    written = {p.relative_to(tiny_study).as_posix() for p in (tiny_study / summary.FOLDER).iterdir()}
    assert written - {f"{summary.FOLDER}/equal_updates.json", f"{summary.FOLDER}/.gitignore"} == {f.path for f in summary.FILES}
    cells = pd.read_parquet(tiny_study / "results/summary/cells.parquet")
    # grid 2 x 2 x 2 seeds; remedies: batch 4000 at lr 0.1 and 0.1 * 4000/128, with and without
    # warm-up; Solution 2: k = 4 at lr 0.1 and plain training at 0.4 (plain at 0.1 is in the grid);
    # batch 1000's equal-updates run; Adam's grid 2 x 2 x 2 seeds; LARS at batch 4000
    assert len(cells) == 8 + 8 + 4 + 2 + 8 + 2
    assert set(cells.loc[cells["group"] == "equal_updates", "cell"]) == {"bs1000_lr0.1_e16"}
    grid = cells[cells["in_grid"]]
    assert sorted(set(zip(grid["batch_size"], grid["lr"], grid["seed"], strict=True))) == [
        (b, lr, s) for b in (128, 1000) for lr in (0.1, 50.0) for s in (0, 1)
    ]
    assert sorted(cells.loc[~cells["in_grid"], "cell"]) == sorted(
        [f"bs4000_lr{lr}{w}" for lr in ("0.1", "3.125") for _ in (0, 1) for w in ("", "_w1")]
        + ["bs1000_lr0.1_k4"] * 2
        + ["bs1000_lr0.4"] * 2
        + ["bs1000_lr0.1_e16"] * 2
        + [f"bs{b}_lr{lr}_adam" for b in (128, 1000) for lr in ("0.001", "0.004") for _ in (0, 1)]
        + ["bs4000_lr8_lars"] * 2
    )
    adam = cells[cells["optimizer"] == "adam"]
    assert set(adam["group"]) == {"optimizers"} and set(adam["recipe"]) == {"_adam"}
    ok = grid[grid["status"] == "ok"].groupby("batch_size")
    assert ok["oscillation"].min().loc[128] > ok["oscillation"].max().loc[1000] > 0
    assert ok["iterations_per_epoch"].first().loc[128] == 391
    assert (grid.loc[grid["lr"] == 50, "status"] == "diverged").all()
    finished = cells[cells["status"] == "ok"]
    # the power iteration returns the eigenvalue largest in magnitude, which may be negative
    assert np.isfinite(finished["final_sharpness"]).all() and finished["b_simple_end"].notna().any()
    metrics = json.loads((tiny_study / "results/summary/metrics.json").read_text())
    assert metrics["cells"] == 16 and metrics["seed_runs"] == 32 and metrics["diverged_runs"] >= 4
    # every row knows its role in the study's design
    roles = cells.drop_duplicates("cell").set_index("cell")
    assert roles.loc["bs1000_lr0.1_k4", ["group", "variant"]].tolist() == ["solution2", "momentum 0: Solution 2, k = 4, lr 0.1"]
    assert roles.loc["bs4000_lr3.125_w1", ["group", "variant"]].tolist() == ["remedies", "linear scaling + 1-epoch warm-up"]
    assert roles.loc["bs1000_lr0.1", "group"] == "grid" and roles.loc["bs1000_lr0.1", "in_grid"]
    assert roles.loc["bs1000_lr0.1_e16", "variant"] == "batch 1000 for 16 epochs (800 updates; batch 128 makes 782)"
    assert metrics["bs128"]["best_lr"] == 0.1
    assert (
        (tiny_study / "results/summary/cells.csv").read_text().startswith("cell,batch_size,lr,seed,recipe,")
    )


def test_report_answers_the_questions(tiny_study):
    page = (tiny_study / "results/report/index.html").read_text()
    for section in ("findings", "loss-curves", "oscillation", "speed", "lr-grid", "convergence", "version"):
        assert f'<section id="{section}">' in page
    assert "seed; shaded: the 95% interval over seeds" in page
    assert "An epoch is ceil(N/b) iterations: 391 at batch 128 and 50 at batch 1000." in page
    assert "4 seed runs diverged: batch 128 at lr 50 (seed 0) at iteration" in page
    assert "Window: at batch 128 only one lr trains stably (0.1), so no optimum can be fitted" in page
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
    assert "results/runs/bs64_lr0.001/metrics.json" in done.stdout


def test_snakemake_report_embeds_the_study_report(tiny_study):
    done = snakemake(tiny_study, "--cores", "1", "--configfile", "tiny.yaml", "--report", "sm-report.zip")
    assert done.returncode == 0, done.stderr[-3000:]
    import zipfile

    archive = zipfile.ZipFile(tiny_study / "sm-report.zip")
    ours = (tiny_study / "results/report/index.html").read_bytes()
    embedded = [n for n in archive.namelist() if n.endswith("/index.html") and "/data/raw/" in n]
    assert [archive.read(n) == ours for n in embedded] == [True]
    assert any(n.endswith("/cells.csv") for n in archive.namelist())


SECTIONS_BEYOND = {
    "verdicts": [],
    "lr-response": ["lr-response-curves", "stability-map"],
    "method": [],
    "steps-to-target": ["steps-vs-batch-size", "samples-vs-batch-size"],
    "noise-scale": ["noise-scale-vs-loss"],
    "remedies": ["league-bs4000", "league-curves-bs4000"],
    "solution2": ["solution2-m0"],
    "optimizers": ["optimizers-best-lr"],
    "sharpness": ["sharpness-vs-batch-size", "gap-vs-batch-size"],
}


def section_text(page: str, section: str) -> str:
    body = re.search(rf'<section id="{section}">(.*?)</section>', page, re.S).group(1)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def test_report_goes_beyond_the_first_observations(tiny_study):
    """Each section of issue 7 is there, with its charts and numbers taken from the data."""
    page = (tiny_study / "results/report/index.html").read_text()
    specs = json.loads(re.search(r"const SPECS = (.*?);\n", page).group(1).replace("<\\/", "</"))
    for section, charts in SECTIONS_BEYOND.items():
        assert f'<section id="{section}">' in page, section
        for chart in charts:
            assert chart in specs, chart
    analysis = json.loads((tiny_study / "results/summary/analysis.json").read_text())
    targets = pd.read_parquet(tiny_study / "results/summary/targets.parquet")
    cells = pd.read_parquet(tiny_study / "results/summary/cells.parquet")

    # verdicts: one row per claim the tiny study can read (its lr rule needs two batch sizes with
    # an optimum inside their windows, and lr 50 fails), each verdict one of the five words, and
    # the family Holm's correction ran over in the method section
    verdicts = re.findall(
        r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>", page.split('id="verdicts"')[1].split("</table>")[0]
    )
    keys = {v["key"] for v in analysis["verdicts"]}
    assert len(verdicts) == len(keys) and {"oscillation", "local_minima", "solution2", "optimizer_rule:adam"} <= keys
    assert {v for _, v in verdicts} <= {"supported", "not supported", "depends on the lr", "mixed", "inconclusive"}
    assert {r["key"] for r in analysis["family"]} <= keys and len(analysis["family"]) % 2 == 0

    # selection reads the validation hold-out; the test set is reported beside it
    assert set(cells["selection_set"]) == {"validation"}
    assert "uses a validation set of 10,000 training images held out" in section_text(page, "lr-grid")

    # steps to 90% validation accuracy: batch 128 gets there, with its lr and steps in the table
    at128 = targets.set_index("batch_size").loc[128]
    assert at128["reached"] and at128["lr"] == 0.1
    seeds = cells[(cells["batch_size"] == 128) & (cells["lr"] == 0.1) & cells["in_grid"]]
    assert at128["steps"] == pytest.approx(seeds["steps_to_acc"].mean())
    assert f"batch 128 in {round(at128['steps']):,} steps" in section_text(page, "steps-to-target")

    # Solution 2 with plain SGD follows plain training at 4 x lr
    plain_sgd = [e for e in analysis["solution2_equivalence"] if e["momentum"] == 0.0]
    assert len(plain_sgd) == 2 and all(e["first_update_rel"] < 1e-4 for e in plain_sgd)
    assert all(e["agree_steps"] >= 2 for e in plain_sgd)
    assert "the same step, to float rounding" in section_text(page, "solution2")

    # the noise scale and sharpness sections quote measured values
    noise = section_text(page, "noise-scale")
    assert "A public replication measured B_simple of about 870-900" in noise
    assert "of a cell's training time" in noise
    assert "Sharpness (top Hessian eigenvalue)" in section_text(page, "sharpness")
    # the league at batch 4000 (not in the grid: no tuned SGD there), against batch 128's optimum
    remedies = section_text(page, "remedies")
    assert "The target is batch 128's accuracy at its own best lr (0.1)" in remedies
    assert "linear scaling + 1-epoch warm-up" in remedies and "LARS" in remedies
    league = analysis["summaries"]["remedies"]
    assert league["reference"]["batch_size"] == 128 and [t["batch_size"] for t in league["batch_sizes"]] == [4000]
    assert {e["arm"] for e in league["batch_sizes"][0]["arms"]} == {
        "none scaling", "none scaling + 1-epoch warm-up", "linear scaling", "linear scaling + 1-epoch warm-up", "LARS"
    }

    # the optimizer axis: each optimizer's rule beside the literature's, and a verdict on Adam's
    rules = {r["optimizer"]: r for r in analysis["optimizers"]["rules"]}
    assert set(rules) == {"sgd", "adam"} and rules["adam"]["expected_exponent"] == 0.5
    assert [int(o["batch_size"]) for o in rules["adam"]["optima"]] == [128, 1000]
    assert any(v["key"] == "optimizer_rule:adam" for v in analysis["verdicts"])
    assert "square-root scaling, lr ∝ √b (Malladi et al. 2022)" in section_text(page, "optimizers")


def test_a_failed_cell_does_not_stop_the_sweep_and_is_named_at_the_end(tmp_path, mnist_mirror):
    """A cell asked for by path with a learning rate of 0 fails in its job; the other cell
    still trains, and the run ends naming the failed cell, its reason and its log."""
    work = copy_workflow(tmp_path / "w")
    (work / "g.yaml").write_text(GRID_ONLY + "train:\n  epochs: 1\n")
    env = {"BATCHLAB_MNIST_MIRROR": str(mnist_mirror)}
    targets = ["results/runs/bs1000_lr0/metrics.json", "results/runs/bs2000_lr0.1/metrics.json"]
    done = snakemake(work, *targets, "--cores", "1", "--configfile", "g.yaml", env=env)
    assert done.returncode != 0
    assert (work / targets[1]).exists() and not (work / "results/runs/bs1000_lr0").exists()
    tail = done.stderr[done.stderr.rindex("Exiting because a job execution failed") :]
    assert "batchlab: 1 job(s) failed; every other job that could run has finished:" in tail
    assert (
        "cell bs1000_lr0: batchlab error: learning rate must be a positive number, got 0"
        " (log: logs/train/bs1000_lr0.log)" in tail
    )
