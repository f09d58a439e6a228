"""Averaged Gradient Episodic Memory (A-GEM; Chaudhry, Ranzato, Rohrbach & Elhoseiny 2019, ICLR,
"Efficient lifelong learning with A-GEM", eq. 11).

With g the gradient of the current batch's loss and g_ref the gradient of the loss on a reference
batch of ``--ref-batch`` samples drawn from the memory, the step uses

    g̃ = g − (gᵀ g_ref / g_refᵀ g_ref) g_ref   if gᵀ g_ref < 0,   else g,

the closest gradient to g whose inner product with g_ref is not negative: the loss on the memory does
not increase to first order. Computed without a branch (the coefficient is min(gᵀg_ref, 0) / ‖g_ref‖²),
so no value is read back from the device. The projection acts on the task loss's gradient; a
regularizer composed with it (``ewc+agem``) adds its penalty's gradient afterwards, unprojected.

The memory is filled at each task's end (``--memory-policy class`` by default, as van de Ven et al.
2022; Chaudhry et al. keep an equal share per task: ``--memory-policy task``), so that the reference
batch holds earlier tasks only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..settings import setting
from .base import MemorySettings, Replay
from .buffer import POLICIES


@dataclass(frozen=True)
class AGEMSettings(MemorySettings):
    policy: str = setting("class", flag="--memory-policy", choices=POLICIES,
                          help="how the memory is filled: reservoir, class or task (see er)")
    ref_batch: int = setting(256, flag="--ref-batch", check=lambda v: v >= 1, must="be >= 1", maximum=10**7,
                             help="memory samples in A-GEM's reference batch")


def project(grads: list[torch.Tensor], ref: list[torch.Tensor]) -> None:
    """A-GEM's projection (eq. 11), in place on ``grads``: g -= min(gᵀr, 0) / rᵀr · r."""
    dot = torch.stack([(g * r).sum() for g, r in zip(grads, ref)]).sum()
    rr = torch.stack([(r * r).sum() for r in ref]).sum()
    coef = dot.clamp(max=0) / rr.clamp(min=torch.finfo(rr.dtype).tiny)
    torch._foreach_add_(grads, [r * -coef for r in ref])


class AGEM(Replay):
    """A-GEM: project the gradient when it would raise the loss on a memory batch (see module)."""

    name = "agem"
    Settings = AGEMSettings

    def after_backward(self, ctx, batch):
        if not len(self.buffer):
            return
        params = [p for p in ctx.model.parameters() if p.requires_grad and p.grad is not None]
        mem = self.buffer.batch(self.buffer.sample(self.settings.ref_batch, ctx.generator, ctx.device))
        logits = self.forward(ctx, mem.x, mem.task)
        loss = F.cross_entropy(ctx.heads.logits(logits, mem.task, ctx.task_index), mem.y)
        ref = torch.autograd.grad(loss, params, allow_unused=True)
        pairs = [(p.grad, r) for p, r in zip(params, ref) if r is not None]
        project([g for g, _ in pairs], [r for _, r in pairs])
