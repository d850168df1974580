"""The gradient's direction at shared weights: one reference run (every seed of one cell), and
at the end of each of its epochs (early, middle, end of training), for every batch size from 1 to
16,384 the cosine between the gradients of two independent mini-batches drawn at those same
weights, with the mean squared norm of such a gradient, from which the analysis estimates
B_simple at that checkpoint (E|g_b|^2 = |G|^2 + tr(Sigma) / b).

Unlike the cosine probed during the grid's training, each batch size is measured at the same
weights, so the comparison across batch sizes holds the stage of training fixed. A job of its
own (the gradient_probe rule), outside the training jobs' code: it trains its reference with
batchlab.train.loop and measures with batchlab.train.measure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
import torch

from batchlab.data.tensors import load_prepared, to_device
from batchlab.io import write_parquet
from batchlab.train.cell_config import CellConfig
from batchlab.train.devices import cuda_available, resolve_device
from batchlab.train.ensemble import Ensemble
from batchlab.train.loop import train_cell
from batchlab.train.measure import _loss_gradient
from batchlab.train.models import input_shape

COLUMNS = ["seed", "epoch", "step", "batch_size", "pairs", "cosine", "g_sq"]
# samples each batch size's pairs draw, about: max(2, min(MAX_PAIRS, PAIR_SAMPLES // b)) pairs,
# so a small batch's noisy cosine is averaged over many pairs and a huge batch costs two
PAIR_SAMPLES = 4096
MAX_PAIRS = 64
STREAM = 104_729  # the draws' generator: seed + this, apart from the training's own


@dataclass(frozen=True)
class Reference:
    """The reference run and what is measured at its checkpoints."""

    batch_size: int
    lr: float
    epochs: int
    seeds: tuple[int, ...]
    batch_sizes: tuple[int, ...]  # measured at each checkpoint
    validation_size: int = 10000
    model: str = "mlp"
    init_jitter: float = 0.0  # as the study's cells (train.init_jitter): a rerun under other rounding


def pairs_for(batch_size: int) -> int:
    return max(2, min(MAX_PAIRS, PAIR_SAMPLES // batch_size))


def measure(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_sizes, gen: torch.Generator) -> list[dict]:
    """At the model's weights, per batch size b: the mean over pairs_for(b) pairs of disjoint
    mini-batches of b training images of the cosine between their gradients, and the mean
    squared norm of one mini-batch gradient."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for b in batch_sizes:
        if 2 * b > x.shape[0]:
            raise ValueError(f"two batches of {b:,} need {2 * b:,} training images; there are {x.shape[0]:,}")
        cos, sq = [], []
        for _ in range(pairs_for(b)):
            idx = torch.randperm(x.shape[0], generator=gen)[: 2 * b].to(x.device)
            with torch.enable_grad():
                ga, gb = (_loss_gradient(model, x[i], y[i], params) for i in (idx[:b], idx[b:]))
            cos.append(ga.dot(gb) / (ga.norm() * gb.norm()).clamp_min(1e-300))
            sq.append((ga.dot(ga) + gb.dot(gb)) / 2)
        host = torch.stack([torch.stack(cos).mean(), torch.stack(sq).mean()]).cpu()
        rows.append({"batch_size": int(b), "pairs": len(cos), "cosine": float(host[0]), "g_sq": float(host[1])})
    return rows


def probe(ref: Reference, data_path: str, device: torch.device, log=print) -> pd.DataFrame:
    """Train the reference run; at each epoch's end measure every seed's weights."""
    data = to_device(load_prepared(data_path), input_shape(ref.model), device, ref.validation_size)
    cfg = CellConfig(
        batch_size=ref.batch_size, lr=ref.lr, seeds=ref.seeds, epochs=ref.epochs, model=ref.model,
        validation_size=ref.validation_size, init_jitter=ref.init_jitter, probe_every_samples=0, sharpness_iterations=0,
        track_subset=0,
    )  # fmt: skip
    rows, t0 = [], time.perf_counter()

    def at_epoch_end(states):
        for state in states:  # one per group of seeds
            ens = Ensemble.from_state(ref.model, [s["seed"] for s in state.seeds], {k: v.to(device) for k, v in state.params.items()})
            for i, seed in enumerate(ens.seeds):
                if state.seeds[i]["status"] != "ok":
                    continue
                gen = torch.Generator().manual_seed(STREAM + 1000 * state.epoch + seed)
                found = measure(ens.module(i), data.train_x, data.train_y, ref.batch_sizes, gen)
                rows.extend({"seed": seed, "epoch": state.epoch, "step": state.step, **r} for r in found)
        log(f"epoch {states[0].epoch}: measured {len(ref.batch_sizes)} batch sizes at every seed's weights ({time.perf_counter() - t0:.0f} s)")

    train_cell(cfg, data, device, on_epoch_end=at_epoch_end, log=log)
    return pd.DataFrame(rows, columns=COLUMNS)


def run(ref: Reference, data_path: str, output: str, threads: int, device: str = "auto", log=print) -> None:
    torch.set_num_threads(threads)
    where = torch.device(resolve_device(device, cuda_available()))
    log(f"reference run on {where}: batch {ref.batch_size} at lr {ref.lr:g}, {ref.epochs} epochs, seeds {list(ref.seeds)}")
    write_parquet(output, probe(ref, data_path, where, log))
