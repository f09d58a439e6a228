"""HAT, hard attention to the task (Serra, Surís, Miron & Karatzoglou 2018, ICML, "Overcoming
catastrophic forgetting with hard attention to the task").

Each task t has a learned embedding e_t^l per hidden layer l; its gate is a_t^l = σ(s e_t^l) (Eq. 1),
multiplying the activation of layer l. Within each epoch the slope s is annealed from 1/s_max to s_max
over the B mini-batches, s = 1/s_max + (s_max − 1/s_max)(b − 1)/(B − 1) (Eq. 3), so the gates become
nearly binary. After task t the cumulative mask a^{≤t} = max(a^{<t}, a_t) marks the units earlier tasks
use, and while later tasks train the gradient of the weight from unit j (layer l−1) to unit i (layer l)
is multiplied by 1 − min(a^{<t}_{l,i}, a^{<t}_{l−1,j}) (Eq. 2; for the first layer by 1 − a^{<t}_{1,i},
for a bias by 1 − a^{<t}_{l,i}). The embeddings' gradient is compensated for the annealing (Sec. 2.5):
q' = s_max [cosh(s e) + 1] / (s [cosh(e) + 1]) · q, with s e clamped to ±50 before cosh, and the
embeddings are clamped to ±6 after each step (the authors' code). The capacity regularizer (Eq. 5),
R = Σ_l Σ_i a_{t,i}^l (1 − a^{<t,l}_i) / Σ_l Σ_i (1 − a^{<t,l}_i), joins the loss times ``c`` (the loss
term ``capacity``). The step's gates and slope travel in the step record (``step.aux["hat.gates"]``,
``["hat.slope"]``) from ``forward`` to ``losses`` and ``before_step``.

Binary at test time, exactly: a task's gate at test time is 1[e > 0] (the limit s → ∞; the paper's
σ(s_max e) differs from it by at most σ(−s_max |e|)), and the cumulative mask is the union of those
binary gates. A protected weight then gets a gradient of exactly 0, and an old task's units see only
protected weights (an unprotected weight's input unit is gated to exactly 0 for that task), so every
old task's accuracy is the same to the last bit after any later task. The output layer's rows are the
task-incremental heads; a unit's row is frozen once the task that uses it has trained.

Speed on CPU: while the slope is large, gates such as σ(−100) and their products are subnormal floats,
which make CPU arithmetic several times slower (measured 3×). From a training step's forward pass to
its optimizer step HAT turns on the CPU's flush-to-zero mode (``torch.set_flush_denormal``), which
changes only values below 1.2e-38 in magnitude, and turns it off again after the step (at a task's end,
and when a step fails half-way: :meth:`release`); on a GPU nothing changes.

State: ``embedding.<l>`` (T, U_l) float, trained by the run's optimizer; ``cumulative.<l>`` (U_l,) bool.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...settings import Settings, setting
from ..base import Context, Step, tensor_bytes
from ..state import Group, Position
from .base import Isolation, capacity, check_keys, count, head_masks, unit_shares
from .layers import UnitGates, hidden_units

EMBEDDING_CLAMP = 6.0  # |e| after each step (the authors' thres_emb)
COSH_CLAMP = 50.0  # |s e| inside cosh, against overflow (the authors' thres_cosh)


@dataclass(frozen=True)
class HATSettings(Settings):
    s_max: float = setting(400.0, flag="s-max", check=lambda v: v >= 1, must="be >= 1",
                           help="the gates' final slope s_max (Eq. 3)")
    c: float = setting(0.75, flag="hat-c", check=lambda v: v >= 0, must="be >= 0",
                       help="strength c of the capacity regularizer (Eq. 5)")


def slope(s_max: float, b: int, B: int) -> float:
    """Eq. 3 with b counted from 0: 1/s_max at an epoch's first batch, s_max at its last."""
    if B <= 1:
        return s_max
    return 1 / s_max + (s_max - 1 / s_max) * b / (B - 1)


