"""What the isolation strategies share: where they apply, and how they report capacity.

Each needs the task identity at test time (it selects a task's mask, gate or column), so it runs in the
task-incremental scenario only; elsewhere :meth:`Isolation.check_stream` stops the run with one line
before anything trains. Those that freeze what earlier tasks own (separate networks, PackNet, HAT,
progressive networks) need a fresh optimizer per task (``optimizer_state='reset'``, the default): a kept
optimizer's momentum or Adam moments would keep moving the frozen weights, whose gradients are zero.

Capacity (``results.json`` → ``capacity``, from :meth:`report`'s ``capacity``)::

    unit                  what is counted: "weights", "units" or "parameters"
    used[t]               fraction of that capacity task t computes with at test time
    own[t]                fraction task t claimed first (PackNet, HAT) or added (columns, networks)
    free                  fraction no task claimed (PackNet, HAT), else None
    mask_bytes            bytes of masks, gates and owner maps the strategy keeps
    extra_parameter_bytes bytes of parameters beside the model (frozen columns and networks, laterals,
                          task embeddings)
    total_parameters      every parameter the method trains and keeps (the model's and the extra ones)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ...errors import UsageError
from ...scenarios import batches
from ..base import Context, Strategy
from .layers import Layers, analyze


class Isolation(Strategy):
    """Base of the parameter-isolation strategies (not a strategy of its own)."""

    #: why the task identity is needed at test time (for the one-line error outside task-IL)
    needs_task_because = "it selects each task's part of the network by the task's identity"
    #: False for XdG, which freezes nothing
    freezes = True
    needs_boundaries = "it gives each task parameters of its own and needs the task's identity"
    #: True when the method reads the model's layer structure (XdG, PackNet, HAT, progressive)
    uses_layers = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._layers: Layers | None = None
        self._layers_of: nn.Module | None = None

    def check_stream(self, ctx: Context) -> None:
        if not ctx.heads.per_task:
            scenario = getattr(ctx.stream, "scenario", "?")
            raise UsageError(f"{self.name} needs the task identity at test time ({self.needs_task_because}): run it in "
                             f"the task-incremental scenario (scenario='task'), not {scenario}-incremental",
                             params=("scenario",))
        if "class" in getattr(ctx.stream, "eval_scenarios", ()):  # scored with the task given, it is not class-IL
            raise UsageError(f"eval_scenarios: {self.name} cannot be evaluated without the task's identity "
                             f"({self.needs_task_because})", params=("eval_scenarios",))
        if self.freezes and getattr(ctx.settings, "optimizer_state", "reset") == "keep":
            raise UsageError(f"{self.name} freezes what earlier tasks own, but a kept optimizer's momentum would still "
                             "move it: use optimizer_state='reset'", params=("optimizer_state",))
        if len(ctx.stream) > 250:
            raise UsageError(f"{self.name} keeps per-task masks for at most 250 tasks, the stream has {len(ctx.stream)}")
        if self.uses_layers:
            self.layers(ctx)

    def layers(self, ctx: Context) -> Layers:
        """The model's :class:`~lifelong.strategies.isolation.layers.Layers`, traced once per model."""
        if self._layers is None or self._layers_of is not ctx.model:
            x = next(batches([ctx.stream[0]], "test", batch_size=1)).x
            x = x.to(next(ctx.model.parameters()).dtype)
            self._layers, self._layers_of = analyze(ctx.model, x, self.name), ctx.model
        return self._layers

    @staticmethod
    def n_tasks(ctx: Context) -> int:
        return len(ctx.stream)

    def capacity_report(self, ctx: Context) -> dict:
        """What each task uses of the network (see the module docstring)."""
        raise NotImplementedError

    def report(self, ctx: Context) -> dict:
        return {**super().report(ctx), "capacity": self.capacity_report(ctx)}

    # ---- gradient masks (PackNet, HAT): made once per task, applied in one fused call per step --------
    _masks: tuple[int, list[Tensor], list[Tensor]] | None = None

    def _gradient_masks(self, ctx: Context) -> tuple[list[Tensor], list[Tensor]]:
        raise NotImplementedError

    def mask_gradients(self, ctx: Context) -> None:
        """p.grad ⊙= the task's mask for every masked parameter (the masks are cached for the task)."""
        if self._masks is None or self._masks[0] != ctx.task_index:
            self._masks = (ctx.task_index, *self._gradient_masks(ctx))
        mask_grads(self._masks[1], self._masks[2])


