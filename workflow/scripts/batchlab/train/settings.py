"""The optimizers a cell can train with, declared once: each one's name, its labels, the settings
it reads, and whether its update is layer-wise. Plain data without torch, so that the cells'
names (batchlab.cells), the study's design and the report read the same list as the trainer."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Optimizer:
    name: str  # as in cell names (_momentum) and the config (grid.optimizers)
    label: str  # in the report's tables and roles
    description: str  # in a cell's step_implementation
    reads: tuple[str, ...]  # the OptimizerSettings fields it reads
    layer_wise: bool = False  # trust ratios per layer (LARS, LAMB), made for huge batches


REGISTRY = (
    Optimizer("sgd", "SGD", "SGD", ("weight_decay",)),
    Optimizer("momentum", "momentum", "momentum SGD", ("momentum", "weight_decay")),  # the heavy ball
    Optimizer("nesterov", "Nesterov", "Nesterov momentum SGD", ("momentum", "weight_decay")),
    Optimizer("adam", "Adam", "Adam", ("beta1", "beta2", "eps", "weight_decay")),
    Optimizer("adamw", "AdamW", "AdamW", ("beta1", "beta2", "eps", "weight_decay")),
    Optimizer("lars", "LARS", "LARS", ("momentum", "trust_coefficient", "weight_decay"), layer_wise=True),
    Optimizer("lamb", "LAMB", "LAMB", ("beta1", "beta2", "eps", "weight_decay"), layer_wise=True),
)
BY_NAME = {o.name: o for o in REGISTRY}
OPTIMIZERS = tuple(BY_NAME)  # plain SGD first: the unnamed default of a cell's recipe
SETTINGS = {o.name: o.reads for o in REGISTRY}  # optimizer -> the settings it reads
LABELS = {o.name: o.label for o in REGISTRY}
LAYER_WISE = tuple(o.name for o in REGISTRY if o.layer_wise)


@dataclass(frozen=True)
class OptimizerSettings:
    """One optimizer and its settings; those it does not read keep their defaults."""

    name: str = "sgd"
    momentum: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    trust_coefficient: float = 0.001

    @classmethod
    def of(cls, name: str, given: dict) -> OptimizerSettings:
        """The settings `name` reads from `given` (a config group or a record); the rest default."""
        return cls(name=name, **{k: given[k] for k in SETTINGS.get(name, ()) if k in given})

    def read(self) -> dict:
        """The settings this optimizer reads, by name."""
        values = asdict(self)
        return {k: values[k] for k in SETTINGS[self.name]}
