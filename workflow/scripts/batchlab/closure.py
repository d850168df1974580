"""Which package modules a module imports, directly or through others (read from the source,
never by importing it): the code a Snakemake rule's results depend on."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def imported_modules(source: str) -> set[str]:
    """Names of the batchlab modules imported by this source (`batchlab` itself included)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "batchlab":
            parts = node.module.split(".")
            if len(parts) == 1:  # from batchlab import x: x may be a module or a name
                out |= {a.name for a in node.names if (PACKAGE_DIR / f"{a.name}.py").exists()}
                out.add("__init__")
            else:
                out.add(parts[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("batchlab.")}
    return out


def closure(*entries: str) -> list[str]:
    """The package modules that the entry modules (names like 'train_job') need, sorted."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += sorted(imported_modules((PACKAGE_DIR / f"{name}.py").read_text()) - seen)
    return sorted(seen)


def module_paths(*entries: str) -> list[Path]:
    return [PACKAGE_DIR / f"{name}.py" for name in closure(*entries)]


def script_closure(script: str | Path) -> list[Path]:
    """The package modules a workflow script (an adapter outside the package) needs."""
    return module_paths(*sorted(imported_modules(Path(script).read_text())))


def source_hash(paths: list[Path]) -> str:
    """A hash of these files' contents: the code a result was computed with."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
