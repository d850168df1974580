"""Following a real (tiny) study: `batchlab status` while it runs, after it was killed and once
it is complete; `batchlab peek` writes a partial report that headless Chromium draws."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import GRID_ONLY, REPO, copy_workflow, snakemake, start_snakemake, wait_for

pytestmark = [pytest.mark.workflow, pytest.mark.browser, pytest.mark.slow]

CONFIG = (
    """\
grid:
  batch_sizes: [1, 1000]
  learning_rates: [0.01]
  seeds: [0, 1]
train:
  epochs: 3
"""
    + GRID_ONLY
)
SLOW, QUICK = "bs1_lr0.01", "bs1000_lr0.01"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def cli(work, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow/scripts")}
    return subprocess.run([sys.executable, "-m", "batchlab", *args], cwd=work, env=env, capture_output=True, text=True, timeout=300)


def slow_is_running(work):
    log = work / "logs/train" / f"{SLOW}.log"
    return (
        (work / "results/runs" / QUICK / "metrics.json").exists()
        and log.exists()
        and "seeds training |" in log.read_text()
        and not (work / "results/runs" / SLOW / "metrics.json").exists()
    )


def charts_draw(page_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
        page.goto(page_path.as_uri())
        page.wait_for_function("Array.from(document.querySelectorAll('.chart')).every(d => d.querySelector('svg'))", timeout=30000)
        drawn = page.evaluate("Array.from(document.querySelectorAll('.chart')).map(d => d.querySelectorAll('svg path, svg text').length)")
        banner = page.inner_text("#partial")
        browser.close()
    return drawn, banner, errors


def test_status_and_peek_follow_a_run_a_kill_and_the_end(tmp_path, mnist_mirror):
    work = copy_workflow(tmp_path / "w")
    (work / "follow.yaml").write_text(CONFIG)
    env = {"BATCHLAB_MNIST_MIRROR": str(mnist_mirror)}
    run = start_snakemake(work, "--cores", "2", "--configfile", "follow.yaml", env=env)
    try:
        wait_for(lambda: slow_is_running(work), 300, "the quick cell done and the slow one training")
        shown = cli(work, "status")
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the whole run, mid-training
        run.wait()
    assert shown.returncode == 0, shown.stderr
    done_on_disk = len(list((work / "results/runs").glob("*/metrics.json")))
    assert done_on_disk == 1 and "1/2 cells done · 1 running · 0 waiting" in shown.stdout
    assert re.search(r"ETA \d+ (s|min)", shown.stdout), shown.stdout  # one cell has finished: a number
    assert re.search(rf"running +{SLOW} +epoch [123]/3 step [\d,]+/50,000", shown.stdout), shown.stdout

    # killed: once its log has been silent for three windows the cell is interrupted
    from batchlab.follow.status import render, study_status

    later = study_status(work, now=time.time() + 31)
    assert {c.cell: c.state for c in later["cells"]} == {SLOW: "interrupted", QUICK: "done"}
    assert f"interrupted  {SLOW}" in "\n".join(render(later))

    peeked = cli(work, "peek")
    assert peeked.returncode == 0, peeked.stderr
    assert "Partial report: 1 of 2 cells done; " in peeked.stdout
    drawn, banner, errors = charts_draw(work / "results/report/partial.html")
    assert not errors and drawn and min(drawn) >= 2, (drawn, errors)
    assert banner.startswith("Partial report: 1 of 2 cells done") and "verdict(s) wait for the rest" in banner
    assert not (work / "results/report/index.html").exists()  # the full report is not touched

    assert snakemake(work, "--unlock", "--configfile", "follow.yaml").returncode == 0
    again = snakemake(work, "--cores", "2", "--configfile", "follow.yaml", "--rerun-incomplete", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    final = cli(work, "status")
    assert final.returncode == 0 and "study complete: 2/2 cells done" in final.stdout
