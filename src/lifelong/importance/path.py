"""Path-integral importances, accumulated online along the optimization path: SI and RWalk.

Both measure, at every optimizer step, how much each parameter's movement lowered the task loss, from
two things the training loop already has: the gradient g of the *unregularized* task loss at the
step's start and the change Δθ the optimizer made (whatever the optimizer: SGD, momentum, Adam). So
the per-step cost is a handful of multi-tensor (``torch._foreach_*``) kernels over the parameter
list, O(parameters), with no extra forward or backward pass and no per-sample gradients.

The loop's ``after_backward`` hook sees ``p.grad`` = ∂L/∂θ of the task loss alone: the penalty's
gradient λ Ω (θ − θ̄) is added after it (:mod:`lifelong.train.loop`). So g is read, not recovered:
subtracting the penalty's gradient from ∂(L + P)/∂θ would lose g's digits in float32 when λΩ(θ − θ̄)
is large. The authors' SI code and Hsu et al.'s run a second backward pass of the task loss alone
instead; the result is the same.

Synaptic Intelligence (Zenke, Poole & Ganguli 2017, "Continual Learning Through Synaptic
Intelligence", ICML; code: ganguli-lab/pathint, ``pathint/protocols.py``, ``PATH_INT_PROTOCOL``)::

    ω_k^μ = − Σ_t g_k(t) Δθ_k(t)                 per-parameter path integral over task μ    (eq. 3)
    Ω_k^μ = Σ_{ν<μ} ω_k^ν / ((Δ_k^ν)² + ξ)        Δ_k^ν = θ_k at the end − at the start of ν   (eq. 5)
    L̃_μ(θ) = L_μ(θ) + c Σ_k Ω_k^μ (θ_k − θ̃_k)²   θ̃ = parameters at the end of the last task  (eq. 4)

Σ_k ω_k^μ is, to first order in the step size, the drop of the task loss over the task: the path
integral of a conservative field is the difference of its potential (eq. 2). Individual ω_k can be
negative (a parameter that moved uphill, e.g. pushed by momentum or by the penalty); they are kept
signed, as in the paper and in the authors' code. The authors' code then clips the *summed*
importance, Ω ← max(0, Ω + ω/(Δ² + ξ)) (``tf.nn.relu`` around the running sum), and so do we
(:func:`si_consolidate`): a negative Ω_k would make the penalty concave in θ_k, rewarding moving away
from the anchor without bound. Hsu et al. 2018 (GT-RIPL/Continual-Learning-Benchmark) and van de Ven
(GMvandeVen/continual-learning) do not clip; the A-GEM code clips each task's term instead.

Riemannian Walk (Chaudhry, Dokania, Ajanthan & Torr 2018, "Riemannian Walk for Incremental Learning:
Understanding Forgetting and Intransigence", ECCV; code: facebookresearch/agem, ``model/model.py``)::

    F^t = α F_batch^t + (1 − α) F^{t−1}                   EWC++ running Fisher (Sec. 4.1)
    s_k += − g_k Δθ_k / (½ F_k^t Δθ_k² + ε)                  path score                       (eq. 10)
    s ← ½ (s_old + s_task)                                  at a task's end (s = s_task after the first)
    L̃(θ) = L(θ) + λ Σ_k (F_k + s_k)(θ_k − θ*_k)²             θ* = parameters after the last task (eq. 11)

The score divides the loss decrease by the KL divergence the parameter change caused,
KL(p_θ ‖ p_{θ+Δθ}) ≈ ½ Δθᵀ F Δθ (diagonal here), instead of SI's squared Euclidean distance.

Schedule (Chaudhry et al.'s code, facebookresearch/agem ``model/model.py`` and the RWALK branch of its
training scripts): the mini-batch squares are summed over an interval of ``update_every`` = 10 steps;
at the interval's end the running Fisher moves towards their mean, F ← (1 − α)F + α·mean (α = 0.9),
and the interval's loss drop ω = −Σ g Δθ (summed per step, as SI's) is divided by ½ F Δθ² + ε with Δθ
the interval's parameter change. :func:`accumulate_sq`, :func:`ema_fisher_update` and
:func:`rwalk_interval_score` are those three steps; an interval of one step is eq. 10 as written.

F_batch: the paper squares the gradient of the *mini-batch* loss, which is not the Fisher: for B
per-sample gradients with mean μ and variance σ², E[ḡ²] = μ² + σ²/B, which shrinks like 1/B (see
:mod:`lifelong.importance.fisher`). We use B ḡ² (:func:`accumulate_sq`, B the batch's real size), with E[B ḡ²] = Bμ² + σ²;
that estimates the per-sample second moment E[g_n²] = μ² + σ² when the mean gradient is small
(Bμ² ≪ σ², near a minimum) and overestimates it by (B − 1)μ² early in a task. It keeps ½ F Δθ² a
per-sample KL in nats, so ε means the same at every batch size. Per-sample gradients would cost a
per-sample backward at every step; this is O(parameters).

Conventions: the per-step helpers take lists aligned with the parameter list, each tensor shaped like
its parameter (θ, g, Δθ, ω, F, s: same shape), and return new lists (nothing is updated in place);
the per-task helpers take and return ``{param name: tensor}`` dicts.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor

from ..penalties import QuadraticState, merge_decay

Params = Mapping[str, Tensor]


# ---- both: the task-loss gradient at the step's start ------------------------------------------


def copy_tensors(tensors: Sequence[Tensor]) -> list[Tensor]:
    """A detached copy of each tensor with one multi-tensor copy kernel (``torch._foreach_clone`` is
    only in recent torch)."""
    out = [torch.empty_like(t) for t in tensors]
    torch._foreach_copy_(out, [t.detach() for t in tensors])
    return out


# ---- SI (Zenke et al. 2017) ---------------------------------------------------------------------


def si_step(omega: Sequence[Tensor], grad: Sequence[Tensor], delta: Sequence[Tensor]) -> list[Tensor]:
    """ω − g Δθ: one step of the path integral (eq. 3), one multi-tensor kernel. ``grad`` is the
    task-loss gradient at the step's start, ``delta`` the parameter change of the step."""
    return torch._foreach_addcmul(list(omega), list(grad), list(delta), value=-1.0)


