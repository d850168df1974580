"""The end-of-run summary of failed jobs, read from a Snakemake log."""

from batchlab.failures import failed_jobs, summary

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
        {"rule": "train", "log": "logs/train/bs1000_lr0.log"},
        {"rule": "fetch", "log": "logs/fetch.log"},
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
