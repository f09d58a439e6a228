"""XdG, context-dependent gating (Masse, Grant & Freedman 2018, PNAS 115(44), "Alleviating
catastrophic forgetting using context-dependent gating and synaptic stabilization").

Each task t has a fixed random binary gate g_t^l over the units of every hidden layer l, drawn once:
a fraction ``gate_fraction`` (0.8 by default) of each layer's units is
off, exactly round(f · U_l) of them. The activation of layer l is multiplied by the task's gate,
h^l = g_t^l ⊙ f(W^l h^{l−1} + b^l), in training and at test time (the task identity picks the gate), so
tasks use mostly different units; the weights are still shared, so XdG alone reduces forgetting but
does not remove it. Masse et al. combine it with a synaptic penalty: the composites ``xdg+ewc`` or
``xdg+si`` (the gates act through forward hooks, so EWC's Fisher at a task's end is the gated
network's).

State: ``gate.<l>``, bool (T, U_l), drawn from the run's strategy generator at first use and saved, so
the gates are the same after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...settings import Settings, setting
from ...errors import UsageError
from ..base import Context, Step, tensor_bytes
from ..state import Group, Position
from .base import Isolation, capacity, check_keys, count, unit_shares
from .layers import UnitGates, hidden_units


@dataclass(frozen=True)
class XdGSettings(Settings):
    gate_fraction: float = setting(0.8, flag="gate-fraction", check=lambda v: 0 <= v < 1, must="be in [0, 1)",
                                   help="fraction of each hidden layer's units gated off for each task")


class XdG(Isolation):
    """Context-dependent gating: a fixed random subset of hidden units per task."""

    name = "xdg"
    Settings = XdGSettings
    needs_task_because = "the task's identity selects its gate"
    freezes = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate: list[Tensor] = []  # per hidden layer, bool (T, U_l)
        self._table: list[Tensor] | None = None  # the gates as float, on the device
        self.gates = UnitGates()

    def draw(self, ctx: Context) -> None:
        """The gates of every task: for each task, for each hidden layer, a random permutation of the
        units whose first round(f · U_l) are off."""
        layers, T = self.layers(ctx), self.n_tasks(ctx)
        gate = [torch.zeros(T, u, dtype=torch.bool) for u in layers.units]
        for t in range(T):
            for l, u in enumerate(layers.units):
                off = round(self.settings.gate_fraction * u)
                gate[l][t, torch.randperm(u, generator=ctx.generator)[off:]] = True
        self.gate = [g.to(ctx.device) for g in gate]
        self._table = None

    def _ready(self, ctx: Context) -> list[Tensor]:
        if not self.gate:
            self.draw(ctx)
        self.gates.attach(ctx.model, self.layers(ctx))
        if self._table is None:
            self._table = [g.float() for g in self.gate]
        return self._table

    def resume_task(self, ctx: Context) -> None:
        self._current(ctx)  # a composite's Fisher at the task's end is gated even if no step runs after the restore

    def _current(self, ctx: Context) -> list[Tensor]:
        """The gates attached, a plain model(x) gated by the current task's; returns the gates as float."""
        table = self._ready(ctx)
        self.gates.default = [g[max(ctx.task_index, 0)] for g in table]
        return table

    def gated(self, ctx: Context, x: Tensor, task_ids: Tensor) -> Tensor:
        """The model's scores with each sample's task gate."""
        table = self._current(ctx)
        with self.gates.using([g.index_select(0, task_ids) for g in table]):  # (B, U_l) each
            return ctx.model(x)

    def forward(self, ctx: Context, step: Step) -> Tensor:
        return self.gated(ctx, step.inputs.x, step.inputs.task)

    def predict(self, ctx: Context, x: Tensor, task_ids: Tensor) -> Tensor:
        return self.gated(ctx, x, task_ids)

    def state_dict(self) -> dict[str, Tensor]:
        return {f"gate.{l}": g for l, g in enumerate(self.gate)}

    def check_stream(self, ctx: Context) -> None:
        super().check_stream(ctx)
        f = self.settings.gate_fraction
        for l, u in enumerate(self.layers(ctx).units):
            if u - round(f * u) < 1:
                raise UsageError(f"xdg: `gate_fraction={f:g}` gates off all {u} units of hidden layer {l} for every task, "
                                 f"leaving nothing to learn: lower `gate_fraction` below {(u - 0.5) / u:.3g} or widen "
                                 "the layer (`hidden`)", params=("gate_fraction", "hidden"), owner=self.name)

    def state_spec(self, ctx: Context, at: Position) -> list[Group]:
        """The gates (tasks, units) of each hidden layer, drawn at the first step."""
        T = self.n_tasks(ctx)
        return [Group("xdg's unit gates of every task", {f"gate.{l}": ((T, u), torch.bool)
                                                        for l, u in enumerate(self.layers(ctx).units)}, at.trained)]

    def load_state_dict(self, state: dict[str, Tensor], model) -> None:
        check_keys(self.name, state, ("gate.",))
        gate = [state[f"gate.{l}"] for l in range(len(state))]
        if any(g.dtype != torch.bool or g.dim() != 2 for g in gate):
            raise ValueError("xdg: gates must be bool (tasks, units)")
        units = hidden_units(model)
        if gate and [g.shape[1] for g in gate] != units:
            raise ValueError(f"xdg: gates for units {[g.shape[1] for g in gate]}, the model's hidden layers have {units}")
        self.gate, self._table = gate, None

    def capacity_report(self, ctx: Context) -> dict:
        used, own, union = unit_shares(self.gate)
        return capacity("units", used, own, 1 - union, tensor_bytes(self.gate), 0, count(ctx.model.parameters()))
