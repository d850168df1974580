"""The report's stamp calls a checkout dirty for code, config or data, not for its results."""

import subprocess

from batchlab.provenance import git_state


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_only_code_config_and_data_make_a_checkout_dirty(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None}
    (tmp_path / "results/summary").mkdir(parents=True)
    (tmp_path / "results/summary/metrics.json").write_text("{}")
    (tmp_path / "dvc.lock").write_text("a")
    (tmp_path / "params.yaml").write_text("grid: {}")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", "x")
    assert git_state(tmp_path)["dirty"] is False
    # a run of the study rewrites its committed summaries and dvc.lock: still clean
    (tmp_path / "results/summary/metrics.json").write_text('{"cells": 1}')
    (tmp_path / "dvc.lock").write_text("b")
    state = git_state(tmp_path)
    assert state["dirty"] is False and len(state["commit"]) == 40
    (tmp_path / "params.yaml").write_text("grid: {seeds: [0]}")
    assert git_state(tmp_path)["dirty"] is True
