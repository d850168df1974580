"""What a training job pays before its code, or one cell's measurement costs (a bench helper).

    python benchmarks/cell_probe.py SCRIPTS DATA start
    python benchmarks/cell_probe.py SCRIPTS DATA MODEL SEEDS N_TRAIN THREADS MEASURE_JSON

`start`: the seconds of Python's start-up and a job's imports. Else one epoch at batch 64 of a
cell of SEEDS seeds on the first N_TRAIN training images (the whole training set resident, as in
a job) with the `measure` group MEASURE_JSON, on the CPU: the cell's measure_seconds (see
batchlab.train.loop) and the process's peak memory. Prints one JSON line.
"""

import time

t0 = time.perf_counter()

import json
import resource
import sys

sys.path.insert(0, sys.argv[1])
import torch

import batchlab.train.job  # noqa: F401  (what a job imports)
from batchlab.data.tensors import DeviceData, load_prepared, to_device
from batchlab.train.cell_config import make_config
from batchlab.train.loop import train_cell
from batchlab.train.models import input_shape

imported = time.perf_counter() - t0


def cell_costs(data_path: str, model: str, seeds: int, n: int, threads: int, measure: dict) -> dict:
    torch.set_num_threads(threads)
    full = to_device(load_prepared(data_path), input_shape(model), torch.device("cpu"))
    data = DeviceData(full.train_x[:n], full.train_y[:n], full.test_x, full.test_y)
    cfg = make_config(batch_size=64, lr=0.01, seeds=tuple(range(seeds)), epochs=1, model=model, **measure)
    result = train_cell(cfg, data, torch.device("cpu"), log=lambda m: None)
    return {**result.measure_seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


if __name__ == "__main__":
    if sys.argv[3] == "start":
        print(json.dumps({"imports_s": imported}))
    else:
        model, seeds, n, threads, measure = sys.argv[3:8]
        print(json.dumps(cell_costs(sys.argv[2], model, int(seeds), int(n), int(threads), json.loads(measure))))
