"""Kronecker-factored Fisher blocks (K-FAC for fully connected layers, KFC for convolutions).

The diagonal Fisher of :mod:`lifelong.importance.fisher` treats every weight as independent of every
other. K-FAC (Martens & Grosse 2015, "Optimizing neural networks with Kronecker-factored approximate
curvature", ICML, sec. 3) keeps, for each layer l with folded weight W̃ = [W | b] (out × in+1), the whole
block of the Fisher over vec(W̃), approximated as one Kronecker product. The per-sample gradient of a
fully connected layer is g āᵀ (ā = [a; 1] its input, g the gradient of the log-likelihood with respect to
its output), so vec of it is ā ⊗ g and

    F_l = E[(ā āᵀ) ⊗ (g gᵀ)]  ≈  E[ā āᵀ] ⊗ E[g gᵀ]  =  A_l ⊗ G_l                                  (1)

the approximation being that activations and output gradients are independent (exact for one sample:
then F_l = ā āᵀ ⊗ g gᵀ). For a convolution the per-sample gradient is Σ_l g_l ū_lᵀ over the L output
locations (ū_l the input patch); KFC (Grosse & Martens 2016, ICML, eqs. 27-28) adds spatial homogeneity
and spatially uncorrelated derivatives and gets

    A_l = E[Σ_l ū_l ū_lᵀ],     G_l = E[1/L Σ_l g_l g_lᵀ]                                          (2)

"Which Fisher" is the same choice as for the diagonal (:data:`FISHER_KINDS`): g is the gradient of
v_kᵀ z for the logit directions v_k of :func:`~lifelong.importance.fisher.logit_directions`, summed over
k, so ``exact`` gives E_{y~p}[g gᵀ] (the true Fisher's G, the generalized Gauss-Newton's), ``mc`` samples
y from the model, ``empirical`` uses the true labels and ``predicted`` the argmax. Every product of
second moments is per sample (never a mini-batch gradient squared); sums are taken in float64 and
divided by the number of samples at the end, so the factors do not depend on the batching.

Parameters outside such layers (normalization, embeddings, a layer called twice, a Linear on 3-D
input, a grouped convolution) get the diagonal Fisher of the same kind, from the same pass over the data.
"""

from __future__ import annotations

import functools
from typing import Iterable

import torch
from torch import Tensor, nn

from lifelong.errors import UsageError
from lifelong.importance.fisher import Batch, _unpack, checked_kind, logit_directions
from lifelong.importance.persample import eval_mode, kron_layers, sum_kron_factors, sum_sq_grads


def kron_factors(
    model: nn.Module,
    batches: Iterable[Batch],
    kind: str = "exact",
    *,
    generator: torch.Generator | None = None,
    mc_samples: int = 1,
) -> tuple[dict[str, dict[str, Tensor]], dict[str, Tensor], int]:
    """The Kronecker factors (1)-(2) of ``model``'s Fisher ``kind`` over all samples in ``batches``.

    Args are those of :func:`~lifelong.importance.fisher.fisher_diag`.

    Returns:
        ``(factors, diagonal, n)``: ``factors[layer] = {"A": (i, i), "G": (o, o)}`` for each layer that
        has them (module names; the parameters' dtype), ``diagonal[param] = F`` the diagonal Fisher of
        every other trainable parameter, and n the number of samples.

    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> factors, diag, n = kron_factors(net, [(torch.randn(16, 4), torch.randint(0, 3, (16,)))])
    >>> {k: tuple(f["A"].shape) + tuple(f["G"].shape) for k, f in factors.items()}, diag, n
    ({'0': (5, 5, 8, 8), '2': (9, 9, 3, 3)}, {}, 16)
    """
    generator = checked_kind(kind, generator, mc_samples)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise UsageError("the Kronecker factors: the model has no trainable parameters (requires_grad=True); "
                         "unfreeze the layers the penalty should protect")
    layers: dict[str, nn.Module] | None = None
    rest: list[str] = []
    sums: dict[str, Tensor] = {}
    n = 0
    for batch in batches:
        x, y, mask = _unpack(batch)
        if layers is None:
            layers = kron_layers(model, x)
            covered = {id(p) for m in layers.values() for p in (m.weight, m.bias) if p is not None and p.requires_grad}
            rest = [name for name, p in params.items() if id(p) not in covered]
        directions = functools.partial(logit_directions, kind=kind, y=y, mask=mask, generator=generator,
                                       mc_samples=mc_samples)
        if rest:  # draw the directions once (an MC label draw must be the same for both parts)
            with torch.no_grad(), eval_mode(model):
                directions = directions(model(x))
            diag = sum_sq_grads(model, x, directions)
            for name in rest:
                _add(sums, f"diag:{name}", diag[name])
        for key, s in sum_kron_factors(model, x, directions, layers).items():
            _add(sums, key, s)
        n += x.shape[0]
    reduce = getattr(batches, "reduce_sums", None)
    if reduce is not None:
        sums, n = reduce(sums, n)
    if n == 0 or layers is None:
        raise UsageError("the Kronecker factors need at least one sample; `batches` was empty")
    dtype = {name: m.weight.dtype for name, m in layers.items()}
    factors = {name: {f: (sums[f"{name}.{f}"] / n).to(dtype[name]) for f in ("A", "G")} for name in layers}
    diagonal = {name: (sums[f"diag:{name}"] / n).to(params[name].dtype) for name in rest}
    return factors, diagonal, n


def _add(sums: dict[str, Tensor], key: str, s: Tensor) -> None:
    if key in sums:
        sums[key].add_(s)
    else:
        sums[key] = s.to(torch.float64).clone()

