"""Models: an MLP with configurable widths, a small CNN and the reduced ResNet-18 of GEM/A-GEM/DER.

Both map inputs ``(B, C, H, W)`` to logits ``(B, n_outputs)``. Task-incremental heads are masks over
the output units (:mod:`lifelong.models.heads`), so a model is just a plain ``nn.Module``: no task
argument, which keeps it usable with any training loop and with the vectorized per-sample Fisher
(whose fast paths cover ``nn.Linear`` and ``nn.Conv2d``).
"""

from __future__ import annotations

import math
from typing import Sequence

from torch import nn

from ..errors import UsageError
from .heads import Heads, masked_logits

MODELS = ("mlp", "cnn", "resnet18")
__all__ = ["MODELS", "Heads", "build_model", "count_parameters", "masked_logits", "mlp", "small_cnn"]


def mlp(in_features: int, hidden: Sequence[int] = (400, 400), n_outputs: int = 10) -> nn.Sequential:
    """Flatten -> [Linear -> ReLU] * len(hidden) -> Linear. ``mlp(784, (400, 400), 10)`` is the
    784-400-400-10 network of the EWC paper's permuted-MNIST experiment."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


def small_cnn(input_shape: Sequence[int] = (1, 28, 28), n_outputs: int = 10, channels: Sequence[int] = (32, 64), hidden: int = 128) -> nn.Sequential:
    """[Conv3x3 -> ReLU -> MaxPool2] per entry of ``channels`` -> Flatten -> Linear -> ReLU -> Linear."""
    c, h, w = input_shape
    layers: list[nn.Module] = []
    for ch in channels:
        layers += [nn.Conv2d(c, ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c, h, w = ch, h // 2, w // 2
    layers += [nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Linear(hidden, n_outputs)]
    return nn.Sequential(*layers)


def build_model(name: str, input_shape: Sequence[int], n_outputs: int, hidden: Sequence[int] = (400, 400)) -> nn.Module:
    """The model called ``name`` ("mlp", "cnn" or "resnet18", the reduced ResNet-18) for inputs of ``input_shape`` (C, H, W)."""
    if name == "mlp":
        return mlp(math.prod(input_shape), hidden, n_outputs)
    if name == "cnn":
        return small_cnn(input_shape, n_outputs)
    if name == "resnet18":
        from .resnet import ReducedResNet18

        return ReducedResNet18(input_shape[0], n_outputs)
    raise UsageError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
