"""Diagonal Fisher information of a classifier: four estimators, named by what they compute.

EWC (Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting in neural networks", PNAS, eq. 3)
weighs each parameter by the diagonal of the Fisher information. For a classifier with logits z,
masked softmax p (see :func:`~lifelong.models.heads.masked_logits`) and N samples x_n:

    exact       F = 1/N Σ_n Σ_c p_c(x_n) (∂ log p(c|x_n)/∂θ)²                                   (1)
    mc          F = 1/N Σ_n 1/S Σ_s (∂ log p(y_s|x_n)/∂θ)²,   y_s ~ p(·|x_n)                      (2)
    empirical   F = 1/N Σ_n (∂ log p(y_n|x_n)/∂θ)²,            y_n the true label                 (3)
    predicted   F = 1/N Σ_n (∂ log p(ŷ_n|x_n)/∂θ)²,            ŷ_n = argmax_c p(c|x_n)            (4)

(1) is the Fisher of the model's predictive distribution (Martens 2020, "New insights and
perspectives on the natural gradient method", JMLR 21(146), where it is called the "true" Fisher);
it is the curvature of KL(p_θ ‖ p_{θ+δ}) at δ = 0 and, for softmax outputs, the generalized
Gauss-Newton matrix. (2) is an unbiased Monte-Carlo estimate of (1) whose error shrinks like 1/√S.
(3) and (4) replace the sum over classes by a single label; they are not estimates of (1) and can
differ from it substantially (Martens 2020; Kunstner et al. 2019, "Limitations of the empirical
Fisher approximation for natural gradient descent"). (4) equals (3) wherever the model predicts the
true label. van de Ven 2025, "On the computation of the Fisher information in continual learning"
(arXiv:2502.11756), compares such variants inside EWC (his EXACT, SAMPLE and EMPIRICAL are (1),
(2) with S = 1 and (3)) and finds that the choice matters for EWC's results; he also discusses
squaring mini-batch gradients (his BATCHED), a different quantity this module never computes.

All four are weighted sums of squared per-sample gradients of log p, each of which is a
vector-Jacobian product with a direction in logit space, ∂ log p(c|x)/∂z = e_c − p. So each reduces
to :func:`~lifelong.importance.persample.sum_sq_grads` with directions v_{k,n} (K, B, C):

    exact       v_{k,n} = column k of any V with V Vᵀ = diag(p) − ppᵀ                              (5)
    mc          v_{s,n} = (e_{y_s} − p)/√S
    empirical   v_{1,n} = e_{y_n} − p
    predicted   v_{1,n} = e_{ŷ_n} − p

(5) holds because Σ_c p_c (e_c − p)(e_c − p)ᵀ = diag(p) − ppᵀ, so the per-sample term of (1) is
diag(Jᵀ V Vᵀ J) = Σ_k (Jᵀ v_k)². V = [√p_c (e_c − p)]_c (A columns for A active classes) is one
choice; the default is the exact Cholesky factor (A − 1 columns, :func:`multinomial_cov_factor`),
one backward pass fewer per batch.

Sums are accumulated over batches in float64 and divided by N at the end, so the result does not
depend on how the caller batches the data (up to rounding). Squares are taken per sample, never of
a mini-batch gradient.
"""

from __future__ import annotations

import functools
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from lifelong.errors import UsageError
from lifelong.importance.persample import batch_mean, describe_batch, sum_sq_grads
from lifelong.models.heads import masked_logits

FISHER_KINDS = ("empirical", "predicted", "exact", "mc")

Batch = Sequence  # (x, y) or (x, y, mask); y (B,) int64 or None, mask bool (C,) or (B, C) or None


def fisher_diag(
    model: nn.Module,
    batches: Iterable[Batch],
    kind: str = "exact",
    *,
    generator: torch.Generator | None = None,
    mc_samples: int = 1,
) -> dict[str, Tensor]:
    """Diagonal Fisher ``kind`` (equations (1)-(4)) of ``model`` over all samples in ``batches``.

    Args:
        model: maps x (B, ...) to logits (B, C); run in eval mode, its modes restored after.
        batches: iterable of ``(x, y)`` or ``(x, y, mask)``; ``mask`` is bool (C,) or (B, C),
            True = active class, or None. ``y`` is only read by ``kind="empirical"``.
        kind: one of :data:`FISHER_KINDS`.
        generator: draws the labels of ``kind="mc"`` as ``torch.multinomial(p, mc_samples,
            replacement=True, generator=generator)`` per batch, on the generator's device; None
            means a fresh CPU generator seeded with 0 (the global RNG is never used).
        mc_samples: S in equation (2).

    Returns:
        ``{name: F}`` for every parameter with ``requires_grad``, shaped and typed like it.

    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> data = [(torch.randn(16, 4), torch.randint(0, 3, (16,)))]
    >>> F = fisher_diag(net, data, "exact")
    >>> tuple(F["0.weight"].shape), bool((F["2.bias"] > 0).all())
    ((8, 4), True)
    """
    generator = checked_kind(kind, generator, mc_samples)

    def work():
        for batch in batches:
            x, y, mask = _unpack(batch)
            yield x, functools.partial(logit_directions, kind=kind, y=y, mask=mask, generator=generator,
                                       mc_samples=mc_samples)

    return batch_mean(model, work(), sum_sq_grads, "the Fisher", reduce=getattr(batches, "reduce_sums", None))


