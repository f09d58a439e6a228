"""Learning without Forgetting (LwF; Li & Hoiem 2017, TPAMI, eqs. 2-4): distillation from the model
as it was when the current task began, on the current task's inputs; no memory.

With p = softmax(f_old(x)/T) and q = softmax(f(x)/T) over the old units,

    L_old(x) = − Σ_k p_k log q_k                             (their eq. 3; no T² factor, as theirs and
                                                             van de Ven et al.'s code)
    L = CE(B) + α · mean_B L_old                             (--lwf-weighting sum, Li & Hoiem)
    L = (1/t) CE(B) + (1 − 1/t) mean_B L_old                 (--lwf-weighting tasks, van de Ven et al.)

The "old units" follow the heads: task-incremental, each earlier task's own units, one distillation
term per earlier task, averaged; class-incremental with ``--class-units seen``, the classes of the tasks
before the current one; otherwise every unit. Nothing happens during the first task.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ...models.heads import masked_logits
from ..base import Context, Strategy
from ..settings import Settings, setting
from .base import Teacher, split_state


@dataclass(frozen=True)
class LwFSettings(Settings):
    alpha: float = setting(1.0, flag="--alpha", check=lambda v: v >= 0, must="be >= 0", maximum=1e30,
                           help="weight of the distillation term (LwF's λ_o)")
    temperature: float = setting(2.0, flag="--temperature", check=lambda v: v > 0, must="be > 0", maximum=1e6,
                                 help="distillation temperature T")
    lwf_weighting: str = setting("sum", flag="--lwf-weighting", choices=("sum", "tasks"),
                             help="sum: CE + alpha * distillation; tasks: 1/t CE + (1 - 1/t) distillation "
                                  "(van de Ven et al.; alpha unused)")


def distillation(student: Tensor, teacher: Tensor, T: float, mask: Tensor | None = None) -> Tensor:
    """Mean over the batch of −Σ_k softmax(teacher/T)_k log softmax(student/T)_k, over the units where
    ``mask`` ((C,) or (B, C) bool) is True (all when None)."""
    s = F.log_softmax(masked_logits(student / T, mask), dim=1)
    p = F.softmax(masked_logits(teacher / T, mask), dim=1)
    terms = p * s
    if mask is not None:
        terms = terms.masked_fill(~mask, 0.0)  # 0 · (−∞) would be nan
    return -terms.sum(1).mean()


def old_unit_masks(ctx: Context, x_tasks: Tensor) -> list[Tensor | None]:
    """The masks of the units distilled for the current task's samples (see module)."""
    t = ctx.task_index
    if ctx.heads.per_task:
        return [ctx.heads.task_masks[j] for j in range(t)]
    return [ctx.heads.seen(t - 1)]


class LwF(Strategy):
    """LwF: distil the previous model's outputs on the current inputs (see module)."""

    name = "lwf"
    Settings = LwFSettings

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = Teacher()

    def before_task(self, ctx):
        if ctx.task_index > 0:
            self.teacher.snapshot(ctx.model)

    def task_loss(self, ctx, batch, logits):
        loss = super().task_loss(ctx, batch, logits)
        if self.settings.lwf_weighting == "tasks" and ctx.task_index > 0:
            loss = loss / (ctx.task_index + 1)
        return loss

    def extra_loss(self, ctx, batch, logits):
        teacher = self.teacher.get(ctx.model) if ctx.task_index > 0 else None
        if teacher is None:
            return None
        with torch.no_grad():
            old = teacher(batch.x)
        masks = old_unit_masks(ctx, batch.task)
        kd = sum(distillation(logits, old, self.settings.temperature, m) for m in masks) / len(masks)
        if self.settings.lwf_weighting == "tasks":
            return (1.0 - 1.0 / (ctx.task_index + 1)) * kd
        return self.settings.alpha * kd

    def state_dict(self):
        return self.teacher.state_dict()

    def load_state_dict(self, state):
        (teacher,) = split_state(state, "teacher.")
        self.teacher.load(teacher)

    def check_state(self, model):
        self.teacher.check(model)
