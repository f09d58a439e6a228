"""Several strategies as one (optax's ``chain``): ``Compose(EWC(100.0), ER(memory=500))``, on the command
line ``--strategy ewc+er``.

Every hook calls the parts in order: a batch passes through each part's ``prepare_batch``; each part
adds its own loss terms and its penalty's gradient; ``forward``, ``predict`` and ``training_tasks`` come
from the one part that defines each. What cannot be shared is refused when the composite is made, with
one line naming both parts: two parts defining one of those hooks, two parts returning the same loss
term (``er`` with ``lwf``'s ``lwf_weighting='tasks'``, which rescales the task term), two replay
memories, or a part that changes how the whole network computes (PackNet, HAT, progressive and separate
networks run alone). State is saved under each part's name as a prefix (``ewc.penalty.importance.0.weight``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..errors import UsageError
from ..settings import Settings
from .base import Context, Step, Strategy
from .state import prefixed


@dataclass(frozen=True)
class ComposeSettings:
    """The settings of each part of a composite, in order; ``strategy`` is the composite's name."""

    parts: tuple[Settings, ...]

    @property
    def strategy(self) -> str:
        return "+".join(p.strategy for p in self.parts)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {p.strategy: p.as_dict() for p in self.parts}

    def id_dict(self) -> dict[str, dict[str, Any]]:
        return {p.strategy: p.id_dict() for p in self.parts}


def _overrides(part: Strategy, hook: str) -> bool:
    return getattr(type(part), hook) is not getattr(Strategy, hook)


class Compose(Strategy):
    """Several strategies run as one (see the module docstring)."""

    Settings = ComposeSettings
    _single = ("training_tasks", "forward", "predict")

    def __init__(self, *parts: Strategy) -> None:
        if len(parts) < 2:
            raise UsageError("a composite needs at least two strategies, e.g. ewc+l2")
        names = [p.name for p in parts]
        if len(set(names)) != len(names):
            raise UsageError(f"a composite takes each strategy once, got {'+'.join(names)}")
        for p in parts:
            if isinstance(p, Compose):
                raise UsageError("compose strategies directly: ewc+l2+si, not a composite of composites")
            if not p.composable:
                raise UsageError(f"{p.name} changes how the whole model computes (masks or columns), so another "
                                 f"strategy's estimates would see the wrong network: run {p.name} alone")
        self.parts = list(parts)
        self.name = "+".join(names)
        self.settings = ComposeSettings(tuple(p.settings for p in parts))
        self._owner: dict[str, Strategy | None] = {}
        for hook in self._single:
            owners = [p for p in parts if _overrides(p, hook)]
            if len(owners) > 1:
                raise UsageError(f"{self.name}: {owners[0].name} and {owners[1].name} both define {hook}; "
                                 "they cannot be combined")
            self._owner[hook] = owners[0] if owners else None
        memories = [p for p in parts if p.keeps_memory]
        if len(memories) > 1:
            raise UsageError(f"{self.name}: {memories[0].name} and {memories[1].name} each keep a replay memory; a "
                             "composite holds one (two would count the budget twice)")
        seen: dict[str, str] = {}
        for p in parts:
            for term in p.loss_terms:
                if term in seen:
                    raise UsageError(f"{self.name}: {seen[term]} and {p.name} both define the {term!r} loss term; "
                                     "they cannot be combined" + (f" ({_why(p, term)})" if _why(p, term) else ""))
                seen[term] = p.name
        self.loss_terms = tuple(seen)

    def check_stream(self, ctx):
        for p in self.parts:
            p.check_stream(ctx)

    def task_free_problem(self) -> str:
        return next((f"{p.name}: {why}" for p in self.parts if (why := p.task_free_problem())), "")

    @property
    def iid(self) -> bool:  # type: ignore[override]
        return any(p.iid for p in self.parts)

    def bind(self, model):
        for p in self.parts:
            p.bind(model)
        super().bind(model)

    def memory_bound(self, ctx):
        return sum(p.memory_bound(ctx) for p in self.parts)

    def before_task(self, ctx):
        for p in self.parts:
            p.before_task(ctx)

    def resume_task(self, ctx):
        for p in self.parts:
            p.resume_task(ctx)

    def training_tasks(self, ctx):
        owner = self._owner["training_tasks"]
        return owner.training_tasks(ctx) if owner else Strategy.training_tasks(self, ctx)

    @property
    def data_from_state(self):  # type: ignore[override]
        return any(p.data_from_state for p in self.parts)

    def parameters(self):
        return [t for p in self.parts for t in p.parameters()]

    def prepare_batch(self, ctx, step):
        for p in self.parts:  # each part sees the batch the parts before it prepared
            step.batch = p.prepare_batch(ctx, step)
        return step.batch

    def forward(self, ctx: Context, step: Step) -> Tensor:
        owner = self._owner["forward"]
        return owner.forward(ctx, step) if owner else Strategy.forward(self, ctx, step)

    def losses(self, ctx, step):
        terms: dict[str, Tensor] = {}
        for p in self.parts:
            terms.update(p.losses(ctx, step))
        return terms

    def after_backward(self, ctx, step):
        for p in self.parts:
            p.after_backward(ctx, step)

    def penalty(self, ctx):
        total = None
        for p in self.parts:
            t = p.penalty(ctx)
            if t is not None:
                total = t if total is None else total + t
        return total

    def add_penalty_grad(self, ctx):
        for p in self.parts:
            p.add_penalty_grad(ctx)

    def before_step(self, ctx, step):
        for p in self.parts:
            p.before_step(ctx, step)

    def after_step(self, ctx, step):
        for p in self.parts:
            p.after_step(ctx, step)

    def release(self, ctx):
        for p in self.parts:
            p.release(ctx)

    def after_task(self, ctx):
        for p in self.parts:
            p.after_task(ctx)

    def predict(self, ctx, x, task_ids):
        owner = self._owner["predict"]
        return owner.predict(ctx, x, task_ids) if owner else Strategy.predict(self, ctx, x, task_ids)

    def state_dict(self):
        return {f"{p.name}.{k}": v for p in self.parts for k, v in p.state_dict().items()}

    def state_spec(self, ctx, at):
        """The parts' declarations, each under its name."""
        return [g for p in self.parts for g in prefixed(p.state_spec(ctx, at), f"{p.name}.")]

    def load_state_dict(self, state, model):
        names = {p.name for p in self.parts}
        unknown = sorted(k for k in state if k.split(".", 1)[0] not in names)
        if unknown:
            raise ValueError(f"strategy {self.name!r} does not know the state keys {unknown[:3]}")
        for p in self.parts:
            prefix = f"{p.name}."
            p.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, model)

    def report(self, ctx):
        out: dict[str, Any] = {"state_bytes": 0, "keeps": {}}
        for p in self.parts:
            r = p.report(ctx)
            out["state_bytes"] += r["state_bytes"]
            out["keeps"].update({f"{p.name}.{k}": v for k, v in r["keeps"].items()})
            for key in ("memory", "capacity", "laplace", "consolidations"):
                if r.get(key) is not None:
                    out[key] = r[key]
        return out

    def divergence_hint(self, ctx):
        default = Strategy.divergence_hint(self, ctx)
        hints = [h for h in (p.divergence_hint(ctx) for p in self.parts) if h != default]
        if not hints:
            return default
        return "; or ".join(h for h, _ in hints), tuple(dict.fromkeys(q for _, ps in hints for q in ps))

    def __repr__(self) -> str:
        return f"Compose({', '.join(map(repr, self.parts))})"


def _why(part: Strategy, term: str) -> str:
    return getattr(part, "term_note", {}).get(term, "")
