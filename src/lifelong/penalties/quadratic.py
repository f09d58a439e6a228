"""The one quadratic penalty every importance-weighted regularizer shares.

    P(θ) = λ/2 · Σ_i Ω_i (θ_i − θ̄_i)²  +  λ/2 · c                                         (1)

Ω is a per-parameter importance (EWC: a Fisher diagonal; later SI, MAS, RWalk, L2), θ̄ an anchor and
c ≥ 0 a constant that lets a single quadratic stand for a sum of several (see :func:`merge_sum`). The
state is a plain dict of tensors, ``{"importance": {name: Ω}, "anchor": {name: θ̄}, "offset": c}``, so
it can be saved without pickle.

Speed: the value and gradient are computed with a handful of multi-tensor (``torch._foreach_*``)
kernels through a custom autograd function, so the penalty adds O(parameters) work per step and no
per-tensor Python overhead inside autograd: dP/dθ = λ Ω (θ − θ̄).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from ..errors import UsageError

Params = Mapping[str, Tensor]
QuadraticState = dict  # {"importance": dict[str, Tensor], "anchor": dict[str, Tensor], "offset": Tensor}


def empty_state() -> QuadraticState:
    """No penalty yet: no importances, no anchors, zero offset."""
    return {"importance": {}, "anchor": {}, "offset": torch.zeros((), dtype=torch.float64)}


def quadratic_penalty(params: Params, state: QuadraticState, lam: float) -> Tensor:
    """Equation (1), differentiable in ``params`` (a name -> tensor mapping such as
    ``dict(model.named_parameters())``). Returns a 0-d tensor; 0 when the state is empty."""
    # parameter order, not state order: a reloaded state may list keys differently, and the sum
    # of the per-tensor terms must be bit-identical after a checkpoint round trip
    names = [n for n in params if n in state["importance"]]
    if not names:
        return torch.zeros((), device=_device(params))
    theta = [params[n] for n in names]
    try:
        return _Quadratic.apply(float(lam), state, names, *theta)
    except RuntimeError:
        check_shapes(params, state)
        raise


def quadratic_penalty_reference(params: Params, state: QuadraticState, lam: float) -> Tensor:
    """Equation (1) written plainly, one tensor at a time (the reference the tests compare to)."""
    total = torch.zeros((), dtype=torch.float64)
    for n, w in state["importance"].items():
        total = total + (w * (params[n] - state["anchor"][n]).square()).sum().to(torch.float64)
    return 0.5 * lam * (total + state["offset"])


class _Quadratic(torch.autograd.Function):
    @staticmethod
    def forward(ctx, lam, state, names, *theta):
        imp = [state["importance"][n] for n in names]
        diff = torch._foreach_sub(list(theta), [state["anchor"][n] for n in names])  # θ − θ̄
        grad = torch._foreach_mul(diff, imp)  # Ω (θ − θ̄)
        # Σ_i Ω_i (θ_i − θ̄_i)²: one dot product per tensor, summed.
        value = torch.stack([torch.dot(g.reshape(-1), d.reshape(-1)) for g, d in zip(grad, diff)]).sum()
        ctx.lam = lam
        ctx.save_for_backward(*grad)
        offset = state["offset"].to(value.dtype)
        return 0.5 * lam * (value + offset)

    @staticmethod
    def backward(ctx, grad_out):
        grads = torch._foreach_mul(list(ctx.saved_tensors), grad_out * ctx.lam)
        return (None, None, None, *grads)


def quadratic_grad(params: Params, state: QuadraticState, lam: float) -> dict[str, Tensor]:
    """dP/dθ = λ Ω (θ − θ̄) of equation (1), without autograd (e.g. to recover the unregularized
    gradient p.grad − dP/dθ that SI's path integral needs)."""
    names = list(state["importance"])
    if not names:
        return {}
    diff = torch._foreach_sub([params[n].detach() for n in names], [state["anchor"][n] for n in names])
    torch._foreach_mul_(diff, [state["importance"][n] for n in names])
    torch._foreach_mul_(diff, float(lam))
    return dict(zip(names, diff))


def add_quadratic_grad_(params: Params, state: QuadraticState, lam: float) -> None:
    """``p.grad += λ Ω (θ − θ̄)`` for every penalized parameter, in place and without autograd: the
    training loop's fast path (two multi-tensor passes; the autograd route of
    :func:`quadratic_penalty` makes five and allocates the gradient twice)."""
    names = [n for n, p in params.items() if n in state["importance"] and p.requires_grad]  # frozen: untouched
    if not names:
        return
    theta = [params[n] for n in names]
    for p in theta:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    try:
        diff = torch._foreach_sub([p.detach() for p in theta], [state["anchor"][n] for n in names])  # θ − θ̄
        torch._foreach_addcmul_([p.grad for p in theta], diff, [state["importance"][n] for n in names], value=float(lam))
    except RuntimeError:
        check_shapes(params, state)
        raise


def check_shapes(params: Params, state: QuadraticState) -> None:
    """Raise a UsageError naming the first parameter whose shape differs from its penalty's."""
    for n, w in state["importance"].items():
        if n in params and tuple(params[n].shape) != tuple(w.shape):
            raise UsageError(
                f"parameter {n!r} has shape {tuple(params[n].shape)} but its penalty was built for "
                f"{tuple(w.shape)}: a parameter cannot change shape between tasks (rebuild the strategy)"
            )


def _device(params: Params) -> torch.device:
    for p in params.values():
        return p.device
    return torch.device("cpu")


def detach_params(params: Params) -> dict[str, Tensor]:
    """A detached copy of each parameter: the anchor θ* after a task."""
    return {n: p.detach().clone() for n, p in params.items()}


def merge_sum(state: QuadraticState, importance: Params, anchor: Params) -> QuadraticState:
    """The state whose penalty equals ``state``'s penalty plus ½ Σ F (θ − θ*)², exactly.

    Two quadratics in one variable add up to one quadratic (complete the square):

        a (x − m)² + b (x − μ)² = (a + b) (x − m')² + ab/(a + b) · (m − μ)²,   m' = (a m + b μ)/(a + b)

    So T separate EWC penalties Σ_t F_t (θ − θ*_t)² are carried as one importance ΣF_t, one anchor
    (the F-weighted mean of the θ*_t) and one constant: memory does not grow with T, and value and
    gradient are those of the T separate terms. This is the running-sum form
    ΣF_tθ² − 2θΣF_tθ*_t + ΣF_tθ*_t² rearranged so that the value is not a difference of large
    numbers (no cancellation in float32 near the anchor). Where a + b = 0 the anchor is μ.
    """
    _check_merge(state, importance, anchor)
    if not state["importance"]:
        return {
            "importance": {n: f.detach().clone() for n, f in importance.items()},
            "anchor": {n: anchor[n].detach().clone() for n in importance},
            "offset": state["offset"].clone(),
        }
    # a parameter without new importance (frozen in this task) keeps its old term unchanged (b = 0)
    imp, anc, offset = dict(state["importance"]), dict(state["anchor"]), state["offset"].clone()
    for n, b in importance.items():
        if n not in state["importance"]:  # newly trainable: its first term (a = 0)
            imp[n], anc[n] = b.detach().clone(), anchor[n].detach().clone()
            continue
        a, m, mu = state["importance"][n], state["anchor"][n], anchor[n].detach()
        total = a + b
        safe = torch.where(total > 0, total, torch.ones_like(total))
        imp[n] = total
        anc[n] = torch.where(total > 0, (a * m + b * mu) / safe, mu)
        offset = offset + (a * b / safe * (m - mu).square()).sum().to(torch.float64)
    return {"importance": imp, "anchor": anc, "offset": offset}


def merge_decay(state: QuadraticState, importance: Params, anchor: Params, gamma: float) -> QuadraticState:
    """Online EWC (Schwarz et al. 2018, eq. 8; Huszár 2018): Ω ← γ Ω + F, θ̄ ← θ* (the newest anchor).

    The penalty keeps one quadratic around the latest parameters, with older Fisher information decayed
    by γ ∈ [0, 1] (0: the newest importance alone); the offset stays 0.
    """
    _check_merge(state, importance, anchor)
    # a parameter without new importance (frozen in this task) keeps γ Ω and its anchor
    imp = {n: gamma * w for n, w in state["importance"].items() if n not in importance}
    anc = {n: state["anchor"][n] for n in imp}
    imp.update({
        n: (gamma * state["importance"][n] + f) if n in state["importance"] else f.detach().clone()
        for n, f in importance.items()
    })
    anc.update({n: anchor[n].detach().clone() for n in importance})
    return {"importance": imp, "anchor": anc, "offset": torch.zeros((), dtype=torch.float64)}


def _check_merge(state: QuadraticState, importance: Params, anchor: Params) -> None:
    for n, f in importance.items():
        if n not in anchor:
            raise UsageError(f"no anchor for parameter {n!r}: importance and anchor must name the same parameters")
        old = state["importance"].get(n)
        if old is not None and tuple(old.shape) != tuple(f.shape):
            raise UsageError(
                f"parameter {n!r} has shape {tuple(f.shape)} now but {tuple(old.shape)} in the penalty of earlier "
                "tasks: a parameter cannot change shape between tasks"
            )


def state_tensors(state: QuadraticState, prefix: str = "") -> dict[str, Tensor]:
    """Flatten a quadratic state into one ``{key: tensor}`` dict (for safetensors / state_dict)."""
    out = {f"{prefix}importance.{n}": t for n, t in state["importance"].items()}
    out.update({f"{prefix}anchor.{n}": t for n, t in state["anchor"].items()})
    out[f"{prefix}offset"] = state["offset"]
    return out


def state_from_tensors(flat: Mapping[str, Tensor], prefix: str = "") -> QuadraticState:
    """Inverse of :func:`state_tensors`."""
    state = empty_state()
    for key, t in flat.items():
        if not key.startswith(prefix):
            continue
        kind, _, name = key[len(prefix):].partition(".")
        if kind == "offset":
            state["offset"] = t
        else:
            state[kind][name] = t
    return state
