"""iCaRL (Rebuffi, Kolesnikov, Sperl & Lampert 2017, CVPR, "iCaRL: Incremental classifier and
representation learning", Algorithms 1-5).

- **Representation** (Alg. 3): train on the current task's data together with the exemplars, with a
  sigmoid cross-entropy over the live units whose targets are the one-hot label for the units of the
  current task's classes and the previous model's sigmoid outputs for the units of earlier classes
  (distillation):  L = − Σ_y [t_y log σ(z_y) + (1 − t_y) log(1 − σ(z_y))], summed over units,
  averaged over the batch.
- **Exemplars** (Alg. 4, 5): a budget of ``--memory`` K samples, m = ⌊K / classes seen⌋ per class; at a
  task's end each new class's exemplars are chosen by *herding*: with φ the L2-normalized features and
  μ their class mean, the k-th exemplar is argmin_x ‖μ − (φ(x) + Σ_{j<k} φ(p_j)) / k‖ among the
  samples not chosen yet; an old class keeps its first m (herding order is priority order).
- **Classifier** (Alg. 1): nearest mean of exemplars: y* = argmin_y ‖φ(x) − μ_y‖ with μ_y the
  normalized mean of class y's exemplar features, computed after each task (our ``predict`` hook;
  before the first task ends, the network's own outputs).

φ(x) is the input of the model's last ``nn.Linear`` (its penultimate representation), found by a
forward hook: any model whose output layer is a Linear works.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import UsageError
from ...scenarios import Task, batches
from ...settings import setting
from ..base import split_state
from ..state import Group
from .base import MemorySettings, Replay, Teacher, memory_setting, policy_setting


@dataclass(frozen=True)
class ICaRLSettings(MemorySettings):
    memory: int = memory_setting(2000)
    policy: str = policy_setting("class")
    bce: str = setting("sum", flag="icarl-bce", choices=("sum", "mean"), added=True,
                       help="the binary cross-entropy over the output units: sum (the paper's Alg. 3) or mean (as some "
                            "libraries average it: the same loss divided by the live units, so lr × units matches sum)")

    def check(self) -> None:
        super().check()
        if self.policy != "class":
            self.fail("policy", f"must be 'class': icarl keeps exemplars per class (herding), got {self.policy!r}")


def last_linear(model: nn.Module) -> nn.Linear:
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise UsageError("icarl needs a model whose output layer is an nn.Linear (its input is the feature vector)")
    return layers[-1]


def features(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """(φ(x) normalized to unit length, the model's outputs): φ is the input of the last Linear."""
    seen: dict[str, Tensor] = {}
    hook = last_linear(model).register_forward_hook(lambda m, inp, out: seen.__setitem__("f", inp[0]))
    try:
        out = model(x)
    finally:
        hook.remove()
    return F.normalize(seen["f"].flatten(1), dim=1), out


def herding(phi: Tensor, m: int) -> Tensor:
    """The first ``m`` picks of iCaRL's herding (Alg. 4) among the rows of ``phi`` (N, D), without
    repetition: indices (int64) in the order chosen."""
    mu = phi.mean(0)
    chosen: list[int] = []
    total = torch.zeros_like(mu)
    free = torch.ones(len(phi), dtype=torch.bool, device=phi.device)
    for k in range(1, min(m, len(phi)) + 1):
        dist = ((mu - (total + phi) / k) ** 2).sum(1).masked_fill(~free, float("inf"))
        i = int(dist.argmin())
        chosen.append(i)
        free[i] = False
        total = total + phi[i]
    return torch.tensor(chosen, dtype=torch.long)


class ICaRL(Replay):
    """iCaRL: herding exemplars, sigmoid distillation, nearest-mean-of-exemplars classifier (see module)."""

    name = "icarl"
    needs_boundaries = "it selects exemplars and class means at the end of each task"
    Settings = ICaRLSettings
    data_from_state = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = Teacher()
        self.means: Tensor | None = None  # (C, D) normalized class means of exemplar features
        self.has_mean: Tensor | None = None  # (C,) bool
        self._old: tuple[int, Tensor] | None = None  # (task index, its distilled units)

    def check_stream(self, ctx):
        super().check_stream(ctx)
        last_linear(ctx.model)  # its input is the feature vector of the nearest-mean classifier

    loss_terms = ("task",)

    def training_tasks(self, ctx):
        stream = ctx.stream
        return [stream[ctx.task_index]] + ([self.buffer.as_task(len(stream))] if len(self.buffer) else [])

    def before_task(self, ctx):
        if ctx.task_index > 0:
            self.teacher.snapshot(ctx.model)

    def losses(self, ctx, step):
        batch, logits = step.inputs, step.logits
        live = ctx.heads.live(batch.task, ctx.task_index)
        target = F.one_hot(batch.y, logits.shape[1]).to(logits.dtype)
        teacher = self.teacher.get(ctx.model) if ctx.task_index > 0 else None
        if teacher is not None:
            old = self._old_units(ctx, logits.device)
            with torch.no_grad():
                target[:, old] = torch.sigmoid(teacher(batch.x)[:, old])
        terms = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        if live is not None:
            terms = terms * live
        per_sample = terms.sum(1)
        if self.settings.bce == "mean":  # averaged over the live units instead of summed
            per_sample = per_sample / (live.sum(1) if live is not None else terms.new_full((len(terms),), terms.shape[1]))
        return {"task": per_sample.mean()}  # one term: iCaRL's distillation is in its targets

    def _old_units(self, ctx, device) -> Tensor:
        """The units of earlier tasks' classes that are not the current task's (distilled), made once per task."""
        if self._old is None or self._old[0] != ctx.task_index:
            new = set(ctx.heads.task_classes[ctx.task_index])
            units = [u for u in ctx.heads.units_of(range(ctx.task_index)) if u not in new]
            self._old = (ctx.task_index, torch.tensor(units, dtype=torch.long, device=device))
        return self._old[1]

    def after_task(self, ctx):
        self.buffer.select(ctx.task, ctx.heads.n_outputs, ctx.generator, self._herding_order(ctx))
        self._class_means(ctx)

    def _herding_order(self, ctx):
        @torch.no_grad()
        def order(task: Task, keys: Tensor, quota: int) -> Tensor:
            was = ctx.model.training
            ctx.model.eval()
            phi = torch.cat([features(ctx.model, b.x)[0] for b in batches([task], "train", batch_size=1000)])
            ctx.model.train(was)
            parts = []
            for k in torch.unique(keys).tolist():
                members = (keys == k).nonzero().squeeze(1)
                picks = members[herding(phi[members.to(phi.device)], quota)]
                rest = members[~torch.isin(members, picks)]
                parts += [picks, rest]
            return torch.cat(parts)
        return order

    @torch.no_grad()
    def _class_means(self, ctx) -> None:
        was = ctx.model.training
        ctx.model.eval()
        b = self.buffer
        phi = torch.cat([features(ctx.model, b.x[i:i + 1000])[0] for i in range(0, len(b), 1000)])
        ctx.model.train(was)
        C = ctx.heads.n_outputs
        sums = phi.new_zeros((C, phi.shape[1])).index_add_(0, b.y[: len(b)], phi)
        counts = torch.bincount(b.y[: len(b)], minlength=C)
        self.means = F.normalize(sums, dim=1)
        self.has_mean = counts > 0

    def predict(self, ctx, x, task_ids):
        if self.means is None:
            return ctx.model(x)
        phi, _ = features(ctx.model, x)
        # −‖φ − μ‖² = 2 φ·μ − ‖μ‖² − 1 for unit φ: the nearest mean has the largest score
        scores = 2 * phi @ self.means.T - (self.means ** 2).sum(1)
        # a class without exemplars is never the nearest (the lowest finite score: -inf means "diverged")
        return scores.masked_fill(~self.has_mean, torch.finfo(scores.dtype).min)

    def state_dict(self):
        state = {**super().state_dict(), **self.teacher.state_dict()}
        if self.means is not None:
            state.update({"nme.means": self.means, "nme.has_mean": self.has_mean})
        return state

    def state_spec(self, ctx, at):
        classes, width = ctx.heads.n_outputs, last_linear(ctx.model).in_features
        nme = Group("icarl's class means", {"nme.means": ((classes, width), None), "nme.has_mean": ((classes,), torch.bool)},
                    at.done > 0)
        return [*super().state_spec(ctx, at), self.teacher.spec(ctx, at), nme]

    def load_state_dict(self, state, model):
        memory, teacher, nme = split_state(state, "memory.", "teacher.", "nme.")
        super().load_state_dict({f"memory.{k}": v for k, v in memory.items()}, model)
        self.teacher.load(teacher, model)
        if set(nme) not in (set(), {"means", "has_mean"}):
            raise ValueError("icarl's class means need both nme.means and nme.has_mean")
        means, has_mean = nme.get("means"), nme.get("has_mean")
        if means is not None and (means.dim() != 2 or has_mean.dtype != torch.bool or has_mean.shape != means.shape[:1]):
            raise ValueError("icarl's nme.means must be (classes, features) with a bool nme.has_mean per class")
        if means is not None and means.shape[1] != last_linear(model).in_features:
            raise ValueError(f"icarl's class means have {means.shape[1]} features; the model's last layer "
                             f"takes {last_linear(model).in_features}")
        self.means, self.has_mean = means, has_mean
