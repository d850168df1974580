"""Which package modules a module imports, directly or through others (read from the source,
never by importing it): the code a Snakemake rule's results depend on."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def module_file(name: str) -> Path:
    """The source of a package module named relative to the package ('train.job',
    'report.page'; a subpackage by its __init__)."""
    path = PACKAGE_DIR.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _exists(name: str) -> bool:
    path = PACKAGE_DIR.joinpath(*name.split("."))
    return path.is_dir() or path.with_suffix(".py").exists()


def _with_parents(name: str) -> set[str]:
    """A module and the subpackages above it, whose __init__ runs when it is imported."""
    parts = name.split(".")
    return {".".join(parts[: i + 1]) for i in range(len(parts))}


def imported_modules(source: str, with_packages: bool = True) -> set[str]:
    """Names of the batchlab modules imported by this source (`batchlab` itself as __init__),
    relative to the package: 'aggregate', 'report', 'report.page'. with_packages: the
    subpackages above each too, whose __init__ runs (what a rule's code is); without, only the
    modules named (`from batchlab.report import charts` is report.charts: the import graph)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "batchlab":
            base = ".".join(node.module.split(".")[1:])
            # from batchlab(.sub) import x: x may be a module or a name
            subs = {f"{base}.{a.name}".lstrip(".") for a in node.names if _exists(f"{base}.{a.name}".lstrip("."))}
            if with_packages:
                out |= (_with_parents(base) if base else {"__init__"}) | subs
            else:
                out |= subs or {base or "__init__"}
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("batchlab."):
                    name = a.name.split(".", 1)[1]
                    out |= _with_parents(name) if with_packages else {name}
    return out


def closure(*entries: str) -> list[str]:
    """The package modules that the entry modules (names like 'train.job') need, sorted."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += sorted(imported_modules(module_file(name).read_text()) - seen)
    return sorted(seen)


def module_paths(*entries: str) -> list[Path]:
    return [module_file(name) for name in closure(*entries)]


def script_closure(script: str | Path) -> list[Path]:
    """The package modules a workflow script (an adapter outside the package) needs."""
    return module_paths(*sorted(imported_modules(Path(script).read_text())))


# what a training job's results depend on: the trainer and the data it reads, nothing of the
# design, the config's messages, the shared edges (io, cli) or the stages after it
TRAINER_STAGES = ("train", "data")


def module_name(path: Path) -> str:
    """A module's name relative to the package: 'train.job', 'report' (its __init__)."""
    parts = Path(path).resolve().relative_to(PACKAGE_DIR).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def in_stages(paths: list[Path], stages: tuple[str, ...]) -> list[Path]:
    """The modules of these subpackages (their __init__ included) among paths."""
    return [p for p in paths if module_name(p).split(".")[0] in stages]


def trainer_code(script: str | Path | None = None) -> list[Path]:
    """A training job's code key: the train/ and data/ modules it imports (from the train
    rule's script, or from batchlab.train.job itself)."""
    paths = script_closure(script) if script is not None else module_paths("train.job")
    return in_stages(paths, TRAINER_STAGES)


def source_hash(paths: list[Path]) -> str:
    """A hash of these files' contents: the code a result was computed with."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(Path(path).resolve().relative_to(PACKAGE_DIR).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
