"""Memory Aware Synapses: label-free importance from the sensitivity of the output norm.

Aljundi, Babiloni, Elhoseiny, Rohrbach & Tuytelaars 2018, "Memory Aware Synapses: Learning what
(not) to forget", ECCV. A parameter matters as much as a small change of it changes the network's
output F(x; θ) (eq. 1). Global MAS measures this through the squared ℓ2 norm of the output,

    g_ij(x_n) = ∂ ‖F(x_n; θ)‖²₂ / ∂θ_ij                                                   (eq. 4)
    Ω_ij      = 1/N Σ_n | g_ij(x_n) |                                                     (eq. 2)

and penalizes λ Σ_ij Ω_ij (θ_ij − θ*_ij)² while learning the next task (eq. 3; our shared penalty
:func:`lifelong.penalties.quadratic_penalty` carries a ½, so their λ is our λ/2).

Here F(x) = z, the logits. With task-incremental heads (a bool mask over the output units) the
inactive units are set to 0, not −inf, before the norm: ‖z ⊙ m‖², so a task's importance comes from
its own head only. No label enters: Ω is computed on unlabeled data (x alone, or any labels, which
are ignored).

Since ∂‖z‖²/∂z = 2z, each g(x_n) = J_nᵀ (2 z_n) is one vector-Jacobian product per sample, and
:func:`~lifelong.importance.persample.sum_abs_grads` computes Σ_n |J_nᵀ 2z_n| with the per-sample
engine of the Fisher (outer-product fast path for Linear, chunked per-sample Conv2d gradients,
torch.func fallback). The absolute value is taken per sample, as eq. 2 says: the absolute value of
a mini-batch gradient, |Σ_n g_n|/N, is smaller (triangle inequality; zero where per-sample
gradients cancel) and shrinks with the batch size. Sums run in float64 and are divided by N once,
so Ω does not depend on how the data is batched.

Relation to the Fisher (:mod:`lifelong.importance.fisher`): both are per-sample functions of
vector-Jacobian products Jᵀv; the Fisher squares gradients of log-likelihoods (directions e_c − p),
MAS takes absolute gradients of ‖z‖² (direction 2z), which needs neither labels nor a softmax.
"""

from __future__ import annotations

import functools
from typing import Iterable, Sequence, Union

import torch
from torch import Tensor, nn

from lifelong.errors import UsageError
from lifelong.importance.persample import batch_mean, describe_batch, sum_abs_grads

# x (B, ...) alone, or (x,), (x, y) or (x, y, mask); y is ignored, mask bool (C,) or (B, C) or None
UnlabeledBatch = Union[Tensor, Sequence]


def mas_importance(model: nn.Module, batches: Iterable[UnlabeledBatch]) -> dict[str, Tensor]:
    """MAS importance Ω = 1/N Σ_n |∂‖z_n ⊙ m_n‖²/∂θ| (Aljundi et al. 2018, eqs. 2 and 4).

    Args:
        model: maps x (B, ...) to logits z (B, C); run in eval mode, its modes restored after.
        batches: iterable of ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, mask)``. Labels ``y`` are
            never read (MAS is label-free). ``mask`` is bool (C,) or (B, C), True = active unit;
            inactive units are zeroed before the norm. None means every unit.

    Returns:
        ``{name: Ω}`` for every parameter with ``requires_grad``, shaped and typed like it.

    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> omega = mas_importance(net, [torch.randn(16, 4)])  # unlabeled data
    >>> tuple(omega["0.weight"].shape), bool((omega["2.bias"] > 0).all())
    ((8, 4), True)
    """
    work = ((x, functools.partial(norm_sq_direction, mask=mask)) for x, mask in map(_unpack, batches))
    return batch_mean(model, work, sum_abs_grads, "MAS importance", reduce=getattr(batches, "reduce_sums", None))


def norm_sq_direction(logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """The logit-space direction ∂‖z ⊙ m‖²/∂z = 2 z ⊙ m of MAS, as one direction per sample (1, B, C).

    >>> norm_sq_direction(torch.tensor([[1.0, -2.0, 3.0]]), torch.tensor([True, True, False]))
    tensor([[[ 2., -4.,  0.]]])
    """
    z = logits.detach()  # (B, C)
    if mask is not None:
        z = z.masked_fill(~mask.to(z.device), 0.0)  # inactive units contribute 0, not −inf
    return (2.0 * z).unsqueeze(0)  # (1, B, C)


def _unpack(batch: UnlabeledBatch) -> tuple[Tensor, Tensor | None]:
    """(x, mask) from x, (x,), (x, y) or (x, y, mask); y is ignored."""
    if isinstance(batch, Tensor):
        return batch, None
    usage = ("each MAS batch must be x, (x,), (x, y) or (x, y, mask) with x a tensor and mask a bool tensor of "
             f"active units; got {describe_batch(batch)}")
    if not isinstance(batch, (tuple, list)) or len(batch) not in (1, 2, 3) or not isinstance(batch[0], Tensor):
        raise UsageError(usage)
    mask = batch[2] if len(batch) == 3 else None
    if mask is not None and not (isinstance(mask, Tensor) and mask.dtype == torch.bool):
        raise UsageError(usage + " (the third item is the output mask; leave extra items out)")
    return batch[0], mask
