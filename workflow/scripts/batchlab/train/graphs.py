"""The training step of an ensemble as a CUDA graph: captured once, replayed at every batch.

The study's models are tiny for a GPU: at small batches a step is a few dozen kernel launches of
microseconds each, and the launches, not the arithmetic, set its time. A graph replays them all
from one launch. The step reads its inputs from static buffers that every call fills (the batch
by a device-to-device copy, the lr by a fill): nothing is read back to the host, so a window of
steps runs without a single synchronization (batchlab.train.loop reads the losses once per window).

As PyTorch's CUDA graph notes advise, the first WARMUP steps run eagerly on a side stream (they
are real training steps), then one step is captured (nothing runs during a capture) and every
step after it is a replay. A batch of another shape (an epoch's last, smaller batch) runs
eagerly. Where capture is not possible the cell trains eagerly and its log says why: the step
is not `graphable` (torch.optim's SGD takes the lr as a host number) or the capture failed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

WARMUP = 3  # eager steps before the capture


class GraphedStep:
    """A step (batchlab.train.steps) replayed from a CUDA graph; same calls as the step itself."""

    def __init__(self, step: Callable, device: torch.device, log: Callable[[str], None]):
        self.step, self.device, self.log = step, device, log
        self.masked, self.flush, self.settled = step.masked, step.flush, step.settled
        self.graph: torch.cuda.CUDAGraph | None = None
        self.calls, self.off = 0, ""  # eager steps so far; why capture is off ("" while on)
        self.stream = torch.cuda.Stream(device)

    @property
    def note(self) -> str:
        """How the cell's steps ran, for its record."""
        return "CUDA graph" if self.graph is not None else f"eager on CUDA ({self.off or 'not captured'})"

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        if self.graph is None and not self.off and self.calls >= WARMUP:
            self._capture(x, y)
        if self.graph is not None and x.shape == self.x.shape:
            self.x.copy_(x)
            self.y.copy_(y)
            self.lr.fill_(lr)
            self.graph.replay()
            return self.loss.clone()
        self.calls += 1
        if self.graph is not None or self.off:
            return self.step(x, y, lr)
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            loss = self.step(x, y, lr)
        current.wait_stream(self.stream)
        return loss

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x.clone(), y.clone()
        self.lr = torch.zeros((), device=self.device)
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(self.device)
        try:
            with torch.cuda.graph(graph):
                self.loss = self.step(self.x, self.y, self.lr)
        except Exception as error:  # any failure to capture: train on, eagerly
            torch.cuda.synchronize(self.device)
            self.off = (
                f"capture failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            )
            self.log(f"CUDA graph: {self.off}; this cell trains eagerly")
            return
        self.graph = graph
        self.log(f"CUDA graph: the step is captured after {WARMUP} eager steps and replayed from now on")


def graphed(step: Callable, device: torch.device, enabled: bool, log: Callable[[str], None]) -> Callable:
    """The step as a CUDA graph where it can be one; else the step itself, its log saying why."""
    if device.type != "cuda":
        return step
    if not enabled:
        step.note = "eager on CUDA (graphs turned off: BATCHLAB_CUDA_GRAPHS=0)"
        log("CUDA graph: off (turned off: BATCHLAB_CUDA_GRAPHS=0 in a job); this cell trains eagerly")
        return step
    if not getattr(step, "graphable", False):
        step.note = "eager on CUDA (torch.optim's step takes the lr as a host number)"
        log(
            "CUDA graph: off for this optimizer (torch.optim's step takes the lr as a host number); eager steps"
        )
        return step
    return GraphedStep(step, device, log)


def step_note(step: Callable) -> str:
    """', CUDA graph' or ', eager on CUDA (why)' on CUDA; '' on the CPU."""
    note = getattr(step, "note", "")
    return f", {note}" if note else ""
