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
#: weight initializations (:func:`initialize`), named by what they draw
INITS = ("torch", "xavier", "xavier-zero-bias", "truncated-normal")
MAX_WIDTH = 10**7  # units in one hidden layer (a 784-wide input already makes that 31 GB of weights)
__all__ = ["INITS", "MODELS", "Heads", "ModelSpec", "build_model", "count_parameters", "initialize", "masked_logits", "mlp",
           "small_cnn"]


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


def initialize(model: nn.Module, init: str, generator: torch.Generator) -> nn.Module:
    """Draw the weights and biases of every ``nn.Linear`` and ``nn.Conv2d`` of ``model`` again, in place,
    from ``generator`` (other layers, e.g. batch norm, keep theirs), as the reference codes do:

    * ``torch``: leave PyTorch's default (Kaiming-uniform weights with a = √5, uniform biases in
      ±1/√fan_in): the GEM and van de Ven et al. PyTorch codes;
    * ``xavier``: Xavier/Glorot-uniform weights, U(±√(6 / (fan_in + fan_out))) (Glorot & Bengio 2010,
      eq. 16), PyTorch's default biases;
    * ``xavier-zero-bias``: Xavier-uniform weights and zero biases (Mammoth's ``xavier``, applied to its
      MLPs);
    * ``truncated-normal``: TensorFlow 1's ``truncated_normal_initializer(stddev=0.1)`` (a normal with
      σ = 0.1 redrawn outside ±2σ) and biases 0.1 (the A-GEM/GEM TensorFlow code, ``model/model.py``).

    Returns ``model``."""
    if init not in INITS:
        raise UsageError(f"unknown initialization {init!r}: choose one of {', '.join(INITS)}", params=("init",))
    if init == "torch":
        return model
    with torch.no_grad():
        for m in model.modules():
            if not isinstance(m, (nn.Linear, nn.Conv2d)):
                continue
            if init in ("xavier", "xavier-zero-bias"):
                nn.init.xavier_uniform_(m.weight, generator=generator)
            else:
                nn.init.trunc_normal_(m.weight, std=0.1, a=-0.2, b=0.2, generator=generator)
            if m.bias is not None and init != "xavier":
                m.bias.fill_(0.0 if init == "xavier-zero-bias" else 0.1)
    return model


def build_model(name: str, input_shape: Sequence[int], n_outputs: int, hidden: Sequence[int] = (400, 400),
                init: str = "torch", generator: torch.Generator | None = None) -> nn.Module:
    """The model called ``name`` ("mlp", "cnn" or "resnet18", the reduced ResNet-18) for inputs of
    ``input_shape`` (C, H, W), its weights drawn as ``init`` says (:func:`initialize`; from
    ``generator``, or the global random state when None)."""
    if name == "mlp":
        model = mlp(math.prod(input_shape), hidden, n_outputs)
    elif name == "cnn":
        model = small_cnn(input_shape, n_outputs)
    elif name == "resnet18":
        from .resnet import ReducedResNet18

        model = ReducedResNet18(input_shape[0], n_outputs)
    else:
        model = None
    if model is not None:
        return initialize(model, init, generator if generator is not None else torch.default_generator)
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
    init: str = setting("torch", added=True, choices=INITS,
                        help="weight initialization: torch (PyTorch's default), xavier (Xavier-uniform weights), "
                             "xavier-zero-bias (and zero biases: Mammoth), truncated-normal (σ 0.1 within 2σ, biases "
                             "0.1: the A-GEM/GEM TensorFlow code)")

    def build(self, input_shape: Sequence[int], n_outputs: int, seed: int = 0) -> nn.Module:
        """The model, its weights drawn from ``seed`` without touching the global random state."""
        if self.name in ("cnn", "resnet18") and len(input_shape) != 3:
            raise UsageError(f"model={self.name!r} takes images (C, H, W); the data's inputs are {tuple(input_shape)}: "
                             "use model='mlp'", params=("model",))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_generator(seed, "model").initial_seed())
            return build_model(self.name, input_shape, n_outputs, self.hidden, self.init)

    def parameter_count(self, input_shape: Sequence[int], n_outputs: int) -> int:
        """How many parameters the model has, computed without building an MLP (an absurd width would take
        the machine's memory before an error could say so)."""
        if self.name != "mlp":
            return count_parameters(build_model(self.name, input_shape, n_outputs, self.hidden))
        widths = [math.prod(input_shape), *self.hidden, n_outputs]
        return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
