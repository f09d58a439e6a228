"""Learning without Forgetting (LwF; Li & Hoiem 2017, TPAMI, eqs. 2-4): distillation from the model
as it was when the current task began, on the current task's inputs; no memory.

With p = softmax(f_old(x)/T) and q = softmax(f(x)/T) over the old units,

    L_old(x) = − Σ_k p_k log q_k                             (their eq. 3; no T² factor, as theirs and
                                                             van de Ven et al.'s code)
    L = CE(B) + α · mean_B L_old                             (--lwf-weighting sum, Li & Hoiem)
    L = (1/t) CE(B) + (1 − 1/t) mean_B L_old                 (--lwf-weighting tasks, van de Ven et al.)

The "old units" follow the heads: task-incremental, each earlier task's own units, one distillation
term per earlier task, averaged; otherwise one term over the single head, p over the units the old
model was trained on (with ``--class-units seen`` the classes of the earlier tasks, else every unit)
and q over the units live now (with ``seen``, the current task's classes too, whose targets are 0: van
de Ven et al.'s ``loss_fn_kd``, which pads the old model's probabilities with zeros). Nothing happens
during the first task.
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


def distillation(student: Tensor, teacher: Tensor, T: float, mask: Tensor | None = None,
                 student_mask: Tensor | None = None) -> Tensor:
    """Mean over the batch of −Σ_k p_k log q_k with p = softmax(teacher/T) over the units where ``mask``
    ((C,) or (B, C) bool) is True (all when None) and 0 elsewhere, and q = softmax(student/T) over the
    units of ``student_mask`` (default: ``mask``), which must include them."""
    student_mask = mask if student_mask is None else student_mask
    s = F.log_softmax(masked_logits(student / T, student_mask), dim=1)
    p = F.softmax(masked_logits(teacher / T, mask), dim=1)
    terms = p * s
    if student_mask is not None or mask is not None:
        keep = mask if mask is not None else student_mask
        terms = terms.masked_fill(~keep, 0.0)  # 0 · (−∞) would be nan
    return -terms.sum(1).mean()


def old_unit_masks(ctx: Context) -> list[tuple[Tensor | None, Tensor | None]]:
    """(teacher units, student units) of each distillation term for the current task's samples."""
    t = ctx.task_index
    if ctx.heads.per_task:
        return [(ctx.heads.task_masks[j], ctx.heads.task_masks[j]) for j in range(t)]
    # one head: the teacher's units are those it was trained on, the student's those live now (van de
    # Ven et al.'s code: the teacher's probabilities padded with zeros for the classes new to this task)
    return [(ctx.heads.seen(t - 1), ctx.heads.seen(t))]


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
        masks = old_unit_masks(ctx)
        kd = sum(distillation(logits, old, self.settings.temperature, m, sm) for m, sm in masks) / len(masks)
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
