"""The end-of-run summary of failed jobs, read from a Snakemake log."""

from batchlab.follow.failures import failed_jobs, summary

LOG = """\
Error in rule train:
    message: None
    jobid: 0
    output: results/runs/bs1000_lr0/metrics.json
    log: logs/train/bs1000_lr0.log (check log file(s) for error details)
Finished jobid: 3 (Rule: train)
Error in rule fetch:
    jobid: 5
    log: logs/fetch.log (check log file(s) for error details)
Exiting because a job execution failed. Look above for error messages
"""


def test_failed_jobs_are_read_from_the_log_in_order():
    assert failed_jobs(LOG) == [
        {"rule": "train", "log": "logs/train/bs1000_lr0.log", "slurm_log": None, "group": None},
        {"rule": "fetch", "log": "logs/fetch.log", "slurm_log": None, "group": None},
    ]
    assert failed_jobs("Finished jobid: 1 (Rule: train)\n") == []


def test_the_summary_names_each_cell_with_its_own_last_word(tmp_path):
    (tmp_path / "logs/train").mkdir(parents=True)
    (tmp_path / "logs/train/bs1000_lr0.log").write_text("cell bs1000_lr0\nbatchlab error: lr must be > 0\n")
    (tmp_path / "logs/fetch.log").write_text("trying mirror\nTraceback ...\nOSError: no route\n")
    text = summary(LOG, tmp_path)
    assert text.splitlines()[1:3] == [
        "  cell bs1000_lr0: batchlab error: lr must be > 0 (log: logs/train/bs1000_lr0.log)",
        "  rule fetch: OSError: no route (log: logs/fetch.log)",
    ]
    assert summary("nothing failed\n", tmp_path) is None


# as Snakemake 9.27.1 and snakemake-executor-plugin-slurm 2.8.0 write them (tests/slurm runs both)
SLURM_LOG = """\
Error in rule train:
    message: SLURM-job '4' failed, SLURM status is: 'FAILED'.
    jobid: 0
    output: results/runs/bs1000_lr0/metrics.json
    log: logs/train/bs1000_lr0.log, /w/.snakemake/slurm_logs/rule_train/1000_0_/4.log (check log file(s) for error details)
    external_jobid: 4
Exiting because a job execution failed. Look above for error messages
"""

GROUP_LOG = """\
Job 8fc2 has been submitted with SLURM jobid 5 (log: /w/.snakemake/slurm_logs/group_cells_1000_train/5.log).
[Tue Dec  1 19:19:38 2026]
    message: Error in group cells_1000
    log: /w/.snakemake/slurm_logs/group_cells_1000_train/5.log (check log file(s) for error details)
    jobs:
        rule train:
            jobid: 0
            output: results/runs/bs1000_lr0.1/metrics.json
            log: logs/train/bs1000_lr0.1.log (check log file(s) for error details)
        rule train:
            jobid: 3
            output: results/runs/bs1000_lr0/metrics.json
            log: logs/train/bs1000_lr0.log (check log file(s) for error details)
    [Tue Dec  1 19:19:38 2026]
    Error in rule train:
        message: None
        jobid: 0
        log: logs/train/bs1000_lr0.1.log (check log file(s) for error details)
    [Tue Dec  1 19:19:38 2026]
    Error in rule train:
        message: None
        jobid: 3
        log: logs/train/bs1000_lr0.log (check log file(s) for error details)
Exiting because a job execution failed. Look above for error messages
"""


def test_a_slurm_job_is_named_with_its_own_log_and_its_slurm_log(tmp_path):
    (tmp_path / "logs/train").mkdir(parents=True)
    (tmp_path / "logs/train/bs1000_lr0.log").write_text("batchlab error: learning rate must be > 0\n")
    [job] = failed_jobs(SLURM_LOG)
    assert job["log"] == "logs/train/bs1000_lr0.log"  # not the list of both logs
    assert job["slurm_log"] == "/w/.snakemake/slurm_logs/rule_train/1000_0_/4.log"
    assert summary(SLURM_LOG, tmp_path).splitlines()[1] == (
        "  cell bs1000_lr0: batchlab error: learning rate must be > 0 (log: logs/train/bs1000_lr0.log;"
        " Slurm log: /w/.snakemake/slurm_logs/rule_train/1000_0_/4.log)"
    )


def test_the_cells_of_a_failed_group_job_are_named_with_the_group_jobs_slurm_log(tmp_path):
    group_log = "/w/.snakemake/slurm_logs/group_cells_1000_train/5.log"
    assert failed_jobs(GROUP_LOG) == [
        {
            "rule": "train",
            "log": "logs/train/bs1000_lr0.1.log",
            "slurm_log": group_log,
            "group": "cells_1000",
        },
        {"rule": "train", "log": "logs/train/bs1000_lr0.log", "slurm_log": group_log, "group": "cells_1000"},
    ]
    (tmp_path / "logs/train").mkdir(parents=True)
    (tmp_path / "logs/train/bs1000_lr0.1.log").write_text("cell bs1000_lr0.1 seed 0: ok\n")
    (tmp_path / "logs/train/bs1000_lr0.log").write_text("batchlab error: learning rate must be > 0\n")
    text = summary(GROUP_LOG, tmp_path).splitlines()
    assert text[0].startswith("batchlab: 2 job(s) failed")
    assert text[1] == (
        "  cell bs1000_lr0.1: its group's Slurm job failed (its own log ends: cell bs1000_lr0.1 seed 0: ok)"
        f" (log: logs/train/bs1000_lr0.1.log; Slurm log of group cells_1000: {group_log})"
    )
    assert text[2] == (
        "  cell bs1000_lr0: batchlab error: learning rate must be > 0"
        f" (log: logs/train/bs1000_lr0.log; Slurm log of group cells_1000: {group_log})"
    )


def test_a_slurm_log_in_the_working_directory_is_named_relative_to_it(tmp_path):
    text = summary(GROUP_LOG.replace("/w/", f"{tmp_path}/"), tmp_path)
    assert "Slurm log of group cells_1000: .snakemake/slurm_logs/group_cells_1000_train/5.log)" in text
    assert "cell bs1000_lr0: its group's Slurm job failed (it did not start)" in text
