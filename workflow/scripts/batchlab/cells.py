"""The cells' names and recipes, written once.

A *cell* is a (batch size, learning rate) pair plus its *recipe* (how its training deviates from
the plain training of `train`: its optimizer, a warm-up, Solution 2's slices, its epochs). Its
folder and its Snakemake job are named `bs{B}_lr{LR}{RECIPE}` (TEMPLATE); `Cell.parse()` reads a
name back. Seeds are replicates trained together inside the cell's job, never part of a name.
The roles a cell plays in the study's comparisons are the design's (batchlab.study).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from batchlab import ConfigError
from batchlab.train.settings import OPTIMIZERS

# the one template of a cell's name: the rules' wildcards, the job, the follow tools
TEMPLATE = "bs{bs}_lr{lr}{recipe}"
# a cell's outputs in its folder results/runs/<cell>/, by the train rule's output names; aggregate
# reads them in this order (batchlab.analysis.tables.study_tables)
FILES = {"metrics": "metrics.json", "epochs": "epochs.parquet", "losses": "losses.parquet", "probes": "probes.parquet"}


def format_lr(lr: float) -> str:
    """The canonical spelling of a learning rate in cell names: positional, no trailing zeros."""
    text = f"{float(lr):.10f}".rstrip("0").rstrip(".")
    if float(text) != float(lr):
        text = repr(float(lr))
    return text


def cell_name(batch_size: int, lr: float | str, recipe: str = "") -> str:
    """A cell's name from its parts (an lr given as text is taken as spelled)."""
    return TEMPLATE.format(bs=int(batch_size), lr=lr if isinstance(lr, str) else format_lr(lr), recipe=recipe)


@dataclass(frozen=True)
class Recipe:
    """How a cell's training deviates from `train`: _<optimizer> an optimizer other than plain
    SGD (its settings from the config group `optimizers`: one way to say "momentum 0.9" is
    _momentum with optimizers.momentum.momentum = 0.9), _w{E} a linear lr warm-up over E
    epochs, _k{K} Solution 2 with K slices per batch, _e{E} E epochs instead of train.epochs
    (the equal-updates runs)."""

    optimizer: str = "sgd"
    warmup_epochs: float = 0.0
    splits: int = 1
    epochs: int | None = None  # None: train.epochs

    def suffix(self) -> str:
        out = f"_{self.optimizer}" if self.optimizer != "sgd" else ""
        if self.warmup_epochs:
            out += f"_w{format_lr(self.warmup_epochs)}"
        if self.splits > 1:
            out += f"_k{int(self.splits)}"
        if self.epochs is not None:
            out += f"_e{int(self.epochs)}"
        return out

    @classmethod
    def parse(cls, text: str) -> Recipe:
        match = RECIPE_PATTERN.fullmatch(text or "")
        if match is None:
            raise ConfigError(
                f"cell recipe {text!r} is not understood; it is made of _<optimizer> ({', '.join(OPTIMIZERS[1:])}),"
                " _w<epochs>, _k<slices>, _e<epochs>"
            )
        return cls(
            optimizer=match["o"] or "sgd",
            warmup_epochs=float(match["w"]) if match["w"] else 0.0,
            splits=int(match["k"]) if match["k"] else 1,
            epochs=int(match["e"]) if match["e"] else None,
        )


NUMBER = r"[0-9]+(?:\.[0-9]+)?"
# every optimizer but plain SGD (the unnamed default), the longer names first
NAMED = "|".join(sorted(OPTIMIZERS[1:], key=len, reverse=True))
RECIPE_PATTERN = re.compile(rf"(?:_(?P<o>{NAMED}))?(?:_w(?P<w>{NUMBER}))?(?:_k(?P<k>[0-9]+))?(?:_e(?P<e>[1-9][0-9]*))?")
# Snakemake's wildcard constraints, from the same patterns
WILDCARDS = {"bs": "[1-9][0-9]*", "lr": NUMBER, "recipe": re.sub(r"\?P<\w+>", "?:", RECIPE_PATTERN.pattern)}
NAME_PATTERN = re.compile(TEMPLATE.format(**{k: f"(?P<{k}>{v if k != 'recipe' else '.*'})" for k, v in WILDCARDS.items()}))


@dataclass(frozen=True)
class Role:
    """Which comparison a cell belongs to (`group`) and as what (`variant`)."""

    group: str
    variant: str


@dataclass(frozen=True)
class Cell:
    batch_size: int
    lr: float
    recipe: Recipe = Recipe()
    roles: tuple[Role, ...] = field(default=(), compare=False)

    def name(self) -> str:
        return cell_name(self.batch_size, self.lr, self.recipe.suffix())

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


def job_fields(name: str) -> dict:
    """What a training job is told of its cell, parsed here so that the trainer never reads a
    cell's name: batch size, lr, the recipe's suffix and its fields (batchlab.train.job.Job)."""
    cell = Cell.parse(name)
    return {
        "cell": name,
        "batch_size": cell.batch_size,
        "lr": cell.lr,
        "recipe": cell.recipe.suffix(),
        "recipe_fields": asdict(cell.recipe),
    }
