"""The state each strategy declares it keeps, and the check of a checkpoint against that declaration.

A strategy's :meth:`~lifelong.strategies.Strategy.state_spec` says, for a position in the stream
(:class:`Position`: tasks finished, and whether the next one is under way), which tensors its
``state_dict`` holds: groups of names with their shapes and dtypes, computed from its settings, the
model and the stream. A group is required, forbidden, or all-or-none there. :func:`check_state`
compares a checkpoint's strategy tensors with it before anything is loaded, so a state that lost a
part (EWC's penalty, XdG's gates, Separate's networks, PackNet's owner map, a replay memory) or gained
one is a one-line error instead of a run that silently goes on without it. A composite's declaration
is its parts', each under its name. ``tests/strategies/test_state.py`` checks every registered
strategy's declaration against the state it really keeps at every checkpoint of a stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

Shape = tuple  # ints, None for a dimension of any size


@dataclass(frozen=True)
class Position:
    """Where a checkpoint stands: ``done`` tasks finished (their ``after_task`` ran) and ``started``,
    whether the next task's ``before_task`` ran (a checkpoint in the middle of a task)."""

    done: int
    started: bool

    @property
    def trained(self) -> bool:
        """Whether any training step ran."""
        return self.done > 0 or self.started


@dataclass(frozen=True)
class Group:
    """Tensors kept together: ``tensors`` maps each key to ``(shape, dtype)`` (a None dimension: any
    size; a None dtype: any floating dtype). ``present``: True (must be there), False (must not be),
    None (all or none). ``rows``: the tensors share their first dimension, of 1 to ``rows`` rows."""

    what: str
    tensors: Mapping[str, tuple[Shape, torch.dtype | None]]
    present: bool | None = True
    rows: int | None = None


def like(tensors: Mapping[str, Tensor], prefix: str, what: str, present: bool | None) -> Group:
    """A group with the names, shapes and dtypes of ``tensors`` (a model's parameters or state), under ``prefix``."""
    return Group(what, {f"{prefix}{k}": (tuple(v.shape), v.dtype) for k, v in tensors.items()}, present)


def trainable(model: nn.Module) -> dict[str, Tensor]:
    """The parameters an optimizer moves: ``{name: p}`` for ``p.requires_grad``."""
    return {k: p for k, p in model.named_parameters() if p.requires_grad}


def prefixed(groups: Sequence[Group], prefix: str) -> list[Group]:
    """``groups`` with every key under ``prefix`` (a composite's part)."""
    return [Group(g.what, {f"{prefix}{k}": v for k, v in g.tensors.items()}, g.present, g.rows) for g in groups]


def check_state(state: Mapping[str, Tensor], groups: Sequence[Group]) -> str | None:
    """The first way ``state`` departs from the declaration ``groups``, in words; None when it fits."""
    owner = {k: g for g in groups for k in g.tensors}
    unknown = sorted(k for k in state if k not in owner)
    if unknown:
        return f"it holds {unknown[0]!r}, which this strategy does not keep here"
    for g in groups:
        have = [k for k in g.tensors if k in state]
        missing = [k for k in g.tensors if k not in state]
        if g.present is True and missing:
            return f"{missing[0]!r} is missing ({g.what})"
        if g.present is False and have:
            return f"it holds {have[0]!r} ({g.what}), which this strategy does not keep at this point of the stream"
        if g.present is None and have and missing:
            return f"{missing[0]!r} is missing ({g.what}: all of them or none)"
        n = None
        for k in have:
            shape, dtype = g.tensors[k]
            t = state[k]
            if dtype is None and not t.is_floating_point() or dtype is not None and t.dtype != dtype:
                want = "a floating dtype" if dtype is None else str(dtype).replace("torch.", "")
                return f"{k!r} is {str(t.dtype).replace('torch.', '')}, not {want} ({g.what})"
            if len(t.shape) != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
                want = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ")"
                return f"{k!r} has shape {tuple(t.shape)}, not {want} ({g.what})"
            if g.rows is not None:
                rows = t.shape[0] if t.dim() else -1
                if n is None:
                    n = rows
                if rows != n or not 1 <= rows <= g.rows:
                    return f"{k!r} has {rows} rows; {g.what} holds 1 to {g.rows}, the same number in each tensor"
    return None
