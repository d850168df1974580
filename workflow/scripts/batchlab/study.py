"""The study's design, written down once: which cells it trains, what each is called, and the
role each plays in the study's comparisons.

A *cell* is a (batch size, learning rate) pair plus its *recipe* (how its training deviates from
the plain training of `train`: a warm-up, a momentum, Solution 2's slices). Its folder and its
Snakemake job are named by `Cell.name()`; `Cell.parse()` reads a name back. Seeds are replicates
trained together inside the cell's job, never part of a cell's name.

A cell's *roles* say which comparison (`group`: grid, remedies, solution2) it belongs to and as
what (`variant`: "sqrt scaling + 1-epoch warm-up", "Solution 2, k = 8", ...). One cell can play
several roles (the remedies' "none" scaling at a grid batch size is a grid cell too). Roles are a
property of the study, not of the training run: they are attached when the results are
aggregated, so adding a comparison never retrains a cell that is already done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from batchlab.config import ConfigError, format_lr, round_lr, scaled_lr


@dataclass(frozen=True)
class Recipe:
    """How a cell's training deviates from `train`: _w{E} a linear lr warm-up over E epochs,
    _m{M} momentum M instead of train.momentum, _k{K} Solution 2 with K slices per batch."""

    warmup_epochs: float = 0.0
    momentum: float | None = None  # None: train.momentum
    splits: int = 1

    def suffix(self) -> str:
        out = ""
        if self.warmup_epochs:
            out += f"_w{format_lr(self.warmup_epochs)}"
        if self.momentum is not None:
            out += f"_m{format_lr(self.momentum)}"
        if self.splits > 1:
            out += f"_k{int(self.splits)}"
        return out

    @classmethod
    def parse(cls, text: str) -> Recipe:
        match = RECIPE_PATTERN.fullmatch(text or "")
        if match is None:
            raise ConfigError(
                f"cell recipe {text!r} is not understood; it is made of _w<epochs>, _m<momentum>, _k<slices>"
            )
        return cls(
            warmup_epochs=float(match["w"]) if match["w"] else 0.0,
            momentum=float(match["m"]) if match["m"] else None,
            splits=int(match["k"]) if match["k"] else 1,
        )


NUMBER = r"[0-9]+(?:\.[0-9]+)?"
RECIPE_PATTERN = re.compile(rf"(?:_w(?P<w>{NUMBER}))?(?:_m(?P<m>{NUMBER}))?(?:_k(?P<k>[0-9]+))?")
NAME_PATTERN = re.compile(rf"bs(?P<bs>[1-9][0-9]*)_lr(?P<lr>{NUMBER})(?P<recipe>.*)")
# Snakemake's wildcard constraints, from the same patterns
WILDCARDS = {"bs": "[1-9][0-9]*", "lr": NUMBER, "recipe": re.sub(r"\?P<\w+>", "?:", RECIPE_PATTERN.pattern)}


@dataclass(frozen=True)
class Role:
    group: str
    variant: str


@dataclass(frozen=True)
class Cell:
    batch_size: int
    lr: float
    recipe: Recipe = Recipe()
    roles: tuple[Role, ...] = field(default=(), compare=False)

    def name(self) -> str:
        return f"bs{int(self.batch_size)}_lr{format_lr(self.lr)}{self.recipe.suffix()}"

    @classmethod
    def parse(cls, name: str) -> Cell:
        match = NAME_PATTERN.fullmatch(name)
        if match is None:
            raise ConfigError(f"{name!r} is not a cell name (bs<batch size>_lr<learning rate><recipe>)")
        return cls(int(match["bs"]), float(match["lr"]), Recipe.parse(match["recipe"]))

    @property
    def lr_text(self) -> str:
        return format_lr(self.lr)

    @property
    def group(self) -> str:
        return self.roles[0].group if self.roles else "none"

    @property
    def variant(self) -> str:
        return self.roles[0].variant if self.roles else ""

    def in_group(self, group: str) -> bool:
        return any(r.group == group for r in self.roles)


def remedy_cells(config: dict) -> list[Cell]:
    """At each huge batch size, each lr scaling rule from the reference, without and with warm-up."""
    rem = config.get("remedies") or {}
    if not rem.get("enabled"):
        return []
    out = []
    for b in sorted(rem["batch_sizes"]):
        for rule in rem["scaling"]:
            lr = scaled_lr(rem["reference_lr"], rem["reference_batch_size"], b, rule)
            for warm in (0.0, rem["warmup_epochs"]):
                label = f"{rule} scaling" + (f" + {warm:g}-epoch warm-up" if warm else "")
                out.append(Cell(b, lr, Recipe(warmup_epochs=warm), (Role("remedies", label),)))
    return out


def solution2_cells(config: dict) -> list[Cell]:
    """Per momentum: plain training at lr and at k x lr, and Solution 2 with k slices at lr."""
    sol = config.get("solution2") or {}
    if not sol.get("enabled"):
        return []
    b, k, lr = sol["batch_size"], sol["splits"], sol["lr"]
    klr = round_lr(k * lr)
    window = sorted(set(sol.get("learning_rates") or []) - {lr})
    out = []
    for m in sol["momentum"]:
        mom = None if m == config["train"]["momentum"] else m
        for label, lr_i, splits in (
            (f"plain, lr {lr:g}", lr, 1),
            (f"plain, lr {klr:g} (k × lr)", klr, 1),
            (f"Solution 2, k = {k}, lr {lr:g}", lr, k),
            *((f"Solution 2, k = {k}, lr {w:g}", w, k) for w in window),
        ):
            role = Role("solution2", f"momentum {m:g}: {label}")
            out.append(Cell(b, lr_i, Recipe(momentum=mom, splits=splits), (role,)))
    return out


def design(config: dict) -> list[Cell]:
    """Every cell of the study once, in a stable order (the grid, then the remedies, then
    Solution 2), each with every role it plays."""
    planned = [
        Cell(b, lr, Recipe(), (Role("grid", "plain"),))
        for b in sorted(config["grid"]["batch_sizes"])
        for lr in grid_lrs(config, b)
    ]
    planned += remedy_cells(config) + solution2_cells(config)
    merged: dict[str, Cell] = {}
    for cell in planned:
        name = cell.name()
        if name in merged:
            merged[name] = replace(merged[name], roles=merged[name].roles + cell.roles)
        else:
            merged[name] = cell
    return list(merged.values())


def grid_lrs(config: dict, batch_size: int) -> list[float]:
    """The grid's learning rates at one batch size: its own window where grid.learning_rates
    gives one per batch size, else the one list."""
    lrs = config["grid"]["learning_rates"]
    return sorted(lrs[batch_size] if isinstance(lrs, dict) else lrs)


def seeds(config: dict) -> list[int]:
    return sorted(config["grid"]["seeds"])


def roles_table(config: dict) -> list[dict]:
    """One row per (cell, role): what aggregate joins onto the results."""
    return [
        {"cell": c.name(), "group": r.group, "variant": r.variant} for c in design(config) for r in c.roles
    ]


def solution2_pairs(config: dict) -> list[tuple[str, str, float]]:
    """(Solution 2 cell, plain cell at k x lr, momentum): the pairs equivalent for plain SGD."""
    sol = config.get("solution2") or {}
    if not sol.get("enabled"):
        return []
    k, b = sol["splits"], sol["batch_size"]
    out = []
    for m in sol["momentum"]:
        mom = None if m == config["train"]["momentum"] else m
        split = Cell(b, sol["lr"], Recipe(momentum=mom, splits=k))
        plain = Cell(b, round_lr(k * sol["lr"]), Recipe(momentum=mom))
        out.append((split.name(), plain.name(), float(m)))
    return out

