"""Averaged Gradient Episodic Memory (A-GEM; Chaudhry, Ranzato, Rohrbach & Elhoseiny 2019, ICLR,
"Efficient lifelong learning with A-GEM", eq. 11).

With g the gradient of the current batch's loss and g_ref the gradient of the loss on a reference
batch of ``ref_batch`` samples drawn from the memory, the step uses

    g̃ = g − (gᵀ g_ref / g_refᵀ g_ref) g_ref   if gᵀ g_ref < 0,   else g,

the closest gradient to g whose inner product with g_ref is not negative: the loss on the memory does
not increase to first order. Computed without a branch (the coefficient is min(gᵀg_ref, 0) / ‖g_ref‖²),
so no value is read back from the device. The projection acts on the task loss's gradient; a
regularizer composed with it (``ewc+agem``) adds its penalty's gradient afterwards, unprojected.

The memory is filled at each task's end (``policy='class'`` by default, as van de Ven et al. 2022;
Chaudhry et al. keep an equal share per task: ``policy='task'``), so that the reference batch holds
earlier tasks only; with ``policy='reservoir'`` it is filled every step from the batch's current rows,
as every replay memory is, and the reference batch may then hold the current task's samples too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...settings import setting
from .base import ConcatMixing, MemorySettings, Replay, check_concat, policy_setting


@dataclass(frozen=True)
class AGEMSettings(MemorySettings):
    policy: str = policy_setting("class")
    ref_batch: int = setting(256, flag="ref-batch", check=lambda v: v >= 1, must="be >= 1", maximum=10**7,
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

    def after_backward(self, ctx, step):
        if not len(self.buffer):
            return
        params = [p for p in ctx.model.parameters() if p.requires_grad and p.grad is not None]
        mem = self.buffer.batch(self.buffer.sample(self.settings.ref_batch, ctx.generator, ctx.device))
        ref = torch.autograd.grad(self.memory_loss(ctx, mem), params, allow_unused=True)
        pairs = [(p.grad, r) for p, r in zip(params, ref) if r is not None]
        project([g for g, _ in pairs], [r for _, r in pairs])


# ---- GEM ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GEMSettings(MemorySettings):
    policy: str = policy_setting("task")
    margin: float = setting(0.5, flag="gem-margin", check=lambda v: v >= 0, must="be >= 0", maximum=1e6,
                            help="GEM's memory strength γ: the dual variables are at least this (their code's 0.5)")
    mixing: str = setting("none", flag="replay-mixing", choices=("none", "concat"),
                          help="none: the memory only constrains the gradient, as the paper; concat: it also joins "
                               "the training set, as Hsu et al.'s GEM (a subclass of their rehearsal)")

    def check(self) -> None:
        super().check()
        check_concat(self)


def nonnegative_qp(P: torch.Tensor, b: torch.Tensor, tol: float = 1e-12, max_iter: int | None = None) -> torch.Tensor:
    """argmin_{w ≥ 0} ½ wᵀPw + bᵀw for a symmetric positive definite P (t × t, float64): a primal
    active-set method (Lawson & Hanson's NNLS, 1974, ch. 23, on the quadratic instead of a least-squares
    form). A free set F grows by the coordinate with the most negative gradient; w_F solves P_FF w_F =
    −b_F, and when that leaves F's coordinates negative the step stops at the boundary and drops them.
    Each pass costs one t × t solve; it ends at the unique KKT point (w ≥ 0, ∇ = Pw + b ≥ 0, wᵀ∇ = 0),
    in a few passes per constraint in practice (``max_iter``, default 30·t + 100, bounds the passes)."""
    t = P.shape[0]
    limit = max_iter or 30 * t + 100
    w = torch.zeros(t, dtype=P.dtype)
    free = torch.zeros(t, dtype=torch.bool)
    scale = float(P.diagonal().abs().max()) + float(b.abs().max())
    for _ in range(limit):
        grad = (P @ w + b).masked_fill(free, float("inf"))
        j = int(torch.argmin(grad))
        if free.all() or float(grad[j]) >= -tol * scale:  # KKT: no bound coordinate wants to move up
            return w
        free[j] = True
        for _ in range(limit):
            F = free.nonzero().squeeze(1)
            z = torch.zeros(t, dtype=P.dtype)
            z[F] = torch.linalg.solve(P[F][:, F], -b[F])
            if bool((z[F] > 0).all()):
                w = z
                break
            # step from w toward z until the first free coordinate reaches 0; it becomes bound
            Q = F[z[F] <= 0]
            ratios = torch.nan_to_num(w[Q] / (w[Q] - z[Q]), nan=0.0)
            k = int(torch.argmin(ratios))
            w = w + float(ratios[k]) * (z - w)
            free[Q[k]] = False
            free &= w > 0
            w = w.masked_fill(~free, 0.0)
        else:
            break
    raise RuntimeError(f"the non-negative QP of size {t} did not converge in {limit} passes: its matrix is too "
                       "ill-conditioned")


def gem_dual(P: torch.Tensor, c: torch.Tensor, margin: float) -> torch.Tensor:
    """The solution v of GEM's dual QP  min_v ½ vᵀPv + cᵀv  s.t.  v ≥ margin  (P symmetric positive
    definite, t × t, float64 on the CPU): with w = v − margin it is the non-negative problem
    min_w ½ wᵀPw + (P·margin + c)ᵀw, solved by :func:`nonnegative_qp` (polynomial per pass; the
    reference code's quadprog solves the same problem)."""
    t = P.shape[0]
    b = P @ torch.full((t,), margin, dtype=P.dtype) + c
    return nonnegative_qp(P, b) + margin


def gem_dual_enumerate(P: torch.Tensor, c: torch.Tensor, margin: float) -> torch.Tensor:
    """:func:`gem_dual` by trying every active set (2^t of them): the exact reference for small t."""
    t = P.shape[0]
    b = P @ torch.full((t,), margin, dtype=P.dtype) + c
    best, best_value = torch.zeros(t, dtype=P.dtype), 0.0  # w = 0 is feasible
    for mask in range(1, 2 ** t):
        S = [i for i in range(t) if mask >> i & 1]
        w = torch.zeros(t, dtype=P.dtype)
        w[S] = torch.linalg.solve(P[S][:, S], -b[S])
        if (w[S] < 0).any():
            continue
        value = float(0.5 * w @ P @ w + b @ w)
        if value < best_value:
            best, best_value = w, value
    return best + margin


class GEM(ConcatMixing, Replay):
    """Gradient Episodic Memory (Lopez-Paz & Ranzato 2017, NeurIPS, eqs. 10-13).

    With g the current gradient and g_k the gradient of the loss on task k's memory (every earlier
    task, its whole memory each step), the step uses the g̃ closest to g with ⟨g̃, g_k⟩ ≥ 0 for every
    k, found through the dual: G = [g_1 … g_t], v* = argmin_{v ≥ γ} ½ vᵀ(GGᵀ + 10⁻³ I)v + (Gg)ᵀv and
    g̃ = Gᵀv* + g (their code's margin γ = 0.5 and ridge 10⁻³; Hsu et al.'s copy of it). Solved only
    when some ⟨g, g_k⟩ < 0, as theirs (one read from the device per step: GEM is not a fast method).
    ``mixing='concat'`` also trains on the memory (Hsu et al.'s GEM, a subclass of their
    rehearsal that keeps its concatenation).
    """

    name = "gem"
    needs_boundaries = "it keeps one memory and one gradient constraint per task"
    Settings = GEMSettings

    def after_backward(self, ctx, step):
        if not len(self.buffer):
            return
        params = [p for p in ctx.model.parameters() if p.requires_grad and p.grad is not None]
        g = torch.cat([p.grad.reshape(-1) for p in params])
        mem_tasks = self.buffer.task[: len(self.buffer)]
        rows = []
        for k in torch.unique(mem_tasks).tolist():
            mem = self.buffer.batch((mem_tasks == k).nonzero().squeeze(1))
            grads = torch.autograd.grad(self.memory_loss(ctx, mem), params, allow_unused=True)
            rows.append(torch.cat([(torch.zeros_like(p) if r is None else r).reshape(-1) for p, r in zip(params, grads)]))
        G = torch.stack(rows)  # (t, P)
        if not bool((G @ g < 0).any()):
            return
        G64, g64 = G.double().cpu(), g.double().cpu()
        P = G64 @ G64.T
        P = 0.5 * (P + P.T) + 1e-3 * torch.eye(len(rows), dtype=torch.float64)
        v = gem_dual(P, G64 @ g64, self.settings.margin)
        new = (G64.T @ v + g64).to(g.dtype).to(g.device)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(new[offset:offset + n].view_as(p))
            offset += n