def per_task(scores_of, x: Tensor, task_ids: Tensor) -> Tensor:
    """``scores_of(t, x_t)`` for each task t among ``task_ids``, put back in the batch's order (one call
    when the batch holds one task, as evaluation's batches do)."""
    tasks = task_ids.unique().tolist()
    if len(tasks) == 1:
        return scores_of(tasks[0], x)
    out = None
    for t in tasks:
        rows = task_ids == t
        scores = scores_of(t, x[rows])
        out = scores.new_zeros(len(x), scores.shape[1]) if out is None else out
        out[rows] = scores
    return out


def count(tensors) -> int:
    return sum(t.nelement() for t in tensors)


def capacity(unit: str, used: list[float], own: list[float], free: float | None, mask_bytes: int,
             extra_parameter_bytes: int, total_parameters: int) -> dict[str, Any]:
    """The ``capacity`` entry of results.json (see the module docstring)."""
    return {"unit": unit, "used": [float(u) for u in used], "own": [float(o) for o in own],
            "free": None if free is None else float(free), "mask_bytes": int(mask_bytes),
            "extra_parameter_bytes": int(extra_parameter_bytes), "total_parameters": int(total_parameters)}


def unit_shares(masks: list[Tensor]) -> tuple[list[float], list[float], float]:
    """``(used, own, union)`` of per-layer bool unit masks, each (T, U_l): per task the share of all
    hidden units it has on, the share it turns on first (not on for any earlier task), and the share
    on for any task."""
    total = sum(m.shape[1] for m in masks)
    seen = [torch.zeros_like(m[0]) for m in masks]
    used, own = [], []
    for t in range(masks[0].shape[0]):
        used.append(sum(int(m[t].sum()) for m in masks) / total)
        own.append(sum(int((m[t] & ~s).sum()) for m, s in zip(masks, seen)) / total)
        seen = [s | m[t] for m, s in zip(masks, seen)]
    return used, own, sum(int(s.sum()) for s in seen) / total


def numbered(state: dict[str, Tensor], prefix: str, who: str) -> list[dict[str, Tensor]]:
    """``state``'s entries ``<prefix><k>.<name>`` as a list over k = 0, 1, ... of ``{name: tensor}``
    (a frozen network or column per task); a gap in k is a ValueError."""
    found: dict[int, dict[str, Tensor]] = {}
    for key, v in state.items():
        if key.startswith(prefix):
            k, name = key[len(prefix):].split(".", 1)
            found.setdefault(int(k), {})[name] = v
    if sorted(found) != list(range(len(found))):
        raise ValueError(f"{who}: the stored {prefix.rstrip('.')}s are not 0..{len(found) - 1}")
    return [found[k] for k in range(len(found))]


def check_keys(name: str, state: dict[str, Tensor], allowed: tuple[str, ...]) -> None:
    bad = sorted(k for k in state if not k.startswith(allowed))
    if bad:
        raise ValueError(f"strategy {name!r} does not know the state keys {bad[:3]}")


def head_masks(ctx: Context, layers: Layers) -> tuple[list[Tensor], list[Tensor]]:
    """(params, gradient masks) of the output layer: the rows (and biases) of the units of tasks
    before ``ctx.task_index`` get zero gradient, so a later task cannot move an earlier task's head
    even where their units overlap."""
    head = layers.layer(layers.hidden)
    old = torch.zeros(head.out_features, dtype=torch.bool, device=head.weight.device)
    earlier = ctx.heads.units_of(range(ctx.task_index))
    if earlier:
        old[earlier] = True
    rows = (~old).to(head.weight.dtype)
    params, masks = [head.weight], [rows[:, None].expand_as(head.weight).contiguous()]
    if head.bias is not None:
        params.append(head.bias)
        masks.append(rows.clone())
    return params, masks


def mask_grads(params: list[Tensor], masks: list[Tensor]) -> None:
    """p.grad ⊙= mask for every parameter with a gradient, in one fused call (no loop per step)."""
    pairs = [(p.grad, m) for p, m in zip(params, masks) if p.grad is not None]
    if pairs:
        torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])
