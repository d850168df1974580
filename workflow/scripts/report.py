"""Snakemake adapter: summary tables -> results/report/index.html (see batchlab.report)."""

import datetime as dt
import json
import os

import pandas as pd

from batchlab.cli import run_step
from batchlab.config import params_hash
from batchlab.io import write_text
from batchlab.provenance import git_state, version_stamp
from batchlab.report import build_sections, render_html, vega_bundle


def main(log, input, output, params):
    config = dict(params.config)
    cells = pd.read_parquet(input.cells)
    with open(input.checksums) as handle:
        checksums = json.load(handle)
    sections = build_sections(
        cells=cells,
        settings=pd.read_parquet(input.settings),
        best=pd.read_parquet(input.best_lr),
        epochs=pd.read_parquet(input.epochs),
        curves=pd.read_parquet(input.curves),
        config=config,
    )
    stamp = version_stamp(
        git=git_state(os.getcwd()),
        params_hash=params_hash(config),
        data_checksums=checksums,
        devices=[d for d in cells["device"].dropna()],
        now=dt.datetime.now(dt.UTC),
    )
    write_text(output.html, render_html(config["report"]["title"], sections, stamp, vega_bundle()))
    log(f"wrote {output.html}: {sum(len(s.charts) for s in sections)} charts, stamp {stamp['params_hash']}")


run_step(lambda log: main(log, snakemake.input, snakemake.output, snakemake.params), snakemake.log[0])  # noqa: F821
