"""The package stays plain: no snakemake, no params.yaml; the environments agree."""

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

import batchlab

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "workflow/scripts/batchlab"


def test_package_never_imports_snakemake_or_reads_params_yaml():
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            assert not any(n.split(".")[0] == "snakemake" for n in names), path
        docstrings = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(n)
        }
        literals = [
            n.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
        ]
        assert not any("params.yaml" in s for s in literals), path
    code = (
        "import sys\n"
        + "".join(f"import batchlab.{m}\n" for m in modules)
        + ("bad = sorted(m for m in sys.modules if m.split('.')[0] == 'snakemake')\nprint(bad)\n")
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO / "workflow/scripts",
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"


def pins(lines):
    return {
        m.group(1).lower(): m.group(2)
        for line in lines
        if (m := re.match(r"\s*-?\s*([A-Za-z0-9_.-]+)==([^\s#]+)", line))
    }


def test_conda_env_pins_the_same_versions_as_the_venv():
    venv = pins((REPO / "envs/requirements.txt").read_text().splitlines())
    conda = yaml.safe_load((REPO / "envs/batchlab.yaml").read_text())
    pip_list = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert pins(pip_list) == venv
    assert venv["torch"] == "2.14.1" and venv["torchvision"] == "0.29.1"


def test_versions_agree():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["version"] == batchlab.__version__


def test_mlp_flop_count():
    from batchlab.train.models import build_model, count_parameters, train_step_flops

    assert count_parameters(build_model("mlp")) == 784 * 256 + 256 + 256 * 10 + 10
    # forward 2*b*203264, backward twice the big layer's and both weight gradients
    assert train_step_flops("mlp", 1) == 2 * 2 * 203264 + 2 * 2560
    assert train_step_flops("mlp", 512) == 512 * train_step_flops("mlp", 1)
