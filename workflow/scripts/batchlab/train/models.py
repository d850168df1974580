"""The two models of the study. They never see a config file: a name in, a module out."""

from __future__ import annotations

from torch import nn

MODELS = ("mlp", "cnn")


def build_model(name: str) -> nn.Module:
    """mlp: 784-256-10 with ReLU, on flat inputs. cnn: the classic two-conv net of the PyTorch MNIST example."""
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(9216, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


def input_shape(name: str) -> tuple[int, ...]:
    """The shape of one input image as the model wants it."""
    return (784,) if name == "mlp" else (1, 28, 28)


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
