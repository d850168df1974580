# Config validation and the few helpers the rules share; the study's design is batchlab.study.
import json
import os
import sys
from pathlib import Path

import yaml

SCRIPTS = Path(workflow.current_basedir).parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

from batchlab import cells, study, summary

from batchlab.closure import script_closure, trainer_code
from batchlab.config import validate_config
from batchlab.train.devices import cuda_available, resolve_device

# relative to the working directory, so params stay the same wherever the project lies
SCHEMA_PATH = os.path.relpath(
    Path(workflow.current_basedir).parent / "schemas" / "params.schema.yaml"
)
with open(SCHEMA_PATH) as _schema:
    _validated = validate_config(config, yaml.safe_load(_schema))
config.clear()
config.update(_validated)


def code(script):
    """The package modules a rule's script imports, directly or not: inputs of the rule, so
    editing one reruns what it affects (Snakemake's code trigger sees only the script itself).
    """
    return [os.path.relpath(p) for p in script_closure(SCRIPTS / script)]


def train_code():
    """A training job's code inputs, which also key its stored seeds: the train/ and data/
    modules it imports, so rewording the design or a config message retrains nothing."""
    return [os.path.relpath(p) for p in trainer_code(SCRIPTS / "train.py")]


# 1 when training jobs use a GPU (PyTorch is asked only where an NVIDIA device exists)
TRAIN_GPUS = (
    1 if resolve_device(config["train"]["device"], cuda_available()) == "cuda" else 0
)


# a cell: batch size, learning rate and its recipe (empty for plain training); seeds are
# replicates trained together inside the cell's job
CELL = cells.TEMPLATE


wildcard_constraints:
    bs=cells.WILDCARDS["bs"],
    lr=cells.WILDCARDS["lr"],
    recipe=cells.WILDCARDS["recipe"],


def train_priority(wildcards):
    """Long runs and the cells the equal-updates checkpoint reads train first."""
    return study.train_priority(config, CELL.format(**wildcards))


def cell_optimizer_settings(wildcards):
    """The settings of a cell's own optimizer: changing another optimizer's retrains nothing."""
    optimizer = cells.Recipe.parse(wildcards.recipe).optimizer
    return study.optimizer_settings(config, optimizer)


def cell_files():
    """The train rule's outputs: a cell's files in results/runs/<cell>/ (batchlab.cells.FILES),
    its metrics also shown in Snakemake's own report."""
    out = {name: f"results/runs/{CELL}/{file}" for name, file in cells.FILES.items()}
    out["metrics"] = report(
        out["metrics"], caption="../report/cell.rst", category="Training cells"
    )
    return out


def cell_output(name, cell):
    """One training output (losses, epochs, probes or metrics) of one cell."""
    return getattr(rules.train.output, name).format(
        bs=cell.batch_size, lr=cell.lr_text, recipe=cell.recipe.suffix()
    )


def cell_outputs(name):
    """One training output of every cell of the study's design."""
    return [cell_output(name, c) for c in study.design(config)]


def every_cell(name):
    """One training output of every cell: the design's, and the equal-updates runs' once the
    checkpoint has chosen their lr (equal_updates.smk)."""
    later = equal_updates_outputs(name)

    def outputs(wildcards):
        return cell_outputs(name) + later(wildcards)

    return outputs


def report_targets():
    """The report, and every cell the design names: listed here too, so that a dry run plans
    them all before the equal-updates checkpoint has run (aggregate's inputs wait for it).
    """
    return [
        rules.report.output.html,
        rules.aggregate.output.metrics,
        *cell_outputs("metrics"),
    ]


def summary_outputs():
    """The aggregate rule's outputs: every file of the summary registry (batchlab.summary),
    the cells' table also shown in Snakemake's own report."""
    out = summary.outputs()
    out["cells_csv"] = report(
        out["cells_csv"], caption="../report/cells.rst", category="Summary"
    )
    return out


def summary_inputs():
    """The report rule's inputs: the summary files the report reads, by name."""
    return {
        name: getattr(rules.aggregate.output, name) for name in summary.REPORT_INPUTS
    }


def planned_jobs():
    """(cores, cells to train, whether the checkpoint runs later): the one place that reads
    Snakemake's internals (None and True where this Snakemake has none of them)."""
    from snakemake.exceptions import WorkflowError

    try:
        cores = workflow.cores
    except (
        WorkflowError
    ):  # no --cores (a cluster's --jobs): status counts what runs at once
        cores = None
    try:
        jobs = list(workflow.dag.needrun_jobs())
    except AttributeError:  # another Snakemake: status reads the seeds each cell holds
        return cores, None, True
    to_run = sorted(
        CELL.format(**job.wildcards_dict) for job in jobs if job.rule.name == "train"
    )
    return cores, to_run, any(job.rule.name == "select_lr" for job in jobs)


def write_study_manifest():
    """logs/manifest.json: the cells this run was started with, and those it (re)trains, for
    `make status` and `make peek` (batchlab.follow.manifest)."""
    from batchlab.follow.manifest import write_manifest

    cores, to_run, later_rerun = planned_jobs()
    write_manifest(
        Path.cwd(),
        config,
        cores=cores,
        to_run=to_run,
        later_rerun=later_rerun,
        gpu_jobs=TRAIN_GPUS > 0,
    )


def name_failed_jobs(log):
    """At the end of a failed run, every failed job and its reason, together. Snakemake hands
    over its log file's path (a list of them in some versions)."""
    from batchlab.follow.failures import summary

    paths = [Path(p) for p in (log if isinstance(log, (list, tuple)) else [log]) if p]
    text = "".join(p.read_text(errors="replace") for p in paths if p.is_file())
    message = summary(text, Path.cwd())
    if message:
        print(message, file=sys.stderr)


def gradient_tables():
    """The gradient probe's table where the study runs it (an input of aggregate), else none."""
    return (
        [rules.gradient_probe.output.table]
        if config["gradient_probe"]["enabled"]
        else []
    )