def checked_kind(kind: str, generator: torch.Generator | None, mc_samples: int) -> torch.Generator | None:
    """Check a Fisher ``kind`` and its ``mc_samples``; the generator the MC labels are drawn with (a fresh
    CPU generator seeded with 0 when ``kind="mc"`` and none is given)."""
    if kind not in FISHER_KINDS:
        raise UsageError(f"unknown Fisher kind {kind!r}; valid kinds: {', '.join(FISHER_KINDS)}")
    if kind == "mc":
        if isinstance(mc_samples, bool) or not isinstance(mc_samples, int) or mc_samples < 1:
            raise UsageError(f"mc_samples must be a positive integer; got {mc_samples!r}")
        if generator is None:
            generator = torch.Generator().manual_seed(0)
    return generator


def fisher_diag_exact(model: nn.Module, batches: Iterable[Batch]) -> dict[str, Tensor]:
    """Exact (expected, "true") Fisher diagonal, equation (1): the sum over classes weighted by the
    model's own p (Martens 2020). The quantity :func:`fisher_diag_mc` estimates; costs one backward
    per active class but one. See :func:`fisher_diag`."""
    return fisher_diag(model, batches, "exact")


def fisher_diag_mc(
    model: nn.Module,
    batches: Iterable[Batch],
    *,
    generator: torch.Generator | None = None,
    mc_samples: int = 1,
) -> dict[str, Tensor]:
    """Monte-Carlo Fisher diagonal, equation (2): labels sampled from the model, an unbiased
    estimate of :func:`fisher_diag_exact` whose error shrinks like 1/√S (van de Ven 2025's
    SAMPLE for S = 1). See :func:`fisher_diag`."""
    return fisher_diag(model, batches, "mc", generator=generator, mc_samples=mc_samples)


def fisher_diag_empirical(model: nn.Module, batches: Iterable[Batch]) -> dict[str, Tensor]:
    """Empirical Fisher diagonal, equation (3): squared per-sample gradients at the true labels.
    Not an estimate of :func:`fisher_diag_exact` (Martens 2020; Kunstner et al. 2019); one
    backward per batch. See :func:`fisher_diag`."""
    return fisher_diag(model, batches, "empirical")


def fisher_diag_predicted(model: nn.Module, batches: Iterable[Batch]) -> dict[str, Tensor]:
    """Predicted-label Fisher diagonal, equation (4): squared per-sample gradients at the model's
    most likely label; equals :func:`fisher_diag_empirical` where the model predicts the true
    labels. See :func:`fisher_diag`."""
    return fisher_diag(model, batches, "predicted")


def logit_directions(
    logits: Tensor,
    kind: str,
    *,
    y: Tensor | None = None,
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
    mc_samples: int = 1,
    exact_factor: str = "cholesky",
) -> Tensor:
    """The logit-space directions v (K, B, C) of the table in the module docstring, for one batch.

    Squared gradients of v_{k,n}ᵀ z_n summed over k give the per-sample term of equations (1)-(4).
    Directions are zero on masked classes, so masked outputs get no Fisher. For ``kind="exact"``
    any V with V Vᵀ = diag(p) − ppᵀ gives the same Fisher: ``exact_factor="sqrt"`` is the symmetric
    factor √p_c (e_c − p), one direction per active class; the default ``"cholesky"`` is the exact
    Cholesky factor of :func:`multinomial_cov_factor`, one direction fewer (the covariance has rank
    A − 1 for A active classes): one backward pass fewer per batch, about 10% of the time with 10
    classes (benchmarks/bench_fisher.py) and 1 pass instead of 2 with 2 active classes.
    """
    z = masked_logits(logits.detach(), mask)  # (B, C)
    p = z.softmax(-1)  # (B, C)
    B, C = p.shape
    if kind == "exact":
        active = _active_classes(mask, C, p.device)  # (A,) classes active in some sample
        if exact_factor == "sqrt":
            e = torch.eye(C, dtype=p.dtype, device=p.device)[active]  # (A, C)
            return p.T[active].sqrt().unsqueeze(-1) * (e.unsqueeze(1) - p)  # (A, B, C)
        if exact_factor != "cholesky":
            raise UsageError(f"unknown exact_factor {exact_factor!r}; valid: cholesky, sqrt")
        L = multinomial_cov_factor(p[:, active])  # (B, A, A − 1)
        v = p.new_zeros(L.shape[2], B, C)
        v[:, :, active] = L.permute(2, 0, 1)  # (A − 1, B, A) scattered into the active classes
        return v  # (A − 1, B, C)
    if kind == "empirical":
        labels = _check_labels(y, mask, B, C).to(p.device).unsqueeze(0)  # (1, B)
        scale = 1.0
    elif kind == "predicted":
        labels = z.argmax(-1).unsqueeze(0)  # (1, B)
        scale = 1.0
    elif kind == "mc":
        if generator is None:
            raise UsageError("kind='mc' needs a torch.Generator; pass generator=torch.Generator().manual_seed(0)")
        draws = torch.multinomial(p.to(generator.device), mc_samples, replacement=True, generator=generator)
        labels = draws.to(p.device).T  # (S, B)
        scale = mc_samples**-0.5
    else:
        raise UsageError(f"unknown Fisher kind {kind!r}; valid kinds: {', '.join(FISHER_KINDS)}")
    e = torch.nn.functional.one_hot(labels, C).to(p.dtype)  # (K, B, C)
    return (e - p) * scale  # (K, B, C)