def si_importance(omega: Params, delta_task: Params, xi: float) -> dict[str, Tensor]:
    """A task's importance ω / (Δ² + ξ) (eq. 5), Δ = θ_end − θ_start of the task; signed."""
    return {n: w / (delta_task[n].square() + xi) for n, w in omega.items()}


def si_consolidate(state: QuadraticState, omega: Params, start: Params, end: Params, xi: float) -> QuadraticState:
    """The penalty state after a task: Ω ← max(0, Ω + ω / (Δ² + ξ)), anchor θ_end.

    Summed importance, newest anchor: :func:`~lifelong.penalties.merge_decay` with γ = 1, then the
    running sum clipped at 0 as in the authors' code (``tf.nn.relu(ema('sum', Ω, ...))``); a task's
    negative term can lower an earlier Ω_k, never below 0.
    """
    delta = {n: end[n] - start[n] for n in omega}
    merged = merge_decay(state, si_importance(omega, delta, xi), end, gamma=1.0)
    merged["importance"] = {n: w.clamp_min(0.0) for n, w in merged["importance"].items()}
    return merged


# ---- RWalk (Chaudhry et al. 2018) ---------------------------------------------------------------


def accumulate_sq(total: Sequence[Tensor], grad: Sequence[Tensor], batch_size: int) -> list[Tensor]:
    """total + B g²: one step's mini-batch Fisher, the square of the batch gradient scaled by the batch's
    real size B (see the module docstring), added to the interval's sum. One multi-tensor kernel."""
    return torch._foreach_addcmul(list(total), list(grad), list(grad), value=float(batch_size))


def ema_fisher_update(fisher: Sequence[Tensor], interval_sum: Sequence[Tensor], n_steps: int, alpha: float) -> list[Tensor]:
    """F ← (1 − α) F + α · interval_sum / n: the EWC++ running Fisher (Sec. 4.1) updated with the mean
    of the interval's mini-batch Fishers, as Chaudhry et al.'s code does every ``update_every`` steps
    (facebookresearch/agem: ``set_running_fisher`` with ``fisher_update_after`` = 10)."""
    out = torch._foreach_mul(list(fisher), 1.0 - alpha)
    torch._foreach_add_(out, list(interval_sum), alpha=alpha / n_steps)
    return out


def rwalk_interval_score(
    score: Sequence[Tensor], omega: Sequence[Tensor], delta: Sequence[Tensor], fisher: Sequence[Tensor], eps: float
) -> list[Tensor]:
    """s + ω / (½ F Δθ² + ε): the path score (eq. 10) of one interval; signed.

    ``omega`` is the interval's loss drop −Σ g Δθ per parameter, ``delta`` its parameter change and
    ``fisher`` the running Fisher after the interval's update. With an interval of one step this is
    eq. 10 term by term."""
    den = torch._foreach_mul(list(delta), list(delta))  # Δθ²
    torch._foreach_mul_(den, list(fisher))  # F Δθ²
    torch._foreach_mul_(den, 0.5)
    torch._foreach_add_(den, eps)  # ½ F Δθ² + ε
    return torch._foreach_add(list(score), torch._foreach_div(list(omega), den))


def rwalk_average_scores(previous: Params | None, task_score: Params) -> dict[str, Tensor]:
    """½ (s_old + s_task) at a task's end; s_task itself after the first task (``previous`` empty).

    Averaging instead of summing keeps old tasks from making the network ever more rigid. (The A-GEM
    code doubles the first task's score so that its running update reproduces this.)"""
    if not previous:
        return {n: s.clone() for n, s in task_score.items()}
    out = dict(previous)  # a parameter not trained in this task (frozen) keeps its score
    out.update({n: 0.5 * (previous[n] + s) if n in previous else s.clone() for n, s in task_score.items()})
    return out


def normalize_by_max(x: Params) -> dict[str, Tensor]:
    """max(x, 0) / max over *all* tensors of max(x, 0): values in [0, 1], 0 stays 0; all zeros if
    nothing is positive. (The A-GEM code uses (x − min)/(max − min) over all layers; for a
    non-negative x whose minimum is 0, e.g. any unused input pixel, the two agree.)"""
    clipped = {n: t.clamp_min(0.0) for n, t in x.items()}
    if not clipped:
        return {}
    top = torch.stack([t.max() if t.numel() else t.new_zeros(()) for t in clipped.values()]).max()
    scale = top.clamp_min(torch.finfo(top.dtype).tiny)
    return {n: t / scale for n, t in clipped.items()}


def rwalk_importance(fisher: Params, score: Params) -> dict[str, Tensor]:
    """Ω = F̂ + ŝ, the weight of eq. 11, with F and s each normalized to [0, 1] by
    :func:`normalize_by_max` so that neither term's scale dominates (as the A-GEM and Avalanche
    implementations do). Negative scores count as 0."""
    f, s = normalize_by_max(fisher), normalize_by_max(score)
    return {n: f[n] + s[n] if n in s else f[n] for n in fisher}
