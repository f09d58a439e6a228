"""Learning without Forgetting (LwF; Li & Hoiem 2017, TPAMI, eqs. 2-4): distillation from the model
as it was when the current task began, on the current task's inputs; no memory.

With p = softmax(f_old(x)/T) and q = softmax(f(x)/T) over the old units,

    L_old(x) = − Σ_k p_k log q_k                             (their eq. 3; no T² factor, as theirs and
                                                             van de Ven et al.'s code)
    L = CE(B) + α · mean_B L_old                             (lwf_weighting='sum', Li & Hoiem)
    L = (1/t) CE(B) + (1 − 1/t) mean_B L_old                 (lwf_weighting='tasks', van de Ven et al.)

The distillation is the term ``distill``; with ``lwf_weighting='tasks'`` LwF also scales the ``task``
term. It distils on every row of the step's batch: with a replay memory (``er+lwf``) the memory's inputs
too, as ER with distillation does in the papers that pair them.

The "old units" follow the heads: task-incremental, each earlier task's own units, one distillation
term per earlier task, averaged; otherwise one term over the single head, p over the units the old
model was trained on (with ``class_units='seen'`` the classes of the earlier tasks, else every unit)
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
from ...settings import Settings, setting, strength_setting
from ..base import Context, Strategy, cross_entropy, split_state
from .base import Teacher


@dataclass(frozen=True)
class LwFSettings(Settings):
    alpha: float = strength_setting(1.0, help="weight of the distillation term (LwF's λ_o)")
    temperature: float = strength_setting(2.0, flag="temperature", zero=False, what="temperature (gradients scale as 1/T)",
                                          help="distillation temperature T")
    lwf_weighting: str = setting("sum", flag="lwf-weighting", choices=("sum", "tasks"),
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
    needs_boundaries = "it distills from the model as it was at the end of the previous task"
    Settings = LwFSettings

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = Teacher()

    @property
    def loss_terms(self):  # type: ignore[override]
        return ("task", "distill") if self.settings.lwf_weighting == "tasks" else ("distill",)

    @property
    def term_note(self) -> dict:
        return {"task": "lwf's lwf_weighting='tasks' weighs the task term 1/t: use lwf_weighting='sum'"}

    def before_task(self, ctx):
        if ctx.task_index > 0:
            self.teacher.snapshot(ctx.model)

    def losses(self, ctx, step):
        teacher = self.teacher.get(ctx.model) if ctx.task_index > 0 else None
        if teacher is None:
            return {}
        with torch.no_grad():
            old = teacher(step.inputs.x)
        masks = old_unit_masks(ctx)
        kd = sum(distillation(step.logits, old, self.settings.temperature, m, sm) for m, sm in masks) / len(masks)
        if self.settings.lwf_weighting == "tasks":
            t = ctx.task_index + 1
            return {"task": cross_entropy(ctx, step.logits, step.inputs) / t, "distill": (1.0 - 1.0 / t) * kd}
        return {"distill": self.settings.alpha * kd}

    def state_dict(self):
        return self.teacher.state_dict()

    def state_spec(self, ctx, at):
        return [self.teacher.spec(ctx, at)]

    def load_state_dict(self, state, model):
        (teacher,) = split_state(state, "teacher.")
        self.teacher.load(teacher, model)
