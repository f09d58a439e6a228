"""What every importance-weighted regularizer shares: the quadratic penalty and its state.

    λ/2 Σ_i Ω_i (θ_i − θ̄_i)²  (+ λ/2 · offset)                       (lifelong.penalties, eq. 1)

A regularizer is its importance and its merge rule. At the end of a task it computes this task's
importance Ω_t at θ* (:meth:`Regularizer.importance`: the Fisher for EWC, the output sensitivity for
MAS, ones for L2), anchors it at θ*, and merges it into the penalty (:meth:`Regularizer.merge`: a sum
of separate quadratics, a decayed running one, or a replacement). The driver adds the penalty's
gradient λΩ(θ − θ̄) to ``p.grad`` in closed form (``add_penalty_grad``), for trainable parameters only.

A new regularizer is a settings dataclass and a subclass with ``importance`` (and ``merge`` if the
default sum is not its rule): see ``docs/extending.md``. In a loop that has only DataLoaders, the
penalty and the consolidation work on a model directly::

    loss = F.cross_entropy(model(x), y) + reg.penalty(model)
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
from ...penalties import (
    QuadraticState, add_quadratic_grad_, empty_state, merge_sum, quadratic_penalty, state_from_tensors, state_tensors,
)
from ...settings import Settings, setting
from ..base import Context, Strategy
from ..state import Group, Position, like, trainable
from .consolidation import Plateau, plateau_step, update_every


def model_of(where: Context | nn.Module) -> nn.Module:
    """The model of a hook's context, or a module given directly (your own loop), unwrapped from
    ``nn.DataParallel``, ``DistributedDataParallel`` and ``torch.compile`` so that parameter names are
    the model's own (``0.weight``, not ``module.0.weight``)."""
    model = where if isinstance(where, nn.Module) else where.model
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


def anchor_of(model: nn.Module, names: Iterable[str]) -> dict[str, Tensor]:
    """θ* of the parameters ``names``: the anchor a task's importance is centred on (detached, not copied:
    the optimizer replaces nothing in place that an anchor still needs, see :func:`merge_sum`)."""
    names = set(names)
    return {n: p.detach() for n, p in model.named_parameters() if n in names}


def lam_setting(default: float = 100.0):
    return setting(default, flag="lambda", aliases=("ewc-lambda",), check=lambda v: v >= 0, must="be >= 0",
                   maximum=1e30, help="regularization strength λ in λ/2 Σ Ω (θ-θ*)², Ω the method's importance "
                                      "(EWC: the Fisher)")


#: the penalty's conventions: ours (Kirkpatrick et al.'s eq. 3) and the reference codes' without the ½
CONVENTIONS = ("half", "no-half")


def convention_setting():
    return setting("half", flag="penalty-convention", choices=CONVENTIONS, added=True,
                   help="half: λ/2 Σ Ω (θ-θ*)², as the EWC paper; no-half: λ Σ Ω (θ-θ*)², as Hsu et al.'s and van de "
                        "Ven et al.'s code (the same penalty as half with 2λ): give their λ as it is")


@dataclass(frozen=True)
class LambdaSettings(Settings):
    """A regularizer whose only settings are its strength λ and the penalty's convention (MAS, L2)."""

    strategy = ""  # shared: each strategy that takes it as it is gets its own subclass
    lam: float = lam_setting()
    convention: str = convention_setting()


