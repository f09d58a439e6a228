"""Models: an MLP with configurable widths, a small CNN and the reduced ResNet-18 of GEM/A-GEM/DER.

Both map inputs ``(B, C, H, W)`` to logits ``(B, n_outputs)``. Task-incremental heads are masks over
the output units (:mod:`lifelong.models.heads`), so a model is just a plain ``nn.Module``: no task
argument, which keeps it usable with any training loop and with the vectorized per-sample Fisher
(whose fast paths cover ``nn.Linear`` and ``nn.Conv2d``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..errors import UsageError
from ..seeds import derived_generator
from ..settings import Settings, setting
from .heads import Heads, masked_logits

MODELS = ("mlp", "cnn", "resnet18")
MAX_WIDTH = 10**7  # units in one hidden layer (a 784-wide input already makes that 31 GB of weights)
__all__ = ["MODELS", "Heads", "ModelSpec", "build_model", "count_parameters", "masked_logits", "mlp", "small_cnn"]


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
    raise UsageError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}", params=("model",))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class ModelSpec(Settings):
    """Which model, as settings: ``ModelSpec("mlp", hidden=(400, 400)).build(input_shape, n_outputs, seed)``."""

    part = "model"

    name: str = setting("mlp", choices=MODELS, flag="model", help="MLP, small CNN or the reduced ResNet-18")
    hidden: tuple[int, ...] = setting((400, 400), check=lambda v: len(v) >= 1 and all(1 <= h <= MAX_WIDTH for h in v),
                                      must=f"be positive widths up to {MAX_WIDTH:,} like 400,400",
                                      help="MLP hidden widths")

    def build(self, input_shape: Sequence[int], n_outputs: int, seed: int = 0) -> nn.Module:
        """The model, its weights drawn from ``seed`` without touching the global random state."""
        if self.name in ("cnn", "resnet18") and len(input_shape) != 3:
            raise UsageError(f"model={self.name!r} takes images (C, H, W); the data's inputs are {tuple(input_shape)}: "
                             "use model='mlp'", params=("model",))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_generator(seed, "model").initial_seed())
            return build_model(self.name, input_shape, n_outputs, self.hidden)

    def parameter_count(self, input_shape: Sequence[int], n_outputs: int) -> int:
        """How many parameters the model has, computed without building an MLP (an absurd width would take
        the machine's memory before an error could say so)."""
        if self.name != "mlp":
            return count_parameters(build_model(self.name, input_shape, n_outputs, self.hidden))
        widths = [math.prod(input_shape), *self.hidden, n_outputs]
        return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
