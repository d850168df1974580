"""DVC around the workflow, in a fresh git repository of the project with a local remote.

The tests run in order and share one repository: repro, a no-op repro, a new learning rate,
an experiment, push and pull into a second clone. Git identities are set inside the temporary
repositories and HOME points at an empty folder, so nothing depends on the user's git config.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, VENV_BIN

pytestmark = [pytest.mark.dvc, pytest.mark.workflow, pytest.mark.slow]

TINY_PARAMS = """\
data:
  mirrors: [https://ossci-datasets.s3.amazonaws.com/mnist/]
  timeout_s: 30
  retries: 2
grid:
  batch_sizes: [128, 1000]
  learning_rates: [0.1]
  seeds: [0]
train:
  epochs: 1
report:
  reference_lr: 0.1
remedies:
  enabled: false
solution2:
  enabled: false
equal_updates:
  enabled: false
late_blowup:
  enabled: false
gradient_probe:
  enabled: false
# DVC needs every params group dvc.yaml lists, even one left at its defaults
optimizers:
  momentum: {momentum: 0.9}
measure:
  probe_every_samples: 20000
"""
PROJECT_FILES = [
    "Snakefile",
    "dvc.yaml",
    ".dvcignore",
    ".gitignore",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvc/plots/by_batch_size.json",
]
PROJECT_DIRS = ["workflow", "envs", "profiles"]


class Repo:
    def __init__(self, path: Path, env: dict):
        self.path, self.env = path, env

    def run(self, *cmd, check=True, timeout=900):
        done = subprocess.run(
            list(cmd), cwd=self.path, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
            )
        return done

    def git(self, *args, **kw):
        return self.run("git", *args, **kw)

    def dvc(self, *args, **kw):
        return self.run(str(VENV_BIN / "dvc"), *args, **kw)

    def commit(self, message):
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD").stdout.strip()


def tracked_checksums(root: Path) -> dict[str, str]:
    """MD5 of every file DVC or git versions under data/ and results/."""
    out = {}
    for sub in ("data", "results"):
        for f in sorted((root / sub).rglob("*")):
            rel = f.relative_to(root).as_posix()
            if f.is_file() and not rel.startswith(("results/benchmarks/", "results/checkpoints/", "results/seeds/")):
                out[rel] = hashlib.md5(f.read_bytes()).hexdigest()
    return out


def train_jobs(output: str) -> list[str]:
    return re.findall(r"wildcards: (bs=\d+, lr=[\d.]+)", output)


@pytest.fixture(scope="module")
def project(tmp_path_factory, mnist_mirror):
    root = tmp_path_factory.mktemp("dvc")
    home = root / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "BATCHLAB_MNIST_MIRROR": str(mnist_mirror),
    }
    for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        env.pop(key, None)
    origin = root / "origin"
    origin.mkdir()
    for name in PROJECT_FILES:
        (origin / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, origin / name)
    for folder in PROJECT_DIRS:
        shutil.copytree(REPO / folder, origin / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (origin / "params.yaml").write_text(TINY_PARAMS)
    repo = Repo(origin, env)
    repo.git("init", "-q", "-b", "main")
    repo.git("config", "user.name", "batchlab test")
    repo.git("config", "user.email", "test@batchlab.invalid")
    subprocess.run(
        [str(VENV_BIN / "python"), "-m", "batchlab.report", "dvc-template", ".dvc/plots/offline.html"],
        cwd=origin,
        env={**env, "PYTHONPATH": str(origin / "workflow/scripts")},
        check=True,
    )
    remote = root / "remote"
    repo.dvc("remote", "modify", "--local", "local", "url", str(remote))
    repo.commit("batchlab, tiny study")
    return {"root": root, "repo": repo, "remote": remote, "revs": {}}


def test_repro_runs_the_whole_study(project):
    repo = project["repo"]
    done = repo.dvc("repro")
    assert "Running stage 'data'" in done.stdout and "Running stage 'study'" in done.stdout
    assert sorted(train_jobs(done.stdout + done.stderr)) == [
        "bs=1000, lr=0.1",
        "bs=128, lr=0.1",
    ]
    assert (repo.path / "results/report/index.html").exists()
    metrics = json.loads((repo.path / "results/summary/metrics.json").read_text())
    assert metrics["cells"] == 2
    assert (
        "No earlier version of the study is recorded" in (repo.path / "results/report/index.html").read_text()
    )
    project["revs"]["v1"] = repo.commit("study v1")
    repo.dvc("push", "-q")


def test_second_repro_does_nothing(project):
    repo = project["repo"]
    done = repo.dvc("repro")
    assert "Stage 'data' didn't change, skipping" in done.stdout
    assert "Stage 'study' didn't change, skipping" in done.stdout
    assert train_jobs(done.stdout + done.stderr) == []
    assert "Data and pipelines are up to date." in repo.dvc("status").stdout


def test_a_new_validation_split_retrains_the_cells_and_keeps_the_data(project):
    repo = project["repo"]
    params = repo.path / "params.yaml"
    original = params.read_text()
    params.write_text(original.replace("train:\n  epochs: 1\n", "train:\n  epochs: 1\n  validation_size: 5000\n"))
    try:
        status = json.loads(repo.dvc("status", "--json").stdout)
        assert set(status) == {"study"}, status  # the data stage is untouched: nothing refetched
        assert status["study"] == [{"changed deps": {"params.yaml": {"train": "modified"}}}]
        dry = repo.run(str(VENV_BIN / "snakemake"), "-n", "--cores", "1")
        plan = dry.stdout + dry.stderr
        assert sorted(train_jobs(plan)) == ["bs=1000, lr=0.1", "bs=128, lr=0.1"]
        assert "rule fetch" not in plan and "rule prepare" not in plan
    finally:
        params.write_text(original)
    assert "Data and pipelines are up to date." in repo.dvc("status").stdout


def test_new_learning_rate_trains_only_the_new_cells(project):
    repo = project["repo"]
    old_cell = repo.path / "results/runs/bs128_lr0.1/losses.parquet"
    before = old_cell.stat().st_mtime_ns, hashlib.md5(old_cell.read_bytes()).hexdigest()
    params = repo.path / "params.yaml"
    params.write_text(params.read_text().replace("learning_rates: [0.1]", "learning_rates: [0.1, 0.3]"))
    done = repo.dvc("repro")
    assert "Stage 'data' didn't change, skipping" in done.stdout
    assert sorted(train_jobs(done.stdout + done.stderr)) == [
        "bs=1000, lr=0.3",
        "bs=128, lr=0.3",
    ]
    assert (old_cell.stat().st_mtime_ns, hashlib.md5(old_cell.read_bytes()).hexdigest()) == before
    assert json.loads((repo.path / "results/summary/metrics.json").read_text())["cells"] == 4
    page = (repo.path / "results/report/index.html").read_text()
    v1 = project["revs"]["v1"][:10]
    assert f"Params changed since commit {v1} (HEAD): grid.learning_rates: [0.1] → [0.1, 0.3]." in page
    assert "Cells: 2 → 4." in page
    # a batch size whose best lr or its test accuracy moved is named, with both values
    old = json.loads(repo.git("show", f"{v1}:results/summary/metrics.json").stdout)
    new = json.loads((repo.path / "results/summary/metrics.json").read_text())
    moved = [b for b in (128, 1000) if old[f"bs{b}"] != new[f"bs{b}"]]
    for b in moved:
        assert re.search(rf"Test accuracy at the best lr of each batch size since commit \w+ \(HEAD\):.*batch {b}: [\d.]+% → [\d.]+%", page)
    if not moved:
        assert "Test accuracy at the best lr of each batch size since" not in page
    project["revs"]["v2"] = repo.commit("study v2: lr 0.3")
    repo.dvc("push", "-q")


def test_experiment_lists_its_metrics_beside_the_baseline(project):
    repo = project["repo"]
    done = repo.dvc("exp", "run", "-S", "grid.learning_rates=[0.1,0.3,0.6]")
    assert sorted(train_jobs(done.stdout + done.stderr)) == [
        "bs=1000, lr=0.6",
        "bs=128, lr=0.6",
    ]
    rows = repo.dvc("exp", "show", "--csv").stdout.splitlines()
    header = rows[0].split(",")
    cells = header.index("cells")
    table = [r.split(",") for r in rows[1:]]
    by_kind = {(r[header.index("Experiment")] or r[header.index("rev")]): r[cells] for r in table}
    assert by_kind.get("main") == "4", rows[:4]
    assert "6" in [r[cells] for r in table if r[header.index("Experiment")]], rows[:4]
    # back to the committed version for what follows
    repo.git("reset", "-q", "--hard")
    repo.dvc("checkout", "-q", "--force")


def test_push_then_pull_in_a_fresh_clone_is_byte_identical_and_up_to_date(project):
    repo = project["repo"]
    clone_path = project["root"] / "clone"
    subprocess.run(["git", "clone", "-q", str(repo.path), str(clone_path)], env=repo.env, check=True)
    clone = Repo(clone_path, repo.env)
    clone.git("config", "user.name", "batchlab test")
    clone.git("config", "user.email", "test@batchlab.invalid")
    clone.dvc("remote", "modify", "--local", "local", "url", str(project["remote"]))
    # what `make pull` does
    clone.dvc("pull", "-q")
    clone.run(str(VENV_BIN / "snakemake"), "--cores", "1", "--touch", "--quiet")
    assert tracked_checksums(clone.path) == tracked_checksums(repo.path)
    assert "Data and pipelines are up to date." in clone.dvc("status").stdout
    dry = clone.run(str(VENV_BIN / "snakemake"), "-n", "--cores", "1")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    assert train_jobs(dry.stdout + dry.stderr) == []


def test_report_of_an_earlier_version_comes_back(project):
    repo = project["repo"]
    out = project["root"] / "v1.html"
    repo.dvc(
        "get", str(repo.path), "results/report/index.html", "--rev", project["revs"]["v1"], "-o", str(out)
    )
    page = out.read_text()
    assert "No earlier version of the study is recorded" in page  # v1 had no predecessor
    current = (repo.path / "results/report/index.html").read_text()

    def changes(html_page):
        return html_page.split('<section id="changes">')[1].split("</section>")[0]

    assert "grid.learning_rates: [0.1] → [0.1, 0.3]" in changes(current) and "grid.learning_rates" not in changes(page)


def test_dvc_plots_render_offline(project):
    repo = project["repo"]
    done = repo.dvc("plots", "show", "-o", "plots-out")
    page = (repo.path / "plots-out/index.html").read_text()
    assert "cdn.jsdelivr" not in page and not re.search(r"<script[^>]+src=", page), done.stdout
    assert page.count("vegaEmbed(") >= 2
    assert "batch_size" in page and "loss_smooth" in page
