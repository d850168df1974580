"""Parts 2 and 3 of benchmarks/bench.py: the trainer's hot path (S = 1) against a typical
tutorial loop (torchvision dataset, DataLoader) on the mlp, and this machine's fp32 matmul
throughput with the fraction of it the trainer reaches at batch 512."""

from __future__ import annotations

import gzip
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from plan import Plan
from torch import nn

from batchlab.data.tensors import MNIST_MEAN, MNIST_STD, load_prepared, to_device
from batchlab.train.batches import Batches
from batchlab.train.ensemble import Ensemble
from batchlab.train.models import build_model, input_shape, train_step_flops
from batchlab.train.steps import fused_mlp_sgd

TARGETS = {1: 3.0, 64: 5.0, 512: 8.0}  # trainer against tutorial, by batch size; 1.0 elsewhere
LR = 0.01


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """The batchlab hot path at S = 1: resident tensors, a randperm, gathered batches, the fused step."""

    def __init__(self, b: int, data, device: torch.device):
        ens = Ensemble.initialize("mlp", [0], device)
        self.step = fused_mlp_sgd(ens, torch.ones(1, dtype=torch.bool, device=device), 1000.0)
        perm = torch.randperm(data.n_train, generator=torch.Generator().manual_seed(0)).to(device)
        self.batches, self.pos = Batches(data, perm.view(1, -1), b), 0
        self.iters = data.n_train // b

    def run(self, n: int) -> None:
        losses = []
        for _ in range(n):
            losses.append(self.step(*self.batches(self.pos), LR))
            self.pos = (self.pos + 1) % self.iters
        torch.stack(losses).cpu()  # the trainer copies losses to the host once per window


class Tutorial:
    """The loop of the PyTorch MNIST tutorials: torchvision dataset, transforms, DataLoader."""

    def __init__(self, b: int, root: Path, device: torch.device):
        from torchvision import datasets, transforms

        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
        dataset = datasets.MNIST(str(root), train=True, download=False, transform=transform)
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=b, shuffle=True)
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Flatten(), build_model("mlp")).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.device = device
        self.batches = iter(self.loader)

    def run(self, n: int) -> None:
        running = 0.0
        for _ in range(n):
            try:
                x, y = next(self.batches)
            except StopIteration:
                self.batches = iter(self.loader)
                x, y = next(self.batches)
            x, y = x.to(self.device), y.to(self.device)
            self.optimizer.zero_grad()
            loss = F.cross_entropy(self.model(x), y)
            loss.backward()
            self.optimizer.step()
            running += loss.item()


def timed(fn, n: int, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn(n)
    sync(device)
    return (time.perf_counter() - t0) / n


def tutorial_row(b: int, n: int, data, root: Path, device: torch.device, rounds: int) -> dict:
    trainer, tutorial = Trainer(b, data, device), Tutorial(b, root, device)
    trainer.run(max(3, n // 5))
    tutorial.run(max(3, n // 5))
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(timed(trainer.run, n, device))
        theirs.append(timed(tutorial.run, n, device))
    trainer_ms, tutorial_ms = 1000 * statistics.median(ours), 1000 * statistics.median(theirs)
    return {
        "model": "mlp",
        "batch_size": b,
        "device": device.type,
        "trainer_ms_per_step": trainer_ms,
        "tutorial_ms_per_step": tutorial_ms,
        "ratio": statistics.median(t / o for o, t in zip(ours, theirs, strict=True)),
        "trainer_gflops": train_step_flops("mlp", b) / trainer_ms / 1e6,
    }


def matmul_gflops(device: torch.device, size: int, repeats: int) -> float:
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / statistics.median(times) / 1e9


def torchvision_root(raw_dir: Path, into: Path) -> Path:
    """torchvision's MNIST wants the decompressed files under ROOT/MNIST/raw/."""
    target = into / "MNIST" / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for gz in raw_dir.glob("*-ubyte.gz"):
        (target / gz.name[:-3]).write_bytes(gzip.decompress(gz.read_bytes()))
    return into


def run(args, plan: Plan, devices: list[str]) -> tuple[list[dict], dict[str, float]]:
    """(the tutorial rows, matmul GFLOP/s by device), printed as they come."""
    print("\ntrainer (S = 1) against a tutorial loop (DataLoader), mlp:")
    tensors = load_prepared(args.data)
    rows, gflops = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(args.raw, Path(tmp))
        for name in devices:
            device = torch.device(name)
            gflops[name] = matmul_gflops(device, plan.matmul_size, plan.matmul_repeats)
            data = to_device(tensors, input_shape("mlp"), device)
            for b, n in plan.tutorial_steps.items():
                row = tutorial_row(b, n, data, root, device, args.rounds)
                rows.append(row)
                print(
                    f"{name:4} mlp bs {b:4}: trainer {row['trainer_ms_per_step']:8.3f} ms/step | tutorial"
                    f" {row['tutorial_ms_per_step']:8.3f} ms/step | ratio {row['ratio']:5.2f}x"
                    f" (target >= {TARGETS.get(b, 1.0):g}x)",
                    flush=True,
                )
    cpu512 = next(r for r in rows if r["device"] == "cpu" and r["batch_size"] == 512)
    share = cpu512["trainer_gflops"] / gflops["cpu"]
    size = plan.matmul_size
    print(
        f"fp32 matmul {size}x{size}, {args.threads} thread(s): {gflops['cpu']:.1f} GFLOP/s;"
        f" trainer at batch 512: {cpu512['trainer_gflops']:.1f} GFLOP/s = {share:.0%} of it (target >= 60%)"
    )
    return rows, gflops