def multinomial_cov_factor(p: Tensor) -> Tensor:
    """Exact Cholesky factor L (B, A, A − 1) of diag(p) − ppᵀ for probabilities p (B, A).

    The multinomial covariance has rank A − 1 (it annihilates the all-ones vector); with tail sums
    s_j = Σ_{i≥j} p_i its Cholesky factor is known in closed form (Tanabe & Sagae 1992, "An exact
    Cholesky decomposition and the generalized inverse of the variance-covariance matrix of the
    multinomial distribution", JRSS B 54(1)), for j = 1..A−1:

        L_jj = √(p_j s_{j+1} / s_j),    L_ij = −p_i √(p_j / (s_j s_{j+1}))  (i > j),    L_ij = 0  (i < j)

    Written as √(p_j/s_j)·√s_{j+1} and −(p_i/√s_{j+1})·√(p_j/s_j), every factor is at most 1 (as
    p_j ≤ s_j and p_i ≤ s_{j+1}), so nothing overflows in float32; columns whose tail s_{j+1} is 0
    (all later classes have probability 0, e.g. masked) are 0, which is their exact value.

    >>> p = torch.tensor([[0.5, 0.3, 0.2]], dtype=torch.float64)
    >>> L = multinomial_cov_factor(p)
    >>> torch.allclose(L @ L.mT, torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2))
    True
    """
    A = p.shape[-1]
    tail = p.flip(-1).cumsum(-1).flip(-1)  # s_j   (B, A)
    s_j, s_next, p_j = tail[:, :-1], tail[:, 1:], p[:, :-1]  # (B, A − 1)
    tiny = torch.finfo(p.dtype).tiny
    r = (p_j / s_j.clamp_min(tiny)).sqrt()  # √(p_j/s_j)   (B, A − 1)
    diag = r * s_next.sqrt()  # L_jj   (B, A − 1)
    below = -(p.unsqueeze(-1) / s_next.clamp_min(tiny).sqrt().unsqueeze(1)) * r.unsqueeze(1)  # (B, A, A − 1)
    i = torch.arange(A, device=p.device).unsqueeze(1)  # (A, 1)
    j = torch.arange(A - 1, device=p.device).unsqueeze(0)  # (1, A − 1)
    zero = p.new_zeros(())
    L = torch.where((i > j) & (s_next > 0).unsqueeze(1), below, zero)
    return L + torch.where(i == j, diag.unsqueeze(1), zero)  # (B, A, A − 1)


def _unpack(batch: Batch) -> tuple[Tensor, Tensor | None, Tensor | None]:
    usage = ("each batch must be (x, y) or (x, y, mask) with x a tensor and mask a bool tensor of active classes; got "
             f"{describe_batch(batch)}")
    if isinstance(batch, dict):
        raise UsageError(usage + ": pass tuples, e.g. ((b['x'], b['y']) for b in loader)")
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3) or not isinstance(batch[0], Tensor):
        raise UsageError(usage)
    x, y = batch[0], batch[1]
    mask = batch[2] if len(batch) == 3 else None
    if mask is not None and not (isinstance(mask, Tensor) and mask.dtype == torch.bool):
        raise UsageError(usage + " (the third item is the class mask; leave extra items out)")
    return x, y, mask


def _active_classes(mask: Tensor | None, C: int, device: torch.device) -> Tensor:
    """Indices of classes active in at least one sample: the others have p_c = 0, a zero direction."""
    if mask is None:
        return torch.arange(C, device=device)
    any_active = mask if mask.dim() == 1 else mask.any(0)  # (C,)
    return any_active.nonzero().squeeze(-1).to(device)


def _check_labels(y: Tensor | None, mask: Tensor | None, B: int, C: int) -> Tensor:
    if y is None:
        raise UsageError("kind='empirical' needs the true labels: batches must be (x, y) with y not None")
    if y.shape != (B,) or y.dtype.is_floating_point:
        raise UsageError(f"labels y must be an integer tensor of shape ({B},); got {y.dtype} {tuple(y.shape)}")
    if ((y < 0) | (y >= C)).any():
        raise UsageError(f"labels must lie in [0, {C}); got {int(y.min())}..{int(y.max())}")
    if mask is not None:
        ok = mask.expand(B, C).gather(1, y.view(B, 1).to(mask.device))
        if not bool(ok.all()):
            raise UsageError("a label is a masked (inactive) class, so log p(y|x) = -inf; fix the mask or labels")
    return y.long()
