"""What every importance-weighted regularizer shares: the quadratic penalty and its state.

    λ/2 Σ_i Ω_i (θ_i − θ̄_i)²  (+ λ/2 · offset)                       (lifelong.penalties, eq. 1)

A subclass says how Ω is computed and merged at the end of a task (``consolidate``); the loop adds the
penalty's gradient λΩ(θ − θ̄) to ``p.grad`` in closed form (``add_penalty_grad``), for trainable
parameters only. Use it in your own loop with a module where a hook takes a context::

    loss = F.cross_entropy(model(x), y) + reg.penalty(model)    # or: reg.add_penalty_grad(model) after backward
    ...
    reg.consolidate(model, data)                                # after each task
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import Tensor, nn

from ...errors import UsageError
from ...penalties import add_quadratic_grad_, empty_state, quadratic_penalty, state_from_tensors, state_tensors
from ..base import Context, Strategy
from ..settings import Settings, setting


def model_of(ctx: Context | nn.Module) -> nn.Module:
    """The model of a hook's context, or a module given directly (your own loop), unwrapped from
    ``nn.DataParallel``, ``DistributedDataParallel`` and ``torch.compile`` so that parameter names are
    the model's own (``0.weight``, not ``module.0.weight``)."""
    model = ctx if isinstance(ctx, nn.Module) else ctx.model
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


def params_of(reg: "Regularizer", model: nn.Module) -> dict[str, Tensor]:
    """The model's parameters by name, after checking that every parameter the penalty holds is there
    (a penalty that silently matched nothing would be 0)."""
    params = dict(model.named_parameters())
    missing = [n for n in reg.state["importance"] if n not in params]
    if missing:
        raise UsageError(
            f"{reg.name}: the penalty holds parameter {missing[0]!r} ({len(missing)} of {len(reg.state['importance'])} "
            f"missing) but the model has {next(iter(params), 'none')!r}...: pass the model it was consolidated on"
        )
    return params


def trainable(model: nn.Module) -> dict[str, Tensor]:
    """The parameters an optimizer moves: ``{name: p}`` for ``p.requires_grad``."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def lam_setting(default: float = 100.0):
    return setting(default, flag="--lambda", aliases=("--ewc-lambda",),
                   help="regularization strength λ in λ/2 Σ Ω (θ-θ*)², Ω the method's importance (EWC: the Fisher)",
                   check=lambda v: v >= 0, must="be >= 0", maximum=1e30)


@dataclass(frozen=True)
class LambdaSettings(Settings):
    lam: float = lam_setting()


class Regularizer(Strategy):
    """The quadratic penalty with its state ``self.state`` (importance, anchor, offset). Running
    tensors a subclass keeps between steps (SI's ω, RWalk's Fisher...) are ``{param name: tensor}``
    dict attributes named in ``_buffers``; ``state_dict`` saves them under ``"<buffer>.<param name>"``
    next to ``"penalty.*"``."""

    name = "regularizer"
    Settings = LambdaSettings
    importance_symbol = "Omega"  # how divergence messages name Ω (EWC: F, the Fisher)
    _buffers: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.state = empty_state()

    @property
    def lam(self) -> float:
        return self.settings.lam

    def penalty(self, ctx: Context | nn.Module) -> Tensor:
        """λ/2 Σ_i Ω_i (θ_i − θ̄_i)² (+ the constant of merged tasks); 0 before the first task."""
        return quadratic_penalty(params_of(self, model_of(ctx)), self.state, self.lam)

    def add_penalty_grad(self, ctx: Context | nn.Module) -> None:
        """``p.grad += λ Ω (θ − θ̄)`` for trainable parameters: the penalty's gradient in closed form."""
        add_quadratic_grad_(params_of(self, model_of(ctx)), self.state, self.lam)

    def consolidate(self, model: nn.Module, data: Iterable | None = None) -> dict[str, Tensor]:
        """End of a task: compute this task's importance at θ* and merge it into the penalty."""
        raise NotImplementedError

    def after_task(self, ctx: Context) -> None:
        self.consolidate(model_of(ctx), ctx.task_batches())

    def state_dict(self) -> dict[str, Tensor]:
        out = state_tensors(self.state, "penalty.")
        for key in self._buffers:
            out.update({f"{key}.{n}": t for n, t in getattr(self, key).items()})
        return out

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        known = ("penalty.", *(f"{key}." for key in self._buffers))
        unknown = sorted(k for k in state if not k.startswith(known))
        if unknown:
            raise ValueError(f"strategy {self.name!r} does not know the state keys {unknown[:3]}")
        self.state = state_from_tensors(state, "penalty.")
        for key in self._buffers:
            setattr(self, key, {k[len(key) + 1 :]: t for k, t in state.items() if k.startswith(f"{key}.")})

    def check_state(self, model: nn.Module) -> None:
        """Every tensor of the state names a parameter of ``model`` and has its shape and dtype; the
        penalty's importance and anchor name the same parameters; all values are finite."""
        params = dict(model_of(model).named_parameters())
        imp, anc, offset = self.state["importance"], self.state["anchor"], self.state["offset"]
        if set(imp) != set(anc):
            raise ValueError(f"importance and anchor name different parameters ({sorted(set(imp) ^ set(anc))[:2]})")
        if not (isinstance(offset, Tensor) and offset.dim() == 0 and bool(torch.isfinite(offset))):
            raise ValueError("penalty.offset must be a finite 0-d tensor")
        groups = {"penalty.importance": imp, "penalty.anchor": anc, **{b: getattr(self, b) for b in self._buffers}}
        for prefix, tensors in groups.items():
            for n, t in tensors.items():
                if n not in params:
                    raise ValueError(f"{prefix}.{n} names no parameter of the model")
                p = params[n]
                if tuple(t.shape) != tuple(p.shape) or t.dtype != p.dtype:
                    raise ValueError(f"{prefix}.{n} is {t.dtype} {tuple(t.shape)}, the parameter {p.dtype} {tuple(p.shape)}")
                if not bool(torch.isfinite(t).all()):
                    raise ValueError(f"{prefix}.{n} holds values that are not finite")

    def divergence_hint(self, optimizer: str, lr: float) -> str:
        imp = self.state["importance"]
        if not imp:
            return super().divergence_hint(optimizer, lr)
        wmax = max(float(t.max()) for t in imp.values())
        if optimizer == "sgd":
            product = self.lam * lr * wmax
            return (
                f"with SGD the {self.name} penalty is stable only if lambda x lr x max({self.importance_symbol}) < 2, here "
                f"{self.lam:g} x {lr:g} x {wmax:.3g} = {product:.3g}: lower --lambda or --lr"
                if math.isfinite(product) else f"max({self.importance_symbol}) is {wmax:.3g}: lower --lambda or --lr"
            )
        return (
            f"{self.name} lambda={self.lam:g} with max({self.importance_symbol})={wmax:.3g} may be too large: "
            "lower --lambda or --lr"
        )
