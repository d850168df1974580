"""Times the epoch loop of one version of the batchlab trainer, on request (a bench helper).

    python benchmarks/worker.py SCRIPTS_DIR DATA DEVICE THREADS

SCRIPTS_DIR holds the `batchlab` package to time: this checkout's, or an older commit's checked
out into a temporary folder. Reads one JSON request per line on stdin ({"model", "batch_size",
"seeds", "n_train"}) and answers one JSON line: the epoch's training seconds as epochs.parquet
reports them (the ensemble's time; for a trainer of one seed at a time, the sum over its seeds)
and the steps per seed. A persistent process, so requests to two versions can be interleaved
without paying PyTorch's import each time.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields

import torch


def trainer_api():
    """(DeviceData, load_prepared, to_device, CellConfig, train_cell, input_shape) of the package
    on sys.path: from its stage subpackages, or from the flat modules of a version from before
    the split (the baseline)."""
    try:
        from batchlab.data.tensors import DeviceData, load_prepared, to_device
        from batchlab.train.cell_config import CellConfig
        from batchlab.train.loop import train_cell
        from batchlab.train.models import input_shape
    except ModuleNotFoundError:
        from batchlab.models import input_shape

        from batchlab.data import DeviceData, load_prepared, to_device
        from batchlab.train import CellConfig, train_cell
    return DeviceData, load_prepared, to_device, CellConfig, train_cell, input_shape


def main() -> None:
    scripts, data_path, device_name, threads = sys.argv[1:5]
    sys.path.insert(0, scripts)
    DeviceData, load_prepared, to_device, CellConfig, train_cell, input_shape = trainer_api()

    torch.set_num_threads(int(threads))
    device = torch.device(device_name)
    tensors = load_prepared(data_path)
    resident = {}
    ensemble = "seeds" in {f.name for f in fields(CellConfig)}
    quiet = {"epochs": 1, "probe_every_samples": 0, "sharpness_iterations": 0, "train_eval_size": 100}
    for line in sys.stdin:
        req = json.loads(line)
        model, b, seeds, n = req["model"], req["batch_size"], req["seeds"], req["n_train"]
        if model not in resident:
            resident[model] = to_device(tensors, input_shape(model), device)
        full = resident[model]
        data = DeviceData(full.train_x[:n], full.train_y[:n], full.test_x[:100], full.test_y[:100])
        silent = {"log": lambda message: None}
        if ensemble:
            cfg = CellConfig(batch_size=b, lr=0.01, seeds=tuple(seeds), model=model, **quiet)
            result = train_cell(cfg, data, device, **silent)
            seconds = result.measure_seconds["training"]  # every group of seeds, summed
            steps = len(result.seeds[0].losses)
        else:
            seconds, steps = 0.0, 0
            for seed in seeds:
                cfg = CellConfig(batch_size=b, lr=0.01, seed=seed, model=model, **quiet)
                result = train_cell(cfg, data, device, **silent)
                seconds += result.epochs[0]["seconds"]
                steps = len(result.losses)
        print(json.dumps({"seconds": seconds, "steps": steps}), flush=True)


if __name__ == "__main__":
    main()
