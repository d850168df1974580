"""The study's design, written down once: which cells it trains (their names and recipes are
batchlab.cells), the role each plays in the study's comparisons, and what each stage's rule
hands its code from the validated config.

A cell's *roles* say which comparison (`group`: grid, optimizers, remedies, solution2,
equal_updates, late_blowup) it belongs to and as
what (`variant`: "sqrt scaling + 1-epoch warm-up", "Solution 2, k = 8", ...). One cell can play
several roles (the remedies' "none" scaling at a grid batch size is a grid cell too). Roles are a
property of the study, not of the training run: they are attached when the results are
aggregated, so adding a comparison never retrains a cell that is already done.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from batchlab.cells import Cell, Recipe, Role
from batchlab.config import MNIST_TRAIN, ConfigError, round_lr, scaled_lr
from batchlab.train.settings import LABELS, SETTINGS

# trained plainly, these are the standard optimizers a huge-batch remedy must beat when tuned alike
STANDARD = ("sgd", "momentum", "nesterov", "adam", "adamw")


@dataclass(frozen=True)
class Arm:
    """One entry of the huge-batch league at one batch size: its name, how its lr was found
    ("tuned" over a window, or "rule": one lr scaled from the reference), whether it is a
    standard optimizer trained plainly, and its cells (one per lr)."""

    name: str
    kind: str
    standard: bool
    cells: tuple[Cell, ...]


def league_arms(config: dict, batch_size: int) -> list[Arm]:
    """The league at one huge batch size (remedies.batch_sizes): tuned plain SGD (the grid's own
    cells there), each lr scaling rule from the reference without and with warm-up (untuned),
    each optimizer of remedies.optimizers and each recipe of remedies.recipes over its own
    window. The tuned arms' windows should hold the same number of lrs: an equal tuning budget."""
    rem, b = config.get("remedies") or {}, batch_size
    if not rem.get("enabled"):
        return []
    arms = []
    if b in config["grid"]["batch_sizes"]:
        sgd = primary_optimizer(config)
        arms.append(Arm(LABELS[sgd], "tuned", sgd in STANDARD, tuple(Cell(b, lr, Recipe(optimizer=sgd)) for lr in grid_lrs(config, b))))
    for rule in rem["scaling"]:
        lr = scaled_lr(rem["reference_lr"], rem["reference_batch_size"], b, rule)
        for warm in (0.0, rem["warmup_epochs"]):
            label = f"{rule} scaling" + (f" + {warm:g}-epoch warm-up" if warm else "")
            arms.append(Arm(label, "rule", False, (Cell(b, lr, Recipe(warmup_epochs=warm), (Role("remedies", label),)),)))
    for name in rem.get("optimizers") or []:
        cells = tuple(Cell(b, lr, Recipe(optimizer=name), (Role("remedies", f"{LABELS[name]}, lr {lr:g}"),)) for lr in optimizer_lrs(config, name, b))
        arms.append(Arm(LABELS[name], "tuned", name in STANDARD, cells))
    for label, arm in (rem.get("recipes") or {}).items():
        recipe = Recipe.parse(arm["recipe"])
        cells = tuple(Cell(b, lr, recipe, (Role("remedies", f"{label}, lr {lr:g}"),)) for lr in sorted(arm["learning_rates"][b]))
        arms.append(Arm(label, "tuned", False, cells))
    return arms


