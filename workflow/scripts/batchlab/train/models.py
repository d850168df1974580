"""The study's models. They never see a config file: a name in, a module out.

mlp and cnn have no normalization (the study's question is asked "without BatchNorm"); mlp_bn
and cnn_bn are the same networks with BatchNorm after each hidden layer's linear map, the form
most networks trained with huge batches have. Their statistics come from the batch itself in
training and from running averages in evaluation (PyTorch's defaults: momentum 0.1, eps 1e-5).
"""

from __future__ import annotations

from torch import nn

MODELS = ("mlp", "cnn", "mlp_bn", "cnn_bn")
# each model's BatchNorm variant (the recipe _bn), and whether a model normalizes over the batch
BN_VARIANT = {"mlp": "mlp_bn", "cnn": "cnn_bn", "mlp_bn": "mlp_bn", "cnn_bn": "cnn_bn"}
INPUT_SHAPE = {"mlp": (784,), "mlp_bn": (784,), "cnn": (1, 28, 28), "cnn_bn": (1, 28, 28)}


def has_batch_norm(name: str) -> bool:
    return name.endswith("_bn")


def build_model(name: str) -> nn.Module:
    """mlp: 784-256-10 with ReLU, on flat inputs. cnn: the classic two-conv net of the PyTorch
    MNIST example. *_bn: BatchNorm between each hidden linear map and its ReLU."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    bn = has_batch_norm(name)

    def norm(kind, width):
        return [kind(width)] if bn else []

    if name.startswith("mlp"):
        return nn.Sequential(nn.Linear(784, 256), *norm(nn.BatchNorm1d, 256), nn.ReLU(), nn.Linear(256, 10))
    return nn.Sequential(
        nn.Conv2d(1, 32, 3),
        *norm(nn.BatchNorm2d, 32),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3),
        *norm(nn.BatchNorm2d, 64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(9216, 128),
        *norm(nn.BatchNorm1d, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def input_shape(name: str) -> tuple[int, ...]:
    """The shape of one input image as the model wants it."""
    return INPUT_SHAPE[name]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train_step_flops(model_name: str, batch_size: int) -> float:
    """Floating-point operations of one mlp training step.

    Forward: 2·b·(784·256 + 256·10). Backward: the weight gradients cost as much again, and the
    gradient with respect to the hidden layer adds 2·b·256·10; no gradient is taken with respect
    to the input images. The SGD update itself is a few element-wise passes, not counted.
    """
    if model_name != "mlp":
        raise ValueError("FLOP count is defined for the mlp only")
    forward = 2 * batch_size * (784 * 256 + 256 * 10)
    return 2.0 * forward + 2 * batch_size * 256 * 10
