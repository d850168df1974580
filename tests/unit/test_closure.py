"""Each rule's code inputs are the package modules its script really imports."""

import subprocess
import sys
from pathlib import Path

import pytest

from batchlab.closure import closure, imported_modules, module_name, script_closure

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow/scripts"


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("*.py")))
def test_a_scripts_code_inputs_are_every_package_module_it_imports(script):
    entries = sorted(imported_modules((SCRIPTS / script).read_text()) - {"__init__"})
    code = (
        "import sys\n"
        + "".join(f"import batchlab.{m}\n" for m in entries)
        + "print(' '.join(sorted(m.split('.', 1)[1] if '.' in m else '__init__' for m in sys.modules"
        " if m.split('.')[0] == 'batchlab')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=SCRIPTS, capture_output=True, text=True, check=True)
    imported = set(done.stdout.split())
    declared = set(closure(*entries)) | {"__init__"}
    assert imported <= declared, f"{script} imports {sorted(imported - declared)} but does not declare them"


def test_the_closure_follows_imports_through_other_modules():
    closure = {module_name(p) for p in script_closure(SCRIPTS / "train.py")}
    # train.py imports the job (and the cells' names, cli); the trainer, its steps and the data come through it
    assert {"train.job", "train.loop", "train.steps", "train.ensemble", "data.tensors", "io"} <= closure
    assert not {m for m in closure if m.split(".")[0] in ("report", "analysis", "follow")}
    # the report is a package: its __init__ and every section module it lists count
    report = {p.relative_to(SCRIPTS / "batchlab").as_posix() for p in script_closure(SCRIPTS / "report.py")}
    assert {"report/__init__.py", "report/page.py", "report/answers.py"} <= report
    # an import inside a function counts too, and a subpackage's module brings its package
    source = "def f():\n    from batchlab.report import charts\n    import batchlab.report.fmt\n"
    assert imported_modules(source) == {"report", "report.charts", "report.fmt"}


def test_a_training_job_keys_its_stored_seeds_by_the_same_code_as_the_rule():
    # the train rule hands its code inputs to the job (no parsing at start-up); a job built
    # without them (tests, other callers) reads the same modules itself, so both key the same
    from batchlab.closure import source_hash, trainer_code

    rule_inputs = trainer_code(SCRIPTS / "train.py")
    assert sorted(p.name for p in rule_inputs) == sorted(p.name for p in trainer_code())
    assert source_hash(rule_inputs) == source_hash(trainer_code())
