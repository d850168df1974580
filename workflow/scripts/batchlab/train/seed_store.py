"""Finished seeds, kept where a rerun of their cell finds them.

Snakemake deletes a job's outputs before it reruns the job, so a cell whose seed list grew would
retrain every seed. Each finished seed is therefore also stored under
`<store>/<cell>/s<seed>.pt`, keyed by everything that defines that seed's run: its training
config (seed included), the training code, the prepared data, the PyTorch version and the kind
of device. A job reuses a stored seed only when the key matches exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from batchlab.io import atomic_path
from batchlab.train.records import SeedResult

FORMAT = 1


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def seed_key(run: dict, context: dict) -> str:
    blob = json.dumps({"run": run, **context}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class SeedStore:
    def __init__(self, folder: str | Path, log: Callable[[str], None] = print):
        self.folder, self.log = Path(folder), log

    def path(self, seed: int) -> Path:
        return self.folder / f"s{int(seed)}.pt"

    def get(self, seed: int, key: str) -> tuple[SeedResult, dict] | None:
        path = self.path(seed)
        if not path.exists():
            return None
        try:
            record = torch.load(path, weights_only=True)
        except Exception as exc:
            self.log(f"stored seed {path} is unreadable ({type(exc).__name__}); training it again")
            return None
        if record.get("format") != FORMAT or record.get("key") != key:
            return None
        result = {**record["result"], "losses": record["result"]["losses"].numpy()}
        return SeedResult(**result), record["extra"]

    def put(self, result: SeedResult, key: str, extra: dict) -> None:
        saved = {**result.__dict__, "losses": torch.from_numpy(np.ascontiguousarray(result.losses, np.float32))}
        with atomic_path(self.path(result.seed)) as tmp:
            torch.save({"format": FORMAT, "key": key, "result": saved, "extra": extra}, tmp)
