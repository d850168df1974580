"""The house's layout holds: stages import downwards only, no import cycle, a training job's code
key is the trainer alone, and every list that dvc.yaml or the schema repeats agrees with the one
in the package."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from batchlab import summary
from batchlab.closure import PACKAGE_DIR, imported_modules, module_name, script_closure, trainer_code
from batchlab.train.settings import OPTIMIZERS, SETTINGS

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "workflow/scripts"
STAGES = ("data", "train", "analysis", "report", "follow", "bench")
# a stage may import the shared top and the stages listed here, never one above it
ALLOWED = {
    "data": set(),
    "train": {"data"},
    "analysis": {"train.settings"},
    "report": {"analysis", "train.settings"},
    "follow": {"analysis", "report", "train.settings"},
    "bench": {"analysis", "train", "data"},
}


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE_DIR.rglob("*.py")}


def direct_imports(path: Path) -> set[str]:
    """The package modules a file imports by name, anywhere in it (type-only imports too)."""
    return imported_modules(path.read_text(), with_packages=False)


def stage(name: str) -> str:
    return name.split(".")[0] if name.split(".")[0] in STAGES else "top"


def test_stages_import_only_what_lies_below_them():
    wrong = []
    for name, path in modules().items():
        here = stage(name)
        for target in direct_imports(path):
            there = stage(target)
            if there in ("top", here):
                continue
            if name == "__main__":
                ok = there == "follow"  # the command (python -m batchlab status | peek)
            elif here == "top":
                ok = target == "train.settings"  # the cells' names read the optimizers' names
            else:
                ok = there in ALLOWED[here] or target in ALLOWED[here]
            if not ok:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_an_adapter_or_snakemake():
    adapters = {p.stem for p in SCRIPTS.glob("*.py")}
    for path in PACKAGE_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not names & (adapters | {"snakemake"}), f"{path} imports {sorted(names & (adapters | {'snakemake'}))}"


def test_there_is_no_import_cycle_not_even_a_type_only_one():
    graph = {name: direct_imports(path) for name, path in modules().items()}
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_subpackages_init_files_are_empty_so_code_inputs_stay_narrow():
    for sub in STAGES:
        if sub != "report":  # the report's __init__ lists its sections in order
            assert (PACKAGE_DIR / sub / "__init__.py").read_text().strip() == ""


def test_a_training_jobs_code_key_is_the_trainer_and_the_data_alone():
    names = {module_name(p) for p in trainer_code(SCRIPTS / "train.py")}
    assert {"train.job", "train.loop", "train.run", "train.steps", "data.tensors"} <= names
    assert {n.split(".")[0] for n in names} <= {"train", "data"}
    # what the job computes by itself when the rule hands it nothing is the same key
    assert trainer_code() == trainer_code(SCRIPTS / "train.py")


def _trainer_key(scripts: Path) -> str:
    code = (
        "from batchlab.closure import source_hash, trainer_code\n"
        f"print(source_hash(trainer_code({str(scripts / 'train.py')!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=scripts, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is no longer in {path}"
    path.write_text(text.replace(old, new, 1))


def test_rewording_the_design_or_a_config_message_retrains_nothing(tmp_path):
    scripts = tmp_path / "scripts"
    shutil.copytree(SCRIPTS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    before = _trainer_key(scripts)
    _edit(scripts / "batchlab/config.py", "is not a finite number", "must be a finite number")
    _edit(scripts / "batchlab/study.py", '"momentum {m:g}: {label}"', '"momentum = {m:g}: {label}"')
    _edit(scripts / "batchlab/cells.py", "is not a cell name", "is no cell name")
    assert _trainer_key(scripts) == before
    # and the key can change: a trainer's module edited retrains
    _edit(scripts / "batchlab/train/steps.py", '"""', '"""Edited. ', )
    assert _trainer_key(scripts) != before


def _dvc() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_dvc_yaml_lists_the_data_stage_code_as_its_rules_import_it():
    deps = set(_dvc()["stages"]["data"]["deps"])
    code = {p.relative_to(ROOT).as_posix() for s in ("fetch.py", "prepare.py") for p in script_closure(SCRIPTS / s)}
    listed = {d for d in deps if d.startswith("workflow/scripts/batchlab/")}
    assert listed == code
    assert {"workflow/rules/data.smk", "workflow/scripts/fetch.py", "workflow/scripts/prepare.py"} <= deps


def test_dvc_yaml_tracks_every_summary_file_as_the_registry_says():
    outs, metrics = {}, {}
    study = _dvc()["stages"]["study"]
    for entry in study["outs"]:
        path, opts = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
        outs[path] = opts
    for entry in study["metrics"]:
        path, opts = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
        metrics[path] = opts
    in_summary = {p for p in [*outs, *metrics] if p.startswith(summary.FOLDER + "/")} - {f"{summary.FOLDER}/equal_updates.json"}
    assert in_summary == {f.path for f in summary.FILES}
    for f in summary.FILES:
        if f.dvc == "metric":
            assert metrics[f.path].get("cache") is False
        else:
            assert outs[f.path].get("cache", True) is (f.dvc == "out"), f.path


def test_the_schema_names_the_registrys_optimizers_and_their_settings():
    schema = yaml.safe_load((ROOT / "workflow/schemas/params.schema.yaml").read_text())
    props = schema["properties"]
    assert tuple(props["optimizers"]["properties"]) == OPTIMIZERS
    for name, group in props["optimizers"]["properties"].items():
        assert set(group["properties"]) - {"learning_rates"} == set(SETTINGS[name]), name
    assert tuple(props["grid"]["properties"]["optimizers"]["items"]["enum"]) == OPTIMIZERS
    assert tuple(props["remedies"]["properties"]["optimizers"]["items"]["enum"]) == OPTIMIZERS[1:]  # SGD: the grid's


def test_the_schema_names_the_packages_models():
    from batchlab.train.models import MODELS

    schema = yaml.safe_load((ROOT / "workflow/schemas/params.schema.yaml").read_text())
    assert tuple(schema["properties"]["train"]["properties"]["model"]["enum"]) == MODELS


def test_the_tables_and_the_reports_inputs_follow_the_summary_registry():
    from dataclasses import fields

    from batchlab.analysis.tables import Tables
    from batchlab.report.inputs import Inputs

    assert tuple(f.name for f in fields(Tables)) == summary.FIELDS
    # the report reads each file into the field of its name, as Tables holds it
    assert set(summary.REPORT_INPUTS) <= set(summary.FIELDS) & {f.name for f in fields(Inputs)}


def test_what_the_analysis_knows_of_each_optimizer_covers_the_registrys():
    from batchlab.analysis.claims_optimizers import EXPECTED

    assert tuple(EXPECTED) == OPTIMIZERS
