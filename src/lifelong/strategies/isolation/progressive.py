"""Progressive networks (Rusu, Rabinowitz, Desjardins, Soyer, Kirkpatrick, Kavukcuoglu, Pascanu &
Hadsell 2016, arXiv:1606.04671, "Progressive Neural Networks").

Task k gets a new column: a copy of the model's architecture, starting from the model's initial
weights θ₀, with lateral connections from every earlier column. Layer i of column k computes (Eq. 1)

    h_i^(k) = f( W_i^(k) h_{i−1}^(k) + b_i^(k) + Σ_{j<k} U_i^(k:j) h_{i−1}^(j) )

for every parametric layer i ≥ 1 (the first layer sees only the input; the output layer is the
column's own head): U_i^(k:j) has the shape of W_i (a Linear without bias, or a Conv2d of the same
kernel, stride and padding) and maps what layer i of column j read to layer i of column k. Laterals
start at zero, so a new column starts as a separate network of its own and learns what to take from
the others. The earlier columns and their laterals are frozen, and task j is answered by column j,
which reads only columns 0..j: zero forgetting, exactly. Left out: the paper's non-linear adapters
(Eq. 2, a learned scale and a projection before the lateral); the laterals here are linear (Eq. 1).

The model holds the current column (the loop's optimizer trains it); the strategy keeps θ₀
(``init.<name>``), the frozen columns (``column.<j>.<name>``) and the laterals
(``lateral.<k>.<j>.<i>``; those of the current column are trained with it, :meth:`parameters`).
Parameters grow as T columns plus T(T−1)/2 lateral sets; the forward pass of column k runs k+1 columns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..base import Context, Step, tensor_bytes
from ..state import Group, Position, like
from .base import Isolation, capacity, check_keys, count, numbered, per_task
from .layers import Layers


def _apply(m: nn.Module, h: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    if isinstance(m, nn.Linear):
        return F.linear(h, w, b)
    return F.conv2d(h, w, b, m.stride, m.padding, m.dilation, m.groups)


def columns_forward(layers: Layers, columns: list[dict[str, Tensor]], laterals: dict[tuple[int, int, int], Tensor],
                    x: Tensor, frozen: int) -> Tensor:
    """The output of the last of ``columns`` (each ``{param name: tensor}``) on ``x``, Eq. 1. The first
    ``frozen`` columns are computed without autograd (their activations enter later columns as constants)."""
    hs = [x] * len(columns)
    layer_of = {i: l for l, i in enumerate(layers.parametric)}
    for idx, m in enumerate(layers.modules):
        if idx not in layer_of:
            hs = [m(h) for h in hs]
            continue
        l, name = layer_of[idx], layers.names[layer_of[idx]]
        out = []
        for k, params in enumerate(columns):
            with torch.set_grad_enabled(torch.is_grad_enabled() and k >= frozen):
                z = _apply(m, hs[k], params[f"{name}.weight"], params.get(f"{name}.bias"))
                for j in range(k if l >= 1 else 0):
                    z = z + _apply(m, hs[j], laterals[(k, j, l)], None)
            out.append(z)
        hs = out
    return hs[-1]


class Progressive(Isolation):
    """A new column per task with lateral connections from the frozen earlier columns."""

    name = "progressive"
    needs_task_because = "each task is answered by its own column"
    composable = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.init: dict[str, Tensor] = {}
        self.columns: list[dict[str, Tensor]] = []  # frozen columns 0..k-1; column k is the model
        self.laterals: dict[tuple[int, int, int], Tensor] = {}

    def _own(self, ctx: Context) -> dict[str, Tensor]:
        return dict(ctx.model.named_parameters())

    def before_task(self, ctx: Context) -> None:
        layers = self.layers(ctx)
        if not self.init:
            self.init = {k: v.detach().clone() for k, v in self._own(ctx).items()}
        with torch.no_grad():
            while len(self.columns) < ctx.task_index:  # freeze the model's column, start the next from θ₀
                self.columns.append({k: v.detach().clone() for k, v in self._own(ctx).items()})
                for k, v in self._own(ctx).items():
                    v.copy_(self.init[k])
        k = ctx.task_index
        for j in range(k):
            for l in range(1, len(layers.parametric)):
                if (k, j, l) not in self.laterals:
                    w = layers.layer(l).weight
                    self.laterals[(k, j, l)] = torch.zeros_like(w).requires_grad_(True)

    def parameters(self) -> list[Tensor]:
        k = len(self.columns)
        return [v for (c, _, _), v in sorted(self.laterals.items()) if c == k]

    def _column_output(self, ctx: Context, t: int, x: Tensor) -> Tensor:
        layers, k = self.layers(ctx), len(self.columns)
        if t < k:
            return columns_forward(layers, self.columns[: t + 1], self.laterals, x, frozen=t + 1)
        if t == k:
            return columns_forward(layers, [*self.columns, self._own(ctx)], self.laterals, x, frozen=k)
        # a task not trained yet: its column will start from θ₀ with zero laterals
        return columns_forward(layers, [self.init or self._own(ctx)], {}, x, frozen=1)

    def forward(self, ctx: Context, step: Step) -> Tensor:
        return self._column_output(ctx, ctx.task_index, step.inputs.x)

    def predict(self, ctx: Context, x: Tensor, task_ids: Tensor) -> Tensor:
        return per_task(lambda t, xt: self._column_output(ctx, t, xt), x, task_ids)

    def state_dict(self) -> dict[str, Tensor]:
        out = {f"init.{k}": v for k, v in self.init.items()}
        for j, col in enumerate(self.columns):
            out.update({f"column.{j}.{k}": v for k, v in col.items()})
        out.update({f"lateral.{k}.{j}.{l}": v.detach() for (k, j, l), v in sorted(self.laterals.items())})
        return out

    def state_spec(self, ctx: Context, at: Position) -> list[Group]:
        """The initial parameters from the first step on; each frozen column (one per task before the one
        training, frozen when the next task starts) and the lateral weights into each later column."""
        own, layers = self._own(ctx), self.layers(ctx)
        n = at.done if at.started else max(at.done - 1, 0)
        laterals = {f"lateral.{k}.{j}.{l}": (tuple(layers.layer(l).weight.shape), layers.layer(l).weight.dtype)
                    for k in range(1, n + 1) for j in range(k) for l in range(1, len(layers.parametric))}
        return [like(own, "init.", "the initial parameters each column starts from", at.trained),
                *(like(own, f"column.{j}.", f"the frozen column of task {j}", True) for j in range(n)),
                Group("the lateral connections from earlier columns", laterals)]

    def load_state_dict(self, state: dict[str, Tensor], model) -> None:
        check_keys(self.name, state, ("init.", "column.", "lateral."))
        init = {k[5:]: v for k, v in state.items() if k.startswith("init.")}
        columns = numbered(state, "column.", self.name)
        laterals = {}
        for key, v in state.items():
            if key.startswith("lateral."):
                k, j, l = (int(p) for p in key[8:].split("."))
                if not 0 <= j < k or l < 1:
                    raise ValueError(f"progressive: lateral {key!r} must come from an earlier column into a layer >= 1")
                laterals[(k, j, l)] = v.detach().clone().requires_grad_(True)
        if any(k > len(columns) for k, _, _ in laterals):
            raise ValueError("progressive: a lateral leads into a column that does not exist")
        want = {k: tuple(v.shape) for k, v in model.named_parameters()}
        for col in ([init] if init else []) + columns:
            if {k: tuple(v.shape) for k, v in col.items()} != want:
                raise ValueError("progressive: a stored column does not fit the model")
        layers = [m for m in model.children() if isinstance(m, (nn.Linear, nn.Conv2d))]
        for (k, j, l), v in laterals.items():
            if l >= len(layers) or tuple(v.shape) != tuple(layers[l].weight.shape):
                raise ValueError(f"progressive: lateral {k}.{j}.{l} {tuple(v.shape)} fits no layer of the model")
        self.init, self.columns, self.laterals = init, columns, laterals

    def capacity_report(self, ctx: Context) -> dict:
        T = self.n_tasks(ctx)
        P = count(ctx.model.parameters())
        per = [P + count(v for (k, _, _), v in self.laterals.items() if k == t) for t in range(T)]
        total = sum(per)
        own = [p / total for p in per]
        used = [sum(own[: t + 1]) for t in range(T)]
        extra = tensor_bytes(self.state_dict().values())
        return capacity("parameters", used, own, None, 0, extra, total)
