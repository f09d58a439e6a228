"""The Kronecker-factored quadratic penalty: one block per layer instead of one number per weight.

For a layer with folded weight W̃ = [W | b] (out × in', Conv2d weights flattened to out × in·kh·kw) and
factors A_t (in' × in'), G_t (out × out) of task t (:func:`lifelong.importance.kfac.kron_factors`),

    P(θ) = λ/2 Σ_l Σ_t vec(Δ_{l,t})ᵀ (A_{l,t} ⊗ G_{l,t}) vec(Δ_{l,t})
         = λ/2 Σ_l Σ_t tr(Δ_{l,t}ᵀ G_{l,t} Δ_{l,t} A_{l,t}),     Δ_{l,t} = W̃_l − W̃*_{l,t}             (1)

    ∂P/∂W̃_l = λ Σ_t G_{l,t} Δ_{l,t} A_{l,t}                                                         (2)

(Ritter, Botev & Barber 2018, "Online structured Laplace approximations for overcoming catastrophic
forgetting", NeurIPS, eqs. 5-7; vec stacks columns, so (A ⊗ G) vec(Δ) = vec(G Δ A) for symmetric A).
The state of one layer is three stacked tensors, ``{"A": (T, in', in'), "G": (T, out, out), "anchor":
(T_a, out, in')}``: T terms, each with its own anchor (T_a = T, separate anchors as EWC's) or all
centred on the newest anchor (T_a = 1, the online Laplace). The sum of two Kronecker products is not one,
so the online precision Σ_t A_t ⊗ G_t is kept exactly as its T terms (memory and cost linear in T), or
replaced after each task by its nearest Kronecker product (:func:`nearest_kron`, constant memory).

The value and gradient cost two batched matrix products per layer; the gradient is added to ``p.grad``
in closed form (:func:`add_kron_grad_`); :func:`kron_penalty` is differentiable for a loop of your own.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from ..errors import UsageError

Params = Mapping[str, Tensor]
KronState = dict  # {layer name: {"A": (T, i, i), "G": (T, o, o), "anchor": (T_a, o, i)}}


def param_names(layer: str) -> tuple[str, str]:
    """The weight and bias parameter names of module ``layer`` (``"0"`` -> ``"0.weight"``, ``"0.bias"``)."""
    prefix = f"{layer}." if layer else ""
    return f"{prefix}weight", f"{prefix}bias"


def folded(params: Params, layer: str, width: int) -> Tensor:
    """W̃ = [W | b] of ``layer`` (out × width): the weight flattened per output, the bias as its last
    column when ``width`` says it is folded in."""
    w_name, b_name = param_names(layer)
    w = params[w_name]
    w = w.reshape(w.shape[0], -1)
    if width == w.shape[1] + 1:
        return torch.cat([w, params[b_name].reshape(-1, 1)], 1)
    if width != w.shape[1]:
        raise UsageError(f"layer {layer!r} has {w.shape[1]} inputs but its penalty was built for {width}: a layer "
                         "cannot change shape between tasks (rebuild the strategy)")
    return w


def _terms(W: Tensor, s: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """(Δ, Σ_t G_t Δ_t A_t) for one layer: the displacement (T_a, o, i) and the unscaled gradient (o, i)."""
    delta = W.detach().unsqueeze(0) - s["anchor"]  # (T_a, o, i)
    M = torch.matmul(torch.matmul(s["G"], delta), s["A"])  # (T, o, i): G_t Δ_t A_t
    return delta, M


def kron_grads(params: Params, state: KronState, lam: float) -> dict[str, Tensor]:
    """Equation (2), ``{param name: ∂P/∂θ}`` for each penalized weight and folded bias, without autograd."""
    out: dict[str, Tensor] = {}
    for layer, s in state.items():
        width = s["A"].shape[-1]
        W = folded(params, layer, width)
        _, M = _terms(W, s)
        grad = M.sum(0) * lam  # (o, i)
        w_name, b_name = param_names(layer)
        w = params[w_name]
        n_w = w[0].numel()
        out[w_name] = grad[:, :n_w].reshape(w.shape)
        if width == n_w + 1:
            out[b_name] = grad[:, n_w]
    return out


def add_kron_grad_(params: Params, state: KronState, lam: float) -> None:
    """``p.grad += ∂P/∂θ`` (equation (2)) for every trainable penalized parameter, in place."""
    for name, g in kron_grads(params, state, lam).items():
        p = params[name]
        if not p.requires_grad:
            continue  # frozen: untouched, as the diagonal penalty leaves it
        if p.grad is None:
            p.grad = g.to(p.dtype).clone()
        else:
            p.grad.add_(g.to(p.grad.dtype))


def kron_penalty(params: Params, state: KronState, lam: float) -> Tensor:
    """Equation (1), differentiable in ``params`` (a name -> tensor mapping such as
    ``dict(model.named_parameters())``); its gradient is equation (2). 0 when the state is empty."""
    if not state:
        return torch.zeros((), device=next(iter(params.values())).device if params else "cpu")
    names: list[str] = []
    for layer, s in state.items():
        w_name, b_name = param_names(layer)
        names += [w_name] + ([b_name] if s["A"].shape[-1] == params[w_name][0].numel() + 1 else [])
    return _KronPenalty.apply(float(lam), state, names, dict(params), *[params[n] for n in names])


class _KronPenalty(torch.autograd.Function):
    @staticmethod
    def forward(ctx, lam, state, names, params, *theta):
        value = None
        for layer, s in state.items():
            delta, M = _terms(folded(params, layer, s["A"].shape[-1]), s)
            v = (delta * M).sum()  # Σ_t tr(Δ_tᵀ G_t Δ_t A_t) = Σ_t ⟨Δ_t, G_t Δ_t A_t⟩
            value = v if value is None else value + v
        ctx.grads = kron_grads(params, state, lam)
        ctx.names = names
        return 0.5 * lam * value

    @staticmethod
    def backward(ctx, grad_out):
        return (None, None, None, None, *(ctx.grads[n] * grad_out for n in ctx.names))


def kron_penalty_reference(params: Params, state: KronState, lam: float) -> Tensor:
    """Equation (1) with the Kronecker products formed (``torch.kron``): the tests' reference, tiny
    layers only."""
    total = torch.zeros((), dtype=torch.float64)
    for layer, s in state.items():
        W = folded(params, layer, s["A"].shape[-1])
        for t in range(s["A"].shape[0]):
            anchor = s["anchor"][t if s["anchor"].shape[0] > 1 else 0]
            d = (W - anchor).T.reshape(-1).to(torch.float64)  # vec: columns stacked
            total = total + d @ torch.kron(s["A"][t], s["G"][t]).to(torch.float64) @ d
    return 0.5 * lam * total


# ---- merging a task's factors into the state ---------------------------------------------------------
def merge_separate(state: KronState, factors: Mapping[str, Mapping[str, Tensor]], anchors: Mapping[str, Tensor]) -> KronState:
    """One more term with its own anchor (EWC's separate penalties, Kirkpatrick et al. 2017): the rows of
    ``factors`` and ``anchors`` (``{layer: W̃*}``) appended."""
    out: KronState = {}
    for layer in {**state, **factors}:
        if layer not in factors:
            out[layer] = state[layer]
            continue
        new = {"A": factors[layer]["A"].unsqueeze(0), "G": factors[layer]["G"].unsqueeze(0),
               "anchor": anchors[layer].detach().clone().unsqueeze(0)}
        old = state.get(layer)
        out[layer] = new if old is None else {k: torch.cat([_same(old[k], new[k], layer), new[k]]) for k in new}
    return out


def merge_online(state: KronState, factors: Mapping[str, Mapping[str, Tensor]], anchors: Mapping[str, Tensor],
                 gamma: float = 1.0, nearest: bool = False) -> tuple[KronState, dict[str, float]]:
    """The online Laplace (Ritter et al. 2018, eq. 7): precision ← γ · precision + A_t ⊗ G_t, anchor ← the
    newest W̃*. Kept exactly as its terms (the decay scales each old A), or with ``nearest`` replaced by its
    nearest Kronecker product (:func:`nearest_kron`). Returns the state and, for ``nearest``, each layer's
    relative Frobenius error ‖S − A ⊗ G‖/‖S‖ of that replacement (else 0)."""
    out: KronState = {}
    errors: dict[str, float] = {}
    for layer in {**state, **factors}:
        old = state.get(layer)
        if layer not in factors:  # not trained in this task: its precision decays, its anchor stays
            out[layer] = {**old, "A": old["A"] * gamma}
            continue
        A, G = factors[layer]["A"].unsqueeze(0), factors[layer]["G"].unsqueeze(0)
        if old is not None:
            A, G = torch.cat([_same(old["A"], A, layer) * gamma, A]), torch.cat([_same(old["G"], G, layer), G])
        errors[layer] = 0.0
        if nearest and A.shape[0] > 1:
            a, g, errors[layer] = nearest_kron(A, G)
            A, G = a.unsqueeze(0), g.unsqueeze(0)
        out[layer] = {"A": A, "G": G, "anchor": anchors[layer].detach().clone().unsqueeze(0)}
    return out, errors


def nearest_kron(A: Tensor, G: Tensor) -> tuple[Tensor, Tensor, float]:
    """The Kronecker product X ⊗ Y nearest in Frobenius norm to S = Σ_t A_t ⊗ G_t (A (T, i, i), G (T, o, o)),
    and the relative error ‖S − X ⊗ Y‖_F / ‖S‖_F.

    Van Loan & Pitsianis 1993 ("Approximation with Kronecker products"): rearranging S into
    R(S) = Σ_t vec(A_t) vec(G_t)ᵀ turns the problem into the best rank-one approximation of R(S), the top
    singular triple (σ, u, v), X = √σ·u, Y = √σ·v. R(S) = U Vᵀ has rank ≤ T, so the SVD is of the T × T
    matrix R_U R_Vᵀ from the thin QR factorizations U = Q_U R_U, V = Q_V R_V (float64). For positive
    semi-definite A_t and G_t, R(S) has nonnegative entries in the ⟨A_t, A_s⟩ sense, its top singular
    vectors can be taken as nonnegative combinations of the A_t (and G_t), so X and Y stay positive
    semi-definite; ‖S − X ⊗ Y‖²_F = ‖S‖²_F − σ².
    """
    T, i, o = A.shape[0], A.shape[-1], G.shape[-1]
    U = A.reshape(T, i * i).T.to(torch.float64)  # (i², T)
    V = G.reshape(T, o * o).T.to(torch.float64)  # (o², T)
    Qu, Ru = torch.linalg.qr(U)
    Qv, Rv = torch.linalg.qr(V)
    P, sig, Qh = torch.linalg.svd(Ru @ Rv.T)
    u, v = Qu @ P[:, 0], Qv @ Qh[0]
    if u.reshape(i, i).diagonal().sum() < 0:  # the sign that makes X (and then Y) positive semi-definite
        u, v = -u, -v
    scale = sig[0].sqrt()
    X, Y = (scale * u).reshape(i, i), (scale * v).reshape(o, o)
    total = (sig.square().sum()).clamp_min(torch.finfo(torch.float64).tiny)  # ‖S‖²_F = ‖R(S)‖²_F
    error = float(((total - sig[0].square()).clamp_min(0) / total).sqrt())
    X, Y = 0.5 * (X + X.T), 0.5 * (Y + Y.T)
    return X.to(A.dtype), Y.to(G.dtype), error


def kron_sum_error(A: Tensor, G: Tensor, X: Tensor, Y: Tensor) -> float:
    """‖S − X ⊗ Y‖_F / ‖S‖_F for S = Σ_t A_t ⊗ G_t (A (T, i, i), G (T, o, o)), from inner products of the factors
    alone (⟨A ⊗ G, B ⊗ H⟩_F = ⟨A, B⟩_F ⟨G, H⟩_F), without forming any Kronecker product: how far the
    constant-memory form (``kron_sum="nearest"``) has drifted from the exact sum it stands for."""
    a, g = A.reshape(A.shape[0], -1).double(), G.reshape(G.shape[0], -1).double()  # (T, i²), (T, o²)
    x, y = X.reshape(-1).double(), Y.reshape(-1).double()
    ss = ((a @ a.T) * (g @ g.T)).sum()  # ‖S‖²
    err2 = ss - 2 * ((a @ x) * (g @ y)).sum() + (x @ x) * (y @ y)
    return float((err2.clamp_min(0) / ss.clamp_min(torch.finfo(torch.float64).tiny)).sqrt())


def _same(old: Tensor, new: Tensor, layer: str) -> Tensor:
    if old.shape[1:] != new.shape[1:]:
        raise UsageError(f"layer {layer!r} has factors of shape {tuple(new.shape[1:])} now but {tuple(old.shape[1:])} in "
                         "the penalty of earlier tasks: a layer cannot change shape between tasks")
    return old
