"""Snakemake adapter: summary tables -> results/report/index.html (see batchlab.report)."""

import datetime as dt
import json
import os

import yaml

from batchlab import BatchlabError, summary
from batchlab.cli import run_step
from batchlab.config import params_hash, validate_config
from batchlab.io import write_text
from batchlab.provenance import git_show, git_state, version_stamp
from batchlab.report import Inputs, build_sections, render_html, vega_bundle


def previous_version(workdir, commit, schema_path, metrics_path):
    """The last committed params and headline metrics, to say what changed since."""
    old_params, old_metrics = (
        git_show(workdir, "HEAD", "params.yaml"),
        git_show(workdir, "HEAD", metrics_path),
    )
    if old_params is None or old_metrics is None:
        return None
    with open(schema_path) as handle:
        schema = yaml.safe_load(handle)
    try:
        params = validate_config(yaml.safe_load(old_params), schema)
    except BatchlabError:
        params = yaml.safe_load(old_params)
    return {
        "label": f"commit {(commit or '')[:10]} (HEAD)",
        "params": params,
        "metrics": json.loads(old_metrics),
    }


def main(log, input, output, params):
    config = dict(params.config)
    git = git_state(os.getcwd())
    with open(input.checksums) as handle:
        checksums = json.load(handle)
    study = Inputs(
        **summary.read(dict(input.items())),
        config=config,
        previous=previous_version(os.getcwd(), git["commit"], params.schema, input.metrics),
    )
    sections = build_sections(study)
    stamp = version_stamp(
        git=git,
        params_hash=params_hash(config),
        data_checksums=checksums,
        devices=[d for d in study.cells["device"].dropna()],
        now=dt.datetime.now(dt.UTC),
    )
    write_text(output.html, render_html(config["report"]["title"], sections, stamp, vega_bundle()))
    log(f"wrote {output.html}: {sum(len(s.charts) for s in sections)} charts, stamp {stamp['params_hash']}")


run_step(lambda log: main(log, snakemake.input, snakemake.output, snakemake.params), snakemake.log[0])  # noqa: F821
