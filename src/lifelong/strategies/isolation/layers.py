"""What the isolation methods need to know about a network: its layers, its hidden units, and how the
units of one layer feed the next.

XdG and HAT gate *units* (a hidden Linear's outputs, a hidden Conv2d's channels); PackNet masks
*weights*; progressive networks copy the layer structure into new columns. All four read the model as
an ``nn.Sequential`` of ``Linear`` / ``Conv2d`` layers and parameter-free modules (activations, pooling,
``Flatten``, ``Dropout``): the ``mlp`` and ``cnn`` models, or a user's network of the same kind. The last
parametric layer is the output layer (one row per output unit: the task-incremental heads); every other
one is *hidden* and must be followed directly by its activation, whose output is what a gate multiplies.
Networks outside this family (BatchNorm's running statistics, residual connections) are refused with
one line: their statistics or skip paths would leak one task's changes into another's.

Shapes: a gate of hidden layer l is ``(U_l,)`` for one task or ``(B, U_l)`` per sample; on a Conv2d it
multiplies whole channels (``(B, U_l, 1, 1)``).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

from ...errors import UsageError

PARAMETRIC = (nn.Linear, nn.Conv2d)
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.Softplus)
PASSIVE = ACTIVATIONS + (nn.MaxPool2d, nn.AvgPool2d, nn.Flatten, nn.Dropout, nn.Identity)


@dataclass
class Layers:
    """The layer structure of a Sequential network.

    ``modules``: the Sequential's children in order; ``parametric``: their indices that are Linear or
    Conv2d (the last one is the output layer); ``names``: each parametric layer's parameter-name prefix
    (``"1"`` for ``model[1]``); ``activation``: for each hidden parametric layer, the index of the
    activation right after it; ``units``: each hidden layer's unit count; ``input_units``: for each
    parametric layer l ≥ 1, a (fan_in,) int64 tensor giving the unit of hidden layer l−1 that each of its
    input features comes from (a Flatten after a Conv2d spreads one channel over many features).
    """

    modules: list[nn.Module]
    parametric: list[int]
    names: list[str]
    activation: list[int]
    units: list[int]
    input_units: list[Tensor | None]

    @property
    def hidden(self) -> int:
        return len(self.parametric) - 1

    def layer(self, l: int) -> nn.Module:
        return self.modules[self.parametric[l]]


def analyze(model: nn.Module, x: Tensor, who: str) -> Layers:
    """The :class:`Layers` of ``model`` traced on one input batch ``x``, or a UsageError naming what
    ``who`` (the strategy) cannot handle."""
    if not isinstance(model, nn.Sequential):
        raise UsageError(f"{who} needs an nn.Sequential of Linear/Conv2d layers and activations (the mlp or cnn "
                         f"models); got {type(model).__name__}")
    modules = list(model.children())
    seen: set[int] = set()
    for i, m in enumerate(modules):
        if id(m) in seen:
            raise UsageError(f"{who}: module {i} ({type(m).__name__}) appears twice in the network; give each "
                             "place its own module")
        seen.add(id(m))
        if not isinstance(m, PARAMETRIC + PASSIVE):
            raise UsageError(f"{who} cannot isolate tasks in a network with {type(m).__name__} (module {i}): it "
                             "supports Linear, Conv2d, activations, pooling, Flatten and Dropout (use model='mlp' "
                             "or 'cnn')", params=("model",))
        if isinstance(m, nn.Conv2d) and (m.padding_mode != "zeros" or isinstance(m.padding, str)):
            raise UsageError(f"{who}: Conv2d module {i} needs numeric zero padding")
    parametric = [i for i, m in enumerate(modules) if isinstance(m, PARAMETRIC)]
    if len(parametric) < 2 or not isinstance(modules[parametric[-1]], nn.Linear):
        raise UsageError(f"{who} needs at least one hidden layer and an nn.Linear output layer")
    if any(isinstance(m, PARAMETRIC + ACTIVATIONS) for m in modules[parametric[-1] + 1:]):
        raise UsageError(f"{who}: nothing but Flatten/Dropout may follow the output layer")
    activation = []
    for i in parametric[:-1]:
        if i + 1 >= len(modules) or not isinstance(modules[i + 1], ACTIVATIONS):
            raise UsageError(f"{who}: hidden layer {i} ({type(modules[i]).__name__}) must be followed directly by "
                             "its activation (the gate multiplies the activation's output)")
        activation.append(i + 1)
    units = hidden_units(model)
    # The shapes after each activation, from one traced sample (eval mode: Dropout is the identity).
    shapes: dict[int, tuple[int, ...]] = {}
    with torch.no_grad(), _eval(model):
        h = x[:1]
        for i, m in enumerate(modules):
            h = m(h)
            if i in activation:
                shapes[i] = tuple(h.shape[1:])
    input_units: list[Tensor | None] = [None]
    for l in range(1, len(parametric)):
        a, i = activation[l - 1], parametric[l]
        shape = shapes[a]
        # Label every feature with its unit (+1, exactly representable), run the parameter-free modules
        # between the activation and layer l: pooling and Flatten move whole channels, so each input
        # feature of layer l carries the label of the unit it came from.
        label = torch.arange(1, units[l - 1] + 1, dtype=torch.float32, device=x.device)
        h = label.reshape(1, -1, *([1] * (len(shape) - 1))).expand(1, *shape).contiguous()
        with torch.no_grad(), _eval(model):
            for m in modules[a + 1:i]:
                h = m(h)
        layer = modules[i]
        if isinstance(layer, nn.Linear):
            feats = h.reshape(-1)
            if feats.numel() != layer.in_features:
                raise UsageError(f"{who}: layer {i} expects {layer.in_features} inputs, the network gives it {feats.numel()}")
        else:
            if h.dim() != 4:
                raise UsageError(f"{who}: Conv2d layer {i} must take a feature map")
            feats = h[0, :, 0, 0]
        input_units.append(feats.round().long() - 1)
    return Layers(modules, parametric, [str(i) for i in parametric], activation, units, input_units)


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def broadcast_gate(gate: Tensor, out: Tensor) -> Tensor:
    """``gate`` ((U,) or (B, U)) shaped to multiply ``out`` ((B, U) or (B, U, H, W))."""
    if out.dim() == 2:
        return gate
    return gate.reshape(*gate.shape, *([1] * (out.dim() - 2)))  # (U, 1, 1) or (B, U, 1, 1)


class UnitGates:
    """Multiplies the output of each hidden layer's activation by a gate, through forward hooks on the
    activations (so every call of the model is gated, including the importance estimators that an
    ``xdg+ewc`` composite runs at a task's end).

    ``default`` is the list of per-layer gates used by a plain ``model(x)``; :meth:`using` sets others
    for one call. A None gate list means no gating.
    """

    def __init__(self) -> None:
        self.model: nn.Module | None = None
        self.handles: list = []
        self.default: list[Tensor] | None = None
        self.current: list[Tensor] | None = None

    def attach(self, model: nn.Module, layers: Layers) -> None:
        """Gate ``model``'s activations by this object's gates. A model carries one set of gates at a
        time: another strategy's gates on it are removed (so two strategy objects never stack)."""
        if self.model is model and getattr(model, "_lifelong_unit_gates", None) is self:
            return
        self.detach()
        other = getattr(model, "_lifelong_unit_gates", None)
        if other is not None:
            other.detach()
        self.model = model
        object.__setattr__(model, "_lifelong_unit_gates", self)
        for l, a in enumerate(layers.activation):
            self.handles.append(layers.modules[a].register_forward_hook(self._hook(l)))

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        if self.model is not None and getattr(self.model, "_lifelong_unit_gates", None) is self:
            object.__delattr__(self.model, "_lifelong_unit_gates")
        self.handles, self.model = [], None

    def _hook(self, l: int):
        def hook(module: nn.Module, args: tuple, out: Tensor) -> Tensor | None:
            gates = self.current if self.current is not None else self.default
            if gates is None:
                return None
            return out * broadcast_gate(gates[l], out)

        return hook

    @contextmanager
    def using(self, gates: Sequence[Tensor] | None) -> Iterator[None]:
        before, self.current = self.current, None if gates is None else list(gates)
        try:
            yield
        finally:
            self.current = before


def hidden_units(model: nn.Module) -> list[int]:
    """The unit count of each hidden Linear/Conv2d of ``model`` (its direct children; the last
    parametric layer is the output layer): what a gate or an embedding per layer must match."""
    layers = [m for m in model.children() if isinstance(m, PARAMETRIC)]
    return [m.out_features if isinstance(m, nn.Linear) else m.out_channels for m in layers[:-1]]
