"""Snakemake adapter: fetch the four MNIST files (see batchlab.data.fetch)."""

import os
from pathlib import Path

from batchlab.cli import run_step
from batchlab.data.fetch import MIRROR_ENV, checksums_json, fetch_all, sources_from, write_atomically


def main(log, params, output):
    sources = sources_from(os.environ.get(MIRROR_ENV), list(params.mirrors))
    log(f"sources, in order: {', '.join(sources)}")
    fetched = fetch_all(sources, params.timeout_s, params.retries)
    files = {Path(getattr(output, key)): f.gz_bytes for key, f in fetched.items()}
    files[Path(output.checksums)] = checksums_json(fetched)
    write_atomically(files)
    for f in fetched.values():
        log(f"{f.name}: MD5 {f.md5} verified, from {f.source}")


run_step(lambda log: main(log, snakemake.params, snakemake.output), snakemake.log[0])  # noqa: F821
