"""EWC with a Kronecker-factored Laplace: the structured posterior of Ritter, Botev & Barber (2018,
"Online structured Laplace approximations for overcoming catastrophic forgetting", NeurIPS).

EWC is a Laplace approximation of the posterior after task t with a diagonal precision. Here each layer
keeps a block of the Fisher, A_t ⊗ G_t (:func:`lifelong.importance.kfac.kron_factors`: K-FAC for
``nn.Linear``, KFC for ``nn.Conv2d``), and the penalty while learning task t+1 is

    separate   λ/2 Σ_l Σ_{s≤t} vec(W̃_l − W̃*_{l,s})ᵀ (A_{l,s} ⊗ G_{l,s}) vec(W̃_l − W̃*_{l,s})           (EWC's form)
    online     λ/2 Σ_l vec(W̃_l − W̃*_{l,t})ᵀ (Σ_{s≤t} γ^{t−s} A_{l,s} ⊗ G_{l,s}) vec(W̃_l − W̃*_{l,t})    (Ritter eq. 7)

(W̃ = [W | b], :mod:`lifelong.penalties.kronecker`), plus ``tau``/2 ‖θ − θ*_s‖² per task (a prior
precision τ added to each task's precision, merged like the rest) and the diagonal EWC penalty for the
parameters outside such layers. The online precision is a sum of Kronecker products, which is not one:
``kron_sum="exact"`` keeps its T terms (memory and cost per step linear in T), ``"nearest"`` keeps the
nearest Kronecker product of the sum after each task (Van Loan & Pitsianis 1993; constant memory; its
relative error is in the state and the report).

λ means what it means for ``ewc``: the factors are means over the task's N samples (the Fisher of one
sample), so λ = N gives the Laplace approximation of the posterior (precision N·F̄) and Ritter et al.'s λ,
which multiplies the Hessian summed over the data, is ours divided by N.

    kfac = KFAC(lam=1000.0)
    loss = F.cross_entropy(model(x), y) + kfac.penalty(model)
    ...
    kfac.consolidate(model, loader)   # after each task
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import Tensor, nn

from ...errors import UsageError
from ...importance.kfac import kron_factors
from ...importance.persample import fold_width, kron_layers
from ...penalties import (
    add_quadratic_grad_, empty_state, merge_decay, merge_sum, quadratic_penalty, state_from_tensors, state_tensors,
)
from ...penalties.kronecker import (
    KronState, add_kron_grad_, folded, kron_penalty, merge_online, merge_separate, param_names,
)
from ...scenarios import batches
from ...settings import setting
from ..base import Context
from ..state import Group, Position, trainable
from .base import anchor_of, model_of
from .ewc import EWC, FisherSettings

ANCHORS = ("online", "separate")
KRON_SUMS = ("exact", "nearest")


@dataclass(frozen=True)
class KFACSettings(FisherSettings):
    anchors: str = setting("online", flag="anchors", choices=ANCHORS,
                           help="online: one precision, the sum of the tasks' Kronecker blocks, centred on the newest "
                                "parameters (Ritter et al. 2018); separate: one term per task at its own parameters "
                                "(EWC's form)")
    kron_sum: str = setting("exact", flag="kron-sum", choices=KRON_SUMS,
                            help="online precision: exact keeps every task's factors (memory and time linear in "
                                 "tasks); nearest keeps the nearest Kronecker product of the sum (constant memory)")
    gamma: float = setting(1.0, flag="gamma", check=lambda v: 0.0 < v <= 1.0, must="be in (0, 1]",
                           help="online decay γ in (0, 1]: precision ← γ·precision + the new task's")
    tau: float = setting(0.0, flag="prior-precision", check=lambda v: v >= 0, must="be >= 0", maximum=1e30,
                         help="prior precision τ added to each task's precision: τ/2 ‖θ-θ*‖² per task")

    def check(self) -> None:
        super().check()
        if self.anchors == "separate":
            if self.kron_sum != "exact":
                self.fail("kron_sum", "applies to anchors='online' (separate terms have their own anchors and are "
                                      "kept one by one)", "anchors")
            if self.gamma != 1.0:
                self.fail("gamma", "applies to anchors='online', not anchors='separate'", "anchors")


class KFAC(EWC):
    """EWC with a Kronecker-factored Laplace per ``nn.Linear``/``nn.Conv2d`` layer (Ritter et al. 2018), the
    diagonal Fisher for any other parameter; ``anchors`` online (default) or separate, ``kron_sum`` exact
    (default) or nearest, Fisher ``kind`` as in :class:`EWC`."""

    name = "kfac"
    Settings = KFACSettings

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.kron: KronState = {}
        self.prior = empty_state()  # τ/2 ‖θ − θ*‖² per task, merged as the diagonal part is
        self.errors: dict[str, Tensor] = {}  # per layer, the nearest-Kronecker relative error of each task

    # ---- the penalty ------------------------------------------------------------------------------
    def penalty(self, where: Context | nn.Module) -> Tensor:
        """The Kronecker part (:func:`kron_penalty`), the diagonal part and the prior, at the parameters of
        ``where``; 0 before the first task."""
        params = self._params(model_of(where))  # checked once, for all three parts
        total = quadratic_penalty(params, self.state, self.lam) + kron_penalty(params, self.kron, self.lam)
        return total + quadratic_penalty(params, self.prior, self.settings.tau) if self.settings.tau else total

    def add_penalty_grad(self, ctx: Context) -> None:
        params = self._params(model_of(ctx))  # once per step, for all three parts
        add_quadratic_grad_(params, self.state, self.lam)
        add_kron_grad_(params, self.kron, self.lam)
        if self.settings.tau:
            add_quadratic_grad_(params, self.prior, self.settings.tau)

    def _params(self, model: nn.Module) -> dict[str, Tensor]:
        params = super()._params(model)
        modules = dict(model.named_modules())
        missing = [layer for layer in self.kron if layer not in modules]
        if missing:
            raise UsageError(f"{self.name}: the penalty holds layer {missing[0]!r} but the model has no such module: "
                             "pass the model it was consolidated on")
        return params

    # ---- consolidation ----------------------------------------------------------------------------
    def consolidate(self, model: nn.Module, data: Iterable | None = None, *,
                    generator: torch.Generator | None = None) -> dict[str, dict[str, Tensor]]:
        """End of a task: the Kronecker factors (and the diagonal Fisher of other parameters) at θ* over
        ``data``, merged into the penalty; returns the factors."""
        model = model_of(model)
        generator = generator if generator is not None else self.generator
        s = self.settings
        factors, diagonal, _ = kron_factors(model, data, s.fisher, generator=generator, mc_samples=s.mc_samples)
        params = dict(model.named_parameters())
        anchors = {layer: folded(params, layer, f["A"].shape[-1]) for layer, f in factors.items()}
        if s.anchors == "separate":
            self.kron = merge_separate(self.kron, factors, anchors)
            self.state = merge_sum(self.state, diagonal, anchor_of(model, diagonal))
        else:
            self.kron, errors = merge_online(self.kron, factors, anchors, s.gamma, nearest=s.kron_sum == "nearest")
            self.state = merge_decay(self.state, diagonal, anchor_of(model, diagonal), s.gamma)
            if s.kron_sum == "nearest":
                for layer, e in errors.items():
                    new = torch.tensor([e], dtype=torch.float64)
                    self.errors[layer] = torch.cat([self.errors[layer], new]) if layer in self.errors else new
        if s.tau:
            ones = {n: torch.ones_like(p) for n, p in trainable(model).items()}
            merge = merge_sum if s.anchors == "separate" else (lambda *a: merge_decay(*a, s.gamma))
            self.prior = merge(self.prior, ones, anchor_of(model, ones))
        return factors

    # ---- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        out = super().state_dict()
        for layer, s in self.kron.items():
            out.update({f"kron.{layer}.{k}": t for k, t in s.items()})
        out.update({f"error.{layer}": t for layer, t in self.errors.items()})
        if self.settings.tau:
            out.update(state_tensors(self.prior, "prior."))
        return out

    def layers(self, ctx: Context) -> dict[str, nn.Module]:
        """The layers that get Kronecker factors on ``ctx.stream`` (one forward of one training sample)."""
        model = model_of(ctx.model)
        x = next(iter(batches([ctx.stream[0]], "train", batch_size=1))).x.to(ctx.device)
        return kron_layers(model, x)

    def state_spec(self, ctx: Context, at: Position) -> list[Group]:
        """The diagonal penalty of the parameters outside the Kronecker layers, each layer's factors (one row
        per task, or one for ``kron_sum='nearest'``) and anchors (one per task for separate anchors, else
        one), the nearest-Kronecker errors, and the prior's quadratic when ``tau`` > 0."""
        model = model_of(ctx.model)
        params = trainable(model)
        layers = self.layers(ctx)
        done, s = at.done > 0, self.settings
        covered = {n for layer, m in layers.items() for n, p in zip(param_names(layer), (m.weight, m.bias))
                   if p is not None and p.requires_grad}
        diag = {n: p for n, p in params.items() if n not in covered}
        groups = [Group("the penalty's constant", {"penalty.offset": ((), torch.float64)})]
        if diag:
            groups.append(Group("the diagonal penalty of the parameters outside Kronecker-factored layers",
                                {f"penalty.{k}.{n}": (tuple(p.shape), p.dtype) for k in ("importance", "anchor")
                                 for n, p in diag.items()}, done))
        rows = at.done if s.kron_sum == "exact" or s.anchors == "separate" else 1
        for layer, m in layers.items():
            o, w, dt = m.weight.shape[0], fold_width(m), m.weight.dtype
            factors = {f"kron.{layer}.A": ((None, w, w), dt), f"kron.{layer}.G": ((None, o, o), dt)}
            anchor = {f"kron.{layer}.anchor": ((None, o, w), dt)}
            if s.anchors == "separate":
                groups.append(Group(f"layer {layer}'s Kronecker factors and anchors, one per task", {**factors, **anchor},
                                    done, max(rows, 1)))
            else:
                groups += [Group(f"layer {layer}'s Kronecker factors", factors, done, max(rows, 1)),
                           Group(f"layer {layer}'s anchor", anchor, done, 1)]
            if s.anchors == "online" and s.kron_sum == "nearest":
                groups.append(Group(f"layer {layer}'s nearest-Kronecker errors", {f"error.{layer}": ((None,), torch.float64)},
                                    done, max(at.done, 1)))
        if s.tau:
            groups += [Group("the prior's constant", {"prior.offset": ((), torch.float64)}),
                       Group("the prior's anchors", {f"prior.{k}.{n}": (tuple(p.shape), p.dtype)
                                                     for k in ("importance", "anchor") for n, p in params.items()}, done)]
        return groups

    def load_state_dict(self, state: dict[str, Tensor], model: nn.Module) -> None:
        """Take the state after checking each layer's factors and anchors against ``model`` (a module of that
        name, square factors of its folded width and outputs, rows that agree, finite values), then the
        diagonal part and the prior as :class:`Regularizer` checks them."""
        model = model_of(model)
        kron, errors, prior, rest = {}, {}, {}, {}
        for k, t in state.items():
            if k.startswith("kron."):
                layer, _, part = k[5:].rpartition(".")
                if part not in ("A", "G", "anchor"):
                    raise ValueError(f"strategy {self.name!r} does not know the state key {k!r}")
                kron.setdefault(layer, {})[part] = t
            elif k.startswith("error."):
                errors[k[6:]] = t
            elif k.startswith("prior."):
                prior[k] = t
            else:
                rest[k] = t
        modules = dict(model.named_modules())
        for layer, s in kron.items():
            m = modules.get(layer)
            if m is None or not hasattr(m, "weight"):
                raise ValueError(f"kron.{layer} names no layer of the model")
            if set(s) != {"A", "G", "anchor"}:
                raise ValueError(f"kron.{layer} holds {sorted(s)}, not A, G and anchor")
            o, w = m.weight.shape[0], fold_width(m)
            want = {"A": (w, w), "G": (o, o), "anchor": (o, w)}
            for part, t in s.items():
                if t.dim() != 3 or tuple(t.shape[1:]) != want[part] or t.dtype != m.weight.dtype:
                    raise ValueError(f"kron.{layer}.{part} is {t.dtype} {tuple(t.shape)}, not (n, {want[part][0]}, "
                                     f"{want[part][1]}) {m.weight.dtype}")
                if not bool(torch.isfinite(t).all()):
                    raise ValueError(f"kron.{layer}.{part} holds values that are not finite")
            if s["A"].shape[0] != s["G"].shape[0] or s["anchor"].shape[0] not in (1, s["A"].shape[0]):
                raise ValueError(f"kron.{layer}: {s['A'].shape[0]} A, {s['G'].shape[0]} G and {s['anchor'].shape[0]} "
                                 "anchors do not make terms")
        super().load_state_dict(rest, model)
        self.kron, self.errors = kron, errors
        self.prior = state_from_tensors(prior, "prior.") if prior else empty_state()

    def report(self, ctx: Context) -> dict:
        """The state's bytes, which layers are Kronecker-factored, with how many terms, which parameters fall
        back to the diagonal Fisher, and the nearest-Kronecker errors."""
        return {**super().report(ctx), "laplace": self.report_laplace()}

    def report_laplace(self) -> dict:
        """Which layers are Kronecker-factored (with their number of terms), which parameters have the
        diagonal Fisher, and the nearest-Kronecker relative errors per task."""
        return {
            "kronecker_layers": {layer: int(s["A"].shape[0]) for layer, s in self.kron.items()},
            "diagonal_parameters": sorted(self.state["importance"]),
            "nearest_kronecker_error": {layer: [round(float(e), 6) for e in t] for layer, t in self.errors.items()},
        }

    def curvature_max(self) -> float:
        """An upper bound of the penalty's largest curvature over λ: the diagonal's largest entry, and per layer
        Σ_t λ_max(A_t) λ_max(G_t) (the eigenvalues of A ⊗ G are products of theirs)."""
        bound = super().curvature_max()
        for s in self.kron.values():
            top = torch.linalg.eigvalsh(s["A"].double())[:, -1] * torch.linalg.eigvalsh(s["G"].double())[:, -1]
            bound = max(bound, float(top.sum()))
        return bound
