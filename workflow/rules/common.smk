# Config validation and the few helpers the rules share.
import os
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(workflow.current_basedir).parent / "scripts"))

from batchlab.config import cells as grid_cells, validate_config
from batchlab.devices import cuda_available, resolve_device

# The package modules each rule's results depend on are inputs of that rule, so editing one
# reruns what it affects (Snakemake's code trigger sees only the adapter script itself).
PACKAGE = Path(workflow.current_basedir).parent / "scripts" / "batchlab"


def package(*modules):
    return [os.path.relpath(PACKAGE / f"{m}.py") for m in modules]


# relative to the working directory, so params stay the same wherever the project lies
SCHEMA_PATH = os.path.relpath(
    Path(workflow.current_basedir).parent / "schemas" / "params.schema.yaml"
)
with open(SCHEMA_PATH) as _schema:
    _validated = validate_config(config, yaml.safe_load(_schema))
config.clear()
config.update(_validated)

# CUDA is asked for only when the config may use it (importing torch costs a second).
TRAIN_DEVICE = (
    "cpu"
    if config["train"]["device"] == "cpu"
    else resolve_device(config["train"]["device"], cuda_available())
)
TRAIN_GPUS = 1 if TRAIN_DEVICE == "cuda" else 0
# a cell: batch size, learning rate, seed, and its recipe (empty for plain training)
CELL = "bs{bs}_lr{lr}_s{seed}{recipe}"


wildcard_constraints:
    bs="[1-9][0-9]*",
    lr="[0-9]+(\.[0-9]+)?",
    seed="[0-9]+",
    recipe="(_w[0-9.]+)?(_m[0-9.]+)?(_k[0-9]+)?",


def cell_outputs(name):
    """One training output (losses, epochs, probes or metrics) for every cell of the study."""
    cells = grid_cells(config)
    return expand(
        getattr(rules.train.output, name),
        zip,
        bs=[c["batch_size"] for c in cells],
        lr=[c["lr_text"] for c in cells],
        seed=[c["seed"] for c in cells],
        recipe=[c["recipe"] for c in cells],
    )


def report_targets():
    return [rules.report.output.html, rules.aggregate.output.metrics]