class HAT(Isolation):
    """Hard attention to the task: learned, nearly binary unit gates per task; gradients of weights
    that earlier tasks use are masked."""

    name = "hat"
    Settings = HATSettings
    needs_task_because = "the task's identity selects its attention masks"
    composable = False
    loss_terms = ("capacity",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.embedding: list[Tensor] = []  # (T, U_l), leaf tensors that require grad
        self.cumulative: list[Tensor] = []  # (U_l,) bool
        self.gates = UnitGates()
        self._masks = None  # the current task's gradient masks (made once per task)
        self._flushing = False  # whether the CPU's flush-to-zero mode is on (process state, not the run's)

    def _flush(self, on: bool) -> None:
        if on != self._flushing:
            torch.set_flush_denormal(on)
            self._flushing = on

    def _ready(self, ctx: Context) -> None:
        layers = self.layers(ctx)
        if not self.embedding:
            T = self.n_tasks(ctx)
            self.embedding = [torch.randn(T, u, generator=ctx.generator).clamp_(-EMBEDDING_CLAMP, EMBEDDING_CLAMP)
                              .to(ctx.device).requires_grad_(True) for u in layers.units]
            self.cumulative = [torch.zeros(u, dtype=torch.bool, device=ctx.device) for u in layers.units]
        self.gates.attach(ctx.model, layers)

    def parameters(self) -> list[Tensor]:
        return list(self.embedding)

    def before_task(self, ctx: Context) -> None:
        self._ready(ctx)
        self._masks = None

    # ---- one step ----------------------------------------------------------------------------------------
    def forward(self, ctx: Context, step: Step) -> Tensor:
        self._ready(ctx)
        self._flush(step.inputs.x.device.type == "cpu")  # until after_step: subnormal gates are slow on CPU
        t, per_epoch = ctx.task_index, ctx.steps_per_epoch
        s = slope(self.settings.s_max, ctx.task_step % per_epoch, per_epoch)
        gates = [torch.sigmoid(s * e[t]) for e in self.embedding]  # a_t^l, (U_l,)
        step.aux["hat.slope"], step.aux["hat.gates"] = s, gates
        with self.gates.using(gates):
            return ctx.model(step.inputs.x)

    def losses(self, ctx: Context, step: Step) -> dict[str, Tensor]:
        gates = step.aux.get("hat.gates")
        if self.settings.c == 0 or gates is None:
            return {}
        return {"capacity": self.capacity_loss(gates)}

    def capacity_loss(self, gates: list[Tensor]) -> Tensor:
        """c · R of Eq. 5 for the training gates ``gates`` against the cumulative mask."""
        free = [(~c).to(a.dtype) for a, c in zip(gates, self.cumulative)]
        denominator = sum(f.sum() for f in free)
        numerator = sum((a * f).sum() for a, f in zip(gates, free))
        return self.settings.c * numerator / denominator.clamp(min=1)  # Eq. 5 (0 when every unit is taken)

    def _gradient_masks(self, ctx: Context) -> tuple[list[Tensor], list[Tensor]]:
        """Eq. 2 with the binary cumulative masks, per parameter, for the current task."""
        layers = self.layers(ctx)
        params, masks = [], []
        for l in range(layers.hidden):
            m = layers.layer(l)
            post = self.cumulative[l].to(m.weight.dtype)  # (U_l,)
            if l == 0:
                keep = 1 - post[:, None]  # (U_0, 1)
            else:
                pre = self.cumulative[l - 1].to(m.weight.dtype)[layers.input_units[l].to(post.device)]  # (fan_in,)
                keep = 1 - torch.minimum(post[:, None], pre[None, :])  # (U_l, fan_in)
            if m.weight.dim() == 4:
                keep = keep[:, :, None, None]  # a channel's gate covers its whole kernel
            params.append(m.weight)
            masks.append(keep.expand_as(m.weight).contiguous())
            if m.bias is not None:
                params.append(m.bias)
                masks.append(1 - post)
        hp, hm = head_masks(ctx, layers)
        return params + hp, masks + hm

    def before_step(self, ctx: Context, step: Step) -> None:
        self.mask_gradients(ctx)
        t, s, s_max = ctx.task_index, step.aux["hat.slope"], self.settings.s_max
        with torch.no_grad():
            for e in self.embedding:  # gradient compensation (Sec. 2.5), the current task's row only
                if e.grad is None:
                    continue
                row = e[t]
                num = torch.cosh(torch.clamp(s * row, -COSH_CLAMP, COSH_CLAMP)) + 1
                den = torch.cosh(row) + 1
                e.grad[t] *= s_max / s * num / den

    def after_step(self, ctx: Context, step: Step) -> None:
        with torch.no_grad():
            for e in self.embedding:
                e[ctx.task_index].clamp_(-EMBEDDING_CLAMP, EMBEDDING_CLAMP)
        self._flush(False)

    def release(self, ctx: Context) -> None:
        self._flush(False)  # a step that failed half-way must not leave the process flushing subnormals

    def after_task(self, ctx: Context) -> None:
        self._flush(False)
        t = ctx.task_index
        with torch.no_grad():
            self.cumulative = [c | (e[t] > 0) for c, e in zip(self.cumulative, self.embedding)]
        self._masks = None
        self.gates.default = [(e[t].detach() > 0).float() for e in self.embedding]

    # ---- test time -----------------------------------------------------------------------------------------
    def predict(self, ctx: Context, x: Tensor, task_ids: Tensor) -> Tensor:
        self._ready(ctx)
        binary = [(e.detach().index_select(0, task_ids) > 0).to(x.dtype) for e in self.embedding]  # (B, U_l)
        with self.gates.using(binary):
            return ctx.model(x)

    # ---- state -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        out = {f"embedding.{l}": e.detach() for l, e in enumerate(self.embedding)}
        out.update({f"cumulative.{l}": c for l, c in enumerate(self.cumulative)})
        return out

    def state_spec(self, ctx: Context, at: Position) -> list[Group]:
        """Each hidden layer's task embeddings (tasks, units) and the units earlier tasks use, from the first step on."""
        T, units = self.n_tasks(ctx), self.layers(ctx).units
        tensors = {**{f"embedding.{l}": ((T, u), None) for l, u in enumerate(units)},
                   **{f"cumulative.{l}": ((u,), torch.bool) for l, u in enumerate(units)}}
        return [Group("hat's task embeddings and the units earlier tasks use", tensors, at.trained)]

    def load_state_dict(self, state: dict[str, Tensor], model) -> None:
        check_keys(self.name, state, ("embedding.", "cumulative."))
        n = sum(k.startswith("embedding.") for k in state)
        if sum(k.startswith("cumulative.") for k in state) != n:
            raise ValueError("hat: one cumulative mask per embedding is needed")
        embedding = [state[f"embedding.{l}"].detach().clone().float().requires_grad_(True) for l in range(n)]
        cumulative = [state[f"cumulative.{l}"] for l in range(n)]
        if any(c.dtype != torch.bool or c.shape != e.shape[1:] for c, e in zip(cumulative, embedding)):
            raise ValueError("hat: cumulative masks must be bool and match the embeddings' units")
        units = hidden_units(model)
        if embedding and [e.shape[1] for e in embedding] != units:
            raise ValueError(f"hat: embeddings for units {[e.shape[1] for e in embedding]}, the model's hidden "
                             f"layers have {units}")
        self.embedding, self.cumulative, self._masks = embedding, cumulative, None

    def capacity_report(self, ctx: Context) -> dict:
        used, own, _ = unit_shares([e.detach() > 0 for e in self.embedding])  # the binary test-time gates
        free = 1 - sum(int(c.sum()) for c in self.cumulative) / sum(c.numel() for c in self.cumulative)
        return capacity("units", used, own, free, tensor_bytes(self.cumulative), tensor_bytes(self.embedding),
                        count(ctx.model.parameters()) + count(self.embedding))