def remedy_cells(config: dict) -> list[Cell]:
    """Every league arm's cells but tuned plain SGD's (the grid's), at each huge batch size; and
    where remedies.micro_batch is set, plain SGD at the middle of the grid's window with its
    gradient accumulated over micro-batches: the same update, for what it costs and saves."""
    rem = config.get("remedies") or {}
    if not rem.get("enabled"):
        return []
    out = []
    for b in sorted(rem["batch_sizes"]):
        out += [c for arm in league_arms(config, b) for c in arm.cells if c.roles]  # SGD's: the grid's
        m = rem.get("micro_batch") or 0
        if m and b in config["grid"]["batch_sizes"]:
            lrs = grid_lrs(config, b)
            lr = lrs[(len(lrs) - 1) // 2]
            out.append(Cell(b, lr, Recipe(optimizer=primary_optimizer(config), micro_batch=m), (Role("accumulation", f"micro-batches of {m}"),)))
    return out


def momentum_of(config: dict, optimizer: str) -> float:
    """The heavy-ball momentum an optimizer uses (0 for plain SGD)."""
    return float(optimizer_settings(config, optimizer).get("momentum", 0.0)) if optimizer != "sgd" else 0.0


def solution2_cells(config: dict) -> list[Cell]:
    """Per optimizer (plain and momentum SGD): plain training at lr and at k x lr, and Solution 2
    with k slices at lr and over its window."""
    sol = config.get("solution2") or {}
    if not sol.get("enabled"):
        return []
    b, k, lr = sol["batch_size"], sol["splits"], sol["lr"]
    klr = round_lr(k * lr)
    window = sorted(set(sol.get("learning_rates") or []) - {lr})
    out = []
    for name in sol["optimizers"]:
        m = momentum_of(config, name)
        for label, lr_i, splits in (
            (f"plain, lr {lr:g}", lr, 1),
            (f"plain, lr {klr:g} (k × lr)", klr, 1),
            (f"Solution 2, k = {k}, lr {lr:g}", lr, k),
            *((f"Solution 2, k = {k}, lr {w:g}", w, k) for w in window),
        ):
            role = Role("solution2", f"momentum {m:g}: {label}")
            out.append(Cell(b, lr_i, Recipe(optimizer=name, splits=splits), (role,)))
    return out


def late_blowup_cells(config: dict) -> list[Cell]:
    """The late blow-up claim's long runs: its batch size at each of its lrs for its epochs."""
    late = config.get("late_blowup") or {}
    if not late.get("enabled"):
        return []
    b, e = late["batch_size"], late["epochs"]
    recipe = Recipe(optimizer=primary_optimizer(config), epochs=e)
    return [Cell(b, lr, recipe, (Role("late_blowup", f"batch {b}, lr {lr:g}, {e} epochs"),)) for lr in late["learning_rates"]]


@dataclass(frozen=True)
class EqualUpdates:
    """A batch size trained, at the lr the grid selects for it (a Snakemake checkpoint picks it
    after the grid), for at least as many updates as the reference batch size makes in
    train.epochs: whole epochs, so a few updates more where they do not divide."""

    batch_size: int
    epochs: int
    updates: int
    reference_batch_size: int
    reference_updates: int
    optimizer: str = "sgd"  # the grid's first optimizer

    @property
    def recipe(self) -> Recipe:
        return Recipe(optimizer=self.optimizer, epochs=self.epochs)

    def cell(self, lr: float) -> Cell:
        role = Role(
            "equal_updates",
            f"batch {self.batch_size} for {self.epochs} epochs ({self.updates:,} updates;"
            f" batch {self.reference_batch_size} makes {self.reference_updates:,})",
        )
        return Cell(self.batch_size, lr, self.recipe, (role,))


def equal_updates_plan(config: dict) -> list[EqualUpdates]:
    """The equal-updates runs of the study (Hoffer et al. 2017: a large batch given as many
    updates as a small one), before their lrs are known: for the listed batch sizes that the
    grid has, when it has the reference too (the report says when a run could not be planned)."""
    eq, grid = config.get("equal_updates") or {}, set(config["grid"]["batch_sizes"])
    if not eq.get("enabled") or eq["reference_batch_size"] not in grid:
        return []
    n = MNIST_TRAIN - config["train"].get("validation_size", 0)
    epochs, ref = config["train"]["epochs"], eq["reference_batch_size"]
    ref_updates = epochs * -(-n // ref)
    out = []
    for b in sorted(set(eq["batch_sizes"]) & grid):  # a batch size's lr is chosen from the grid
        per_epoch = -(-n // b)
        e = max(epochs, -(-ref_updates // per_epoch))
        out.append(EqualUpdates(b, e, e * per_epoch, ref, ref_updates, primary_optimizer(config)))
    return out


def equal_updates_skipped(config: dict) -> list[str]:
    """Why a listed equal-updates batch size has no run, in words (the report says so)."""
    eq, grid = config.get("equal_updates") or {}, set(config["grid"]["batch_sizes"])
    if not eq.get("enabled"):
        return []
    ref = eq["reference_batch_size"]
    if ref not in grid:
        return [f"the reference batch size {ref} is not in grid.batch_sizes, so no run is planned"]
    return [f"batch {b} is not in grid.batch_sizes, so its lr cannot be chosen" for b in sorted(set(eq["batch_sizes"]) - grid)]


def equal_updates_cells(config: dict, chosen: dict) -> list[Cell]:
    """The equal-updates cells, given the lr chosen for each batch size ({batch size: lr}; the
    checkpoint's output, whose keys may be strings)."""
    lrs = {int(b): float(lr) for b, lr in chosen.items() if lr is not None}
    return [run.cell(lrs[run.batch_size]) for run in equal_updates_plan(config) if run.batch_size in lrs]


def design(config: dict) -> list[Cell]:
    """Every cell of the study once, in a stable order (the grid, optimizer by optimizer, then
    the remedies, then Solution 2, then the late blow-up runs), each with every role it plays. The grid's first optimizer
    is the study's own: its cells are the grid every claim is decided on; with more than one,
    every optimizer's grid cells are compared too (group optimizers)."""
    names = optimizers(config)
    planned = []
    for name in names:
        roles = (Role("grid", "plain"),) if name == names[0] else ()
        roles += (Role("optimizers", name),) if len(names) > 1 else ()
        planned += [
            Cell(b, lr, Recipe(optimizer=name), roles)
            for b in sorted(config["grid"]["batch_sizes"])
            for lr in optimizer_lrs(config, name, b)
        ]
    planned += remedy_cells(config) + solution2_cells(config) + late_blowup_cells(config)
    merged: dict[str, Cell] = {}
    for cell in planned:
        name = cell.name()
        if name in merged:
            merged[name] = replace(merged[name], roles=merged[name].roles + cell.roles)
        else:
            merged[name] = cell
    return list(merged.values())


def optimizers(config: dict) -> list[str]:
    """The grid's optimizer axis (plain SGD where the config has none)."""
    return list(config["grid"].get("optimizers") or ["sgd"])


def primary_optimizer(config: dict) -> str:
    return optimizers(config)[0]


def optimizer_settings(config: dict, name: str) -> dict:
    """The settings of one optimizer that its training reads (batchlab.train.settings.SETTINGS)."""
    given = (config.get("optimizers") or {}).get(name) or {}
    return {k: given[k] for k in SETTINGS[name] if k in given}


def optimizer_lrs(config: dict, name: str, batch_size: int) -> list[float]:
    """An optimizer's learning rates at one batch size: its own windows (optimizers.<name>.
    learning_rates) where it has them, else the grid's."""
    own = ((config.get("optimizers") or {}).get(name) or {}).get("learning_rates")
    lrs = own if own is not None else config["grid"]["learning_rates"]
    return sorted(lrs[batch_size] if isinstance(lrs, dict) else lrs)


def grid_lrs(config: dict, batch_size: int) -> list[float]:
    """The grid's learning rates at one batch size (its first optimizer's)."""
    return optimizer_lrs(config, primary_optimizer(config), batch_size)


def seeds(config: dict) -> list[int]:
    return sorted(config["grid"]["seeds"])


def grid_cells_at(config: dict, batch_size: int) -> list[Cell]:
    """The grid's cells of one batch size (the checkpoint's inputs)."""
    return [c for c in design(config) if c.batch_size == batch_size and c.in_group("grid")]


def roles_table(config: dict, chosen: dict | None = None) -> list[dict]:
    """One row per (cell, role): what aggregate joins onto the results."""
    cells = design(config) + equal_updates_cells(config, chosen or {})
    return [{"cell": c.name(), "group": r.group, "variant": r.variant} for c in cells for r in c.roles]


def solution2_pairs(config: dict) -> list[tuple[str, str, float]]:
    """(Solution 2 cell, plain cell at k x lr, momentum): the pairs equivalent for plain SGD."""
    sol = config.get("solution2") or {}
    if not sol.get("enabled"):
        return []
    k, b = sol["splits"], sol["batch_size"]
    out = []
    for name in sol["optimizers"]:
        split = Cell(b, sol["lr"], Recipe(optimizer=name, splits=k))
        plain = Cell(b, round_lr(k * sol["lr"]), Recipe(optimizer=name))
        out.append((split.name(), plain.name(), momentum_of(config, name)))
    return out


def train_params(config: dict) -> dict:
    """What a training job gets of the group `train`: all but `threads`, a runtime knob (it sets
    the job's threads, not its params), so changing it retrains nothing. The train rule and the
    GPU check (batchlab.bench.gpu_check) both read it."""
    return {k: v for k, v in config["train"].items() if k != "threads"}


def measure_params(config: dict) -> dict:
    """The group `measure`; the noise scale is measured too where a seed first reaches the
    report's target accuracy."""
    return {**config["measure"], "noise_at_val_acc": config["report"]["target_val_acc"]}


def aggregate_params(config: dict) -> dict:
    """What the aggregate rule hands its job (batchlab.analysis.tables.Settings): the design and
    the report group's knobs the tables need."""
    report = config["report"]
    return {
        "study": design_config(config),
        "smooth_samples": report["smooth_samples"],
        "loss_target": report["loss_target"],
        "target_val_acc": report["target_val_acc"],
        "noise_smoothing_probes": report["noise_smoothing_probes"],
        "max_points_per_curve": report["max_points_per_curve"],
    }


def train_priority(config: dict, name: str) -> int:
    """The order a scheduler should start training jobs in (higher first): the long runs, and the
    grid cells the equal-updates checkpoint reads, so that its long run starts while the grid
    trains instead of alone at the end (the default study on 2 cores: its 48-epoch run trained
    alone for its last 9 minutes before)."""
    cell = Cell.parse(name)
    feeds = cell.recipe == Recipe() and cell.batch_size in {run.batch_size for run in equal_updates_plan(config)}
    return int(bool(cell.recipe.epochs) or feeds)


def rerun_folders(config: dict, root: str | Path = ".") -> list[str]:
    """The committed reruns report.reruns lists, each a study folder holding analysis.json and
    best_lr.csv; a folder that lacks them is an error that says how to make it."""
    folders = list(config["report"].get("reruns") or [])
    for folder in folders:
        missing = [f for f in ("analysis.json", "best_lr.csv") if not (Path(root) / folder / f).is_file()]
        if missing:
            raise ConfigError(
                f"report.reruns lists {folder}, which has no {' or '.join(missing)}: run that study first"
                f" (make optimizers OPT_CONFIG=config/{Path(folder).name}.yaml copies it there) or take it off the list"
            )
    return folders


def gradient_reference(config: dict) -> dict:
    """What the gradient_probe rule's reference run is (batchlab.train.shared_weights.Reference):
    the group gradient_probe, with the grid's seeds and the train group's model and hold-out."""
    probe, train = config["gradient_probe"], config["train"]
    return {
        "batch_size": probe["batch_size"],
        "lr": probe["lr"],
        "epochs": probe["epochs"],
        "seeds": tuple(config["grid"]["seeds"]),
        "batch_sizes": tuple(probe["batch_sizes"]),
        "validation_size": train["validation_size"],
        "model": train["model"],
        "init_jitter": train.get("init_jitter", 0.0),
    }


def design_config(config: dict) -> dict:
    """The part of a validated config that aggregate reads: which cell plays which role, without
    the runtime knobs (the aggregate rule, `batchlab peek` and the manifest share it)."""
    train, report = config["train"], config["report"]
    return {
        "grid": config["grid"],
        "remedies": config["remedies"],
        "solution2": config["solution2"],
        "equal_updates": config["equal_updates"],
        "late_blowup": config["late_blowup"],
        "gradient_probe": config["gradient_probe"],
        "optimizers": config["optimizers"],
        "train": {"epochs": train["epochs"], "validation_size": train["validation_size"]},
        "report": {"reference_lr": report["reference_lr"]},
    }