class Regularizer(Strategy):
    """The quadratic penalty with its state ``self.state`` (importance, anchor, offset). Running
    tensors a subclass keeps between steps (SI's ω, RWalk's Fisher...) are ``{param name: tensor}``
    dict attributes named in ``_buffers``; ``state_dict`` saves them under ``"<buffer>.<param name>"``
    next to ``"penalty.*"``."""

    name = "regularizer"
    Settings = LambdaSettings
    importance_symbol = "Omega"  # how divergence messages name Ω (EWC: F, the Fisher)
    _buffers: tuple[str, ...] = ()
    #: when each buffer is kept (its ``state_spec``): "task" while a task is under way, "trained" from the
    #: first step on, "done" from the end of the first task on (default "task")
    _buffer_when: dict[str, str] = {}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.state: QuadraticState = empty_state()
        # the boundary-free forms (:mod:`.consolidation`): the running importance and the detector's state
        self.running: dict[str, Tensor] = {}
        self.online: dict[str, Tensor] = {}

    # ---- when to consolidate (see .consolidation) ----------------------------------------------------
    @property
    def consolidation(self) -> str:
        return getattr(self.settings, "consolidate", "task")

    @property
    def every(self) -> int:
        """K: steps between running-importance updates (0: none, a pass over the task's data at its end)."""
        return update_every(self.settings) if hasattr(self.settings, "importance_every") else 0

    def task_free_problem(self) -> str:
        if self.consolidation != "task":
            return ""
        free = " set consolidate='plateau' or 'steps'" if hasattr(self.settings, "consolidate") else ""
        return (f"it consolidates at the end of each task, and a task-free stream has none (it would be fine-tuning "
                f"until the stream's end):{free or ' use ewc, online-ewc or mas with consolidate=plateau'}")

    def after_step(self, ctx: Context, step) -> None:
        K = self.every
        if not K:
            return
        if not self.online:
            dev = ctx.device
            self.online = {"block": torch.zeros(K, dtype=torch.float64, device=dev),
                           "window": torch.zeros(self.settings.plateau_window, dtype=torch.float64),
                           "meta": torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0], dtype=torch.float64),
                           "consolidated": torch.zeros(0, dtype=torch.long)}
        if self.consolidation == "plateau":  # this step's loss, kept on the device until the block ends
            total = sum(v.detach() for v in step.losses.values()) if step.losses else None
            if total is not None:
                self.online["block"][ctx.step % K] = total.to(torch.float64)
        if (ctx.step + 1) % K == 0:
            self._update_running(ctx, step)
            if self.consolidation == "plateau" and self._plateau_reached():
                self._consolidate_now(ctx)
        if self.consolidation == "steps" and (ctx.step + 1) % self.settings.consolidate_every == 0:
            self._consolidate_now(ctx)

    def _update_running(self, ctx: Context, step) -> None:
        """Ω̃ ← α Ω_batch + (1 − α) Ω̃ from the batch's own rows at the current θ (EWC++)."""
        own = step.batch.select(step.batch.rows(0))
        if own.y.shape[0] == 0:
            return
        model = model_of(ctx.model)
        imp = self.importance(model, [(own.x, own.y, ctx.live(ctx.task_index))], ctx.generator)
        a = self.settings.importance_decay
        meta = self.online["meta"]
        if not self.running or meta[0] == 0:
            self.running = {n: t.detach().clone() for n, t in imp.items()}
        else:
            self.running = {n: t.detach() * a + self.running[n] * (1.0 - a) for n, t in imp.items()}
        meta[0] += 1

    def _plateau_reached(self) -> bool:
        """The block's mean loss into the detector (one read of the device per block)."""
        s, meta = self.settings, self.online["meta"]
        n = int(meta[1])
        state = Plateau(tuple(self.online["window"][:n].tolist()), float(meta[2]), float(meta[3]), bool(meta[4]))
        state, hit = plateau_step(state, float(self.online["block"].mean()), s.plateau_window, s.plateau_mean,
                                  s.plateau_var)
        w = len(state.window)
        self.online["window"][:w] = torch.tensor(state.window, dtype=torch.float64)
        meta[1:] = torch.tensor([w, state.last_mean, state.last_var, float(state.peak)], dtype=torch.float64)
        return hit

    def _consolidate_now(self, ctx: Context) -> None:
        """Merge the running importance, anchored at the current θ, into the penalty."""
        if not self.running:
            return
        model = model_of(ctx.model)
        imp = {n: t.clone() for n, t in self.running.items()}
        self.state = self.merge(imp, anchor_of(model, imp))
        self.online["consolidated"] = torch.cat([self.online["consolidated"], torch.tensor([ctx.step + 1], device=self.online["consolidated"].device)])

    def consolidations(self) -> list[int] | None:
        """The steps (counted from 1) after which a boundary-free consolidation happened; None by task."""
        if self.consolidation == "task":
            return None
        return self.online["consolidated"].tolist() if self.online else []

    @property
    def lam(self) -> float:
        """The λ of λ/2 Σ Ω (θ − θ̄)²: the setting, doubled under ``convention='no-half'`` (λ Σ Ω (θ − θ̄)²)."""
        return self.settings.lam * (2.0 if getattr(self.settings, "convention", "half") == "no-half" else 1.0)

    # ---- the penalty ------------------------------------------------------------------------------
    def penalty(self, where: Context | nn.Module) -> Tensor:
        """λ/2 Σ_i Ω_i (θ_i − θ̄_i)² (+ the constant of merged tasks) at the parameters of ``where`` (a
        hook's context, or your model); 0 before the first task."""
        return quadratic_penalty(self._params(model_of(where)), self.state, self.lam)

    def add_penalty_grad(self, ctx: Context) -> None:
        """``p.grad += λ Ω (θ − θ̄)`` for trainable parameters: the penalty's gradient in closed form."""
        add_quadratic_grad_(self._params(model_of(ctx)), self.state, self.lam)

    def _params(self, model: nn.Module) -> dict[str, Tensor]:
        """The model's parameters by name, after checking that every parameter the penalty holds is there
        (a penalty that silently matched nothing would be 0)."""
        params = dict(model.named_parameters())
        missing = [n for n in self.state["importance"] if n not in params]
        if missing:
            raise UsageError(
                f"{self.name}: the penalty holds parameter {missing[0]!r} ({len(missing)} of "
                f"{len(self.state['importance'])} missing) but the model has {next(iter(params), 'none')!r}...: pass "
                "the model it was consolidated on")
        return params

    # ---- consolidation ----------------------------------------------------------------------------
    def importance(self, model: nn.Module, data: Iterable | None, generator: torch.Generator) -> dict[str, Tensor]:
        """This task's importance Ω_t at the current θ (= θ*), ``{param name: tensor}``."""
        raise NotImplementedError

    def merge(self, importance: dict[str, Tensor], anchor: dict[str, Tensor]) -> QuadraticState:
        """The penalty after this task: by default the sum of one quadratic per task (separate anchors)."""
        return merge_sum(self.state, importance, anchor)

    def consolidate(self, model: nn.Module, data: Iterable | None = None, *,
                    generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """End of a task: compute its importance at θ* over ``data`` ((x, y) or (x, y, mask) batches),
        merge it into the penalty, and return it."""
        model = model_of(model)
        generator = generator if generator is not None else getattr(self, "generator", None) or torch.Generator()
        imp = self.importance(model, data, generator)
        self.state = self.merge(imp, anchor_of(model, imp))
        return imp

    def after_task(self, ctx: Context) -> None:
        if self.consolidation != "task":
            return  # boundary-free: the task's end is not a consolidation point
        if self.every:  # EWC++: the running importance, anchored at θ*
            self._consolidate_now(ctx)
            return
        self.consolidate(ctx.model, ctx.task_batches(), generator=ctx.generator)

    # ---- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        out = state_tensors(self.state, "penalty.")
        for key in self._buffers:
            out.update({f"{key}.{n}": t for n, t in getattr(self, key).items()})
        out.update({f"running.{n}": t for n, t in self.running.items()})
        out.update({f"online.{k}": t for k, t in self.online.items()})
        return out

    def state_spec(self, ctx: Context, at: Position) -> list[Group]:
        """The penalty's offset always; its importance and anchor (one per trained parameter) once a task
        is done; each buffer (parameter-shaped) when ``_buffer_when`` says."""
        params = trainable(model_of(ctx.model))
        kept = {"task": at.started, "trained": at.trained, "done": at.done > 0}
        consolidated = at.done > 0 if self.consolidation == "task" else None  # boundary-free: any time
        groups = [Group("the penalty's constant", {"penalty.offset": ((), torch.float64)}),
                  like(params, "penalty.importance.", "the penalty's importance of the tasks learned", consolidated),
                  like(params, "penalty.anchor.", "the penalty's anchor, the parameters after the tasks learned", consolidated),
                  *(like(params, f"{key}.", f"{self.name}'s running {key}", kept[self._buffer_when.get(key, "task")])
                    for key in self._buffers)]
        K = self.every
        if K:
            groups += [like(params, "running.", "the running importance (EWC++)", None if at.trained else False),
                       Group("the consolidation's block, window, counters and steps",
                             {"online.block": ((K,), torch.float64),
                              "online.window": ((self.settings.plateau_window,), torch.float64),
                              "online.meta": ((5,), torch.float64), "online.consolidated": ((None,), torch.int64)},
                             at.trained)]
        return groups

    def load_state_dict(self, state: dict[str, Tensor], model: nn.Module) -> None:
        """Take the state, after checking that every tensor names a parameter of ``model`` with its shape
        and dtype, that the importance and anchor name the same parameters, and that all are finite."""
        known = ("penalty.", "running.", "online.", *(f"{key}." for key in self._buffers))
        unknown = sorted(k for k in state if not k.startswith(known))
        if unknown:
            raise ValueError(f"strategy {self.name!r} does not know the state keys {unknown[:3]}")
        pen = state_from_tensors(state, "penalty.")
        buffers = {key: {k[len(key) + 1:]: t for k, t in state.items() if k.startswith(f"{key}.")}
                   for key in (*self._buffers, "running")}
        online = {k[len("online."):]: t for k, t in state.items() if k.startswith("online.")}
        params = dict(model_of(model).named_parameters())
        imp, anc, offset = pen["importance"], pen["anchor"], pen["offset"]
        if set(imp) != set(anc):
            raise ValueError(f"importance and anchor name different parameters ({sorted(set(imp) ^ set(anc))[:2]})")
        if not (isinstance(offset, Tensor) and offset.dim() == 0 and bool(torch.isfinite(offset))):
            raise ValueError("penalty.offset must be a finite 0-d tensor")
        for prefix, tensors in {"penalty.importance": imp, "penalty.anchor": anc, **buffers}.items():
            for n, t in tensors.items():
                if n not in params:
                    raise ValueError(f"{prefix}.{n} names no parameter of the model")
                p = params[n]
                if tuple(t.shape) != tuple(p.shape) or t.dtype != p.dtype:
                    raise ValueError(f"{prefix}.{n} is {t.dtype} {tuple(t.shape)}, the parameter {p.dtype} {tuple(p.shape)}")
                if not bool(torch.isfinite(t).all()):
                    raise ValueError(f"{prefix}.{n} holds values that are not finite")
        if online and not bool(torch.isfinite(online.get("meta", torch.zeros(1))).all()):
            raise ValueError("online.meta holds values that are not finite")
        self.state = pen
        for key, tensors in buffers.items():
            setattr(self, key, tensors)
        self.online = dict(online)

    def report(self, ctx: Context) -> dict:
        out = super().report(ctx)
        if self.consolidation != "task":
            out["consolidations"] = self.consolidations()
        return out

    def curvature_max(self) -> float:
        """The penalty's largest curvature over λ: max(Ω), 0 before the first task."""
        return max((float(t.max()) for t in self.state["importance"].values()), default=0.0)

    def divergence_hint(self, ctx: Context) -> tuple[str, tuple[str, ...]]:
        wmax = self.curvature_max()
        if wmax != wmax:
            return (f"the {self.name} importance is not finite (the model diverged while it was estimated): lower "
                    "`lr` or `lam`", ("lr", "lam"))
        if not wmax > 0:
            return super().divergence_hint(ctx)
        optimizer, lr = getattr(ctx.settings, "optimizer", "sgd"), getattr(ctx.settings, "lr", float("nan"))
        sym = self.importance_symbol
        if optimizer == "sgd":
            product = self.lam * lr * wmax
            if math.isfinite(product):
                return (f"with SGD the {self.name} penalty is stable only if `lam` x `lr` x max({sym}) < 2, here "
                        f"{self.lam:g} x {lr:g} x {wmax:.3g} = {product:.3g}: lower `lam` or `lr`", ("lam", "lr"))
            return f"max({sym}) is {wmax:.3g}: lower `lam` or `lr`", ("lam", "lr")
        return f"{self.name} lam={self.lam:g} with max({sym})={wmax:.3g} may be too large: lower `lam` or `lr`", ("lam", "lr")
