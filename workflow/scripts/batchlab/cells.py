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
    _momentum with optimizers.momentum.momentum = 0.9), _bn the BatchNorm variant of
    train.model, _w{E} a linear lr warm-up over E epochs, _k{K} Solution 2 with K slices per
    batch, _a{M} gradient accumulation over micro-batches of M images, _g{G} ghost BatchNorm
    over virtual batches of G images, _r{B0}[d{K}][s] a batch-size ramp from B0 doubling
    every K epochs (1 if left out), the lr held or (s) scaled with the batch, _e{E} E epochs
    instead of train.epochs (the equal-updates runs)."""

    optimizer: str = "sgd"
    bn: bool = False
    warmup_epochs: float = 0.0
    splits: int = 1
    micro_batch: int = 0
    ghost_batch: int = 0
    ramp_from: int = 0
    ramp_every: int = 1
    ramp_scaled: bool = False
    epochs: int | None = None  # None: train.epochs

    def suffix(self) -> str:
        out = f"_{self.optimizer}" if self.optimizer != "sgd" else ""
        if self.bn:
            out += "_bn"
        if self.warmup_epochs:
            out += f"_w{format_lr(self.warmup_epochs)}"
        if self.splits > 1:
            out += f"_k{int(self.splits)}"
        if self.micro_batch:
            out += f"_a{int(self.micro_batch)}"
        if self.ghost_batch:
            out += f"_g{int(self.ghost_batch)}"
        if self.ramp_from:
            out += f"_r{int(self.ramp_from)}" + (f"d{int(self.ramp_every)}" if self.ramp_every != 1 else "")
            out += "s" if self.ramp_scaled else ""
        if self.epochs is not None:
            out += f"_e{int(self.epochs)}"
        return out

    @classmethod
    def parse(cls, text: str) -> Recipe:
        match = RECIPE_PATTERN.fullmatch(text or "")
        if match is None:
            raise ConfigError(
                f"cell recipe {text!r} is not understood; it is made of _<optimizer> ({', '.join(OPTIMIZERS[1:])}),"
                " _bn, _w<epochs>, _k<slices>, _a<micro-batch>, _g<virtual batch>, _r<first batch>[d<epochs>][s],"
                " _e<epochs>, in this order"
            )
        return cls(
            optimizer=match["o"] or "sgd",
            bn=bool(match["bn"]),
            warmup_epochs=float(match["w"]) if match["w"] else 0.0,
            splits=int(match["k"]) if match["k"] else 1,
            micro_batch=int(match["a"]) if match["a"] else 0,
            ghost_batch=int(match["g"]) if match["g"] else 0,
            ramp_from=int(match["r"]) if match["r"] else 0,
            ramp_every=int(match["rd"]) if match["rd"] else 1,
            ramp_scaled=bool(match["rs"]),
            epochs=int(match["e"]) if match["e"] else None,
        )


NUMBER = r"[0-9]+(?:\.[0-9]+)?"
# every optimizer but plain SGD (the unnamed default), the longer names first
NAMED = "|".join(sorted(OPTIMIZERS[1:], key=len, reverse=True))
RECIPE_PATTERN = re.compile(
    rf"(?:_(?P<o>{NAMED}))?(?P<bn>_bn)?(?:_w(?P<w>{NUMBER}))?(?:_k(?P<k>[0-9]+))?(?:_a(?P<a>[1-9][0-9]*))?"
    r"(?:_g(?P<g>[1-9][0-9]*))?(?:_r(?P<r>[1-9][0-9]*)(?:d(?P<rd>[1-9][0-9]*))?(?P<rs>s)?)?(?:_e(?P<e>[1-9][0-9]*))?"
)
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
