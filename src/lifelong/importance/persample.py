"""Per-sample squared (or absolute) gradients of logit-space directions: the engine under every
Fisher diagonal and under MAS.

Every diagonal Fisher variant (see :mod:`lifelong.importance.fisher`) is a weighted sum of squared
per-sample gradients of log-probabilities. Since ∂ log p(c|x)/∂z = e_c − p (z the logits, p the
softmax), each such gradient is a vector-Jacobian product Jᵀv with J_n = ∂z_n/∂θ and a detached
direction v in logit space, so all of them reduce to

    S(θ) = Σ_k Σ_n ( J_nᵀ v_{k,n} )²          (elementwise square; k indexes directions)      (1)

which :func:`sum_sq_grads` computes for directions ``v`` of shape ``(K, B, C)``. Squaring happens per
sample: never square a mini-batch gradient (that is a different quantity, about 1/B as large).

MAS (Aljundi et al. 2018, "Memory Aware Synapses", ECCV, eqs. 2 and 4; see
:mod:`lifelong.importance.mas`) needs absolute values instead of squares,

    A(θ) = Σ_k Σ_n | J_nᵀ v_{k,n} |          (elementwise absolute value)                     (3)

which :func:`sum_abs_grads` computes with the same machinery: both t ↦ t² and t ↦ |t| are
multiplicative (f(st) = f(s) f(t)), which is all that the outer-product trick (2) below needs.
The absolute value is taken per sample too: |Σ_n g_n| ≤ Σ_n |g_n|, with equality only where the
per-sample gradients agree in sign.

Two ways to compute (1) and (3):

* **Hooks** (fast path), when every trainable parameter belongs to an ``nn.Linear`` applied to 2-D
  input or an ``nn.Conv2d`` with zero padding. Forward hooks capture each module's input ``a`` and
  output ``s``; one backward per direction k gives the output gradients g_{k,n} = ∂(v_{k,n}ᵀ z_n)/∂s_n
  of all samples at once (row n belongs to sample n, as samples are independent). The per-sample
  weight gradient of a linear layer is the outer product g_{k,n} a_nᵀ, so with G = Σ_k g_k ⊙ g_k
  of shape (B, out)

      S(W) = Gᵀ (a ⊙ a),     S(b) = Σ_n G_n                                                     (2)

  one matmul per layer, independent of K (the trick of Goodfellow 2015, "Efficient per-example
  gradient computations", and of BackPACK's ``DiagGGN`` extensions, Dangel et al. 2020). For (3),
  |g a_nᵀ| = |g| |a_n|ᵀ gives the same with G = Σ_k |g_k| and |a| in place of a ⊙ a. A
  convolution's per-sample weight gradient is g_{k,n} U_nᵀ with U_n = unfold(a_n), a sum over
  positions that does not factor: it is formed, squared (or made absolute) and summed in chunks.
* **torch.func** (fallback) for anything else (LayerNorm, BatchNorm, Embedding, bare parameters,
  ``nn.Linear`` on 3-D input, weight sharing...): ``vmap`` over samples of ``vjp`` of a
  ``functional_call``, with an inner ``vmap`` over the K directions, chunked over samples.
* **a loop over samples** (the last resort, and ``method="loop"``) for models ``vmap`` cannot trace
  (data-dependent control flow, ``.item()``: Hugging Face transformers build their attention masks so):
  one forward per sample and one backward per direction, the same sums, slower.

Both run the model in eval mode (dropout off, batch-norm running statistics) and restore every
module's mode afterwards. The model must treat samples independently (true in eval mode for the
usual layers), and a parameter owned by a Linear/Conv2d must be used only through that module's
forward; the hook path checks that each such module is called exactly once.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.errors import UsageError

Directions = Union[Tensor, Callable[[Tensor], Tensor]]
METHODS = ("auto", "hooks", "func", "loop")

# Bound on the elements of the chunked temporaries (per-sample conv weight gradients, per-sample
# gradients in the fallback): 2**24 elements = 64 MiB in float32, 128 MiB in float64.
DEFAULT_MAX_ELEMENTS = 2**24


def sum_sq_grads(
    model: nn.Module,
    x: Tensor,
    v: Directions,
    *,
    method: str = "auto",
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> dict[str, Tensor]:
    """Equation (1): Σ_k Σ_n (∂(v_{k,n}ᵀ z_n)/∂θ)² for every trainable parameter θ.

    Args:
        model: maps ``x`` (B, ...) to logits z (B, C).
        x: one batch of inputs.
        v: directions in logit space, a tensor (K, B, C), or a function of the detached logits
            (B, C) returning one (so the model runs forward once).
        method: ``"auto"`` (hooks when every trainable parameter is owned by a supported layer,
            else torch.func), ``"hooks"`` (raise if unsupported) or ``"func"``.
        max_elements: bound on the size of the largest temporary; the work is chunked to fit.

    Returns:
        ``{name: S}`` for each parameter with ``requires_grad``, shaped and typed like it.

    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    >>> s = sum_sq_grads(net, torch.randn(5, 3), torch.randn(7, 5, 2))
    >>> sorted(s), tuple(s["0.weight"].shape)
    (['0.bias', '0.weight', '2.bias', '2.weight'], (4, 3))
    """
    return _sum_grads(model, x, v, method, max_elements, absolute=False)


def sum_abs_grads(
    model: nn.Module,
    x: Tensor,
    v: Directions,
    *,
    method: str = "auto",
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> dict[str, Tensor]:
    """Equation (3): Σ_k Σ_n |∂(v_{k,n}ᵀ z_n)/∂θ| for every trainable parameter θ.

    The contract of :func:`sum_sq_grads` (arguments, shapes, eval mode, fast paths and fallback),
    with the absolute value of each per-sample gradient in place of its square. With one direction
    v_n = 2 z_n per sample this is Σ_n |∂‖z_n‖²/∂θ|, the sum behind MAS
    (:func:`lifelong.importance.mas_importance`).

    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    >>> x = torch.randn(5, 3)
    >>> a = sum_abs_grads(net, x, lambda z: 2 * z.unsqueeze(0))  # (1, B, C): ∂‖z‖²/∂z = 2z
    >>> torch.allclose(a["2.bias"], (2 * net(x)).abs().sum(0))   # ∂‖z_n‖²/∂b = 2 z_n
    True
    """
    return _sum_grads(model, x, v, method, max_elements, absolute=True)


def _sum_grads(
    model: nn.Module, x: Tensor, v: Directions, method: str, max_elements: int, absolute: bool
) -> dict[str, Tensor]:
    """Equation (3) if ``absolute`` else (1): hooks where they apply, else torch.func."""
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    with eval_mode(model), torch.enable_grad():
        if method != "func":
            owners = _hook_owners(model)
            if owners is not None:
                out = _sum_grads_hooks(model, x, v, owners, max_elements, absolute)
                if out is not None:
                    return out
            if method == "hooks":
                raise UsageError(
                    "method='hooks' needs every trainable parameter in an nn.Linear on 2-D input or a "
                    "zero-padded nn.Conv2d, each called once; use method='auto' to fall back to torch.func"
                )
        if method == "loop":
            return _sum_grads_loop(model, x, v, absolute)
        try:
            return _sum_grads_func(model, x, v, max_elements, absolute)
        except RuntimeError as e:
            if method != "auto" or ("vmap" not in str(e) and "functorch" not in str(e).lower()):
                raise
            return _sum_grads_loop(model, x, v, absolute)  # the model cannot be vmapped: per sample, by hand


def _sum_grads_loop(model: nn.Module, x: Tensor, v: Directions, absolute: bool) -> dict[str, Tensor]:
    """Equation (1), or (3) if ``absolute``: sample by sample, direction by direction, with autograd."""
    params = _trainable(model)
    names, ps = list(params), list(params.values())
    if callable(v):
        with torch.no_grad():
            v = _directions(v, model(x))
    elif v.dim() != 3 or v.shape[1] != x.shape[0]:
        raise UsageError(f"directions must have shape (K, B, C) with B = {x.shape[0]}; got {tuple(v.shape)}")
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    K, B = v.shape[:2]
    for b in range(B):
        if K == 0:
            break
        z = model(x[b : b + 1]).squeeze(0)  # (C,)
        for k in range(K):
            grads = torch.autograd.grad(z, ps, v[k, b].to(z.dtype), retain_graph=k < K - 1, allow_unused=True)
            for n, g in zip(names, grads):
                if g is not None:
                    total[n] += _elementwise(g, absolute)
    return total


def describe_batch(batch) -> str:
    """What a batch is, for error messages: ``dict with keys ...``, ``3-tuple (Tensor, Tensor, float)``."""
    if isinstance(batch, dict):
        return f"a dict with keys {', '.join(map(str, list(batch)[:4]))}"
    if isinstance(batch, (tuple, list)):
        return f"a {len(batch)}-{type(batch).__name__} ({', '.join(type(b).__name__ for b in batch[:4])})"
    return f"a {type(batch).__name__}"


def batch_mean(
    model: nn.Module,
    work: Iterable[tuple[Tensor, Directions]],
    engine: Callable[[nn.Module, Tensor, Directions], dict[str, Tensor]],
    what: str,
    reduce: Callable[[dict[str, Tensor], int], tuple[dict[str, Tensor], int]] | None = None,
) -> dict[str, Tensor]:
    """1/N Σ over ``work``'s ``(x, directions)`` batches of ``engine(model, x, directions)`` (N the number
    of samples), summed in float64 and returned in each parameter's dtype, so the result does not
    depend on how the data was batched. ``what`` names the estimate in the error for empty data.
    ``reduce(sums, n)``: data sharded over processes (DDP) all-reduces the float64 sums and the counts
    before the division, so every process gets the importance of the whole data set."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise UsageError(f"{what}: the model has no trainable parameters (requires_grad=True), so there is nothing "
                         "to estimate; unfreeze the layers the penalty should protect")
    sums = {n: torch.zeros(p.shape, dtype=torch.float64, device=p.device) for n, p in params.items()}
    n_samples = 0
    for x, directions in work:
        for n, s in engine(model, x, directions).items():
            sums[n].add_(s)  # accumulated in float64 (one mixed-dtype kernel, no float64 copy of s)
        n_samples += x.shape[0]
    if reduce is not None:
        sums, n_samples = reduce(sums, n_samples)
    if n_samples == 0:
        raise UsageError(f"{what} needs at least one sample; `batches` was empty")
    return {n: (sums[n] / n_samples).to(p.dtype) for n, p in params.items()}


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode, then restore each module's own ``training`` flag."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def _trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _elementwise(t: Tensor, absolute: bool) -> Tensor:
    """|t| for equation (3), t² for (1); both multiplicative, so f(g aᵀ) = f(g) f(a)ᵀ."""
    return t.abs() if absolute else t.square()


def _directions(v: Directions, logits: Tensor) -> Tensor:
    """The (K, B, C) directions, checked against the logits' shape and cast to their dtype."""
    out = v(logits.detach()) if callable(v) else v
    if out.dim() != 3 or out.shape[1:] != logits.shape:
        raise UsageError(
            f"directions must have shape (K, B, C) = (K, {', '.join(map(str, logits.shape))}); "
            f"got {tuple(out.shape)}"
        )
    return out.detach().to(logits.dtype)


# ---------------------------------------------------------------------------------------------
# Fast path: forward hooks on Linear / Conv2d, equation (2).


def _fast_module(m: nn.Module) -> bool:
    if type(m) is nn.Linear:
        return True
    return (
        type(m) is nn.Conv2d
        and m.padding_mode == "zeros"
        and not isinstance(m.padding, str)
    )


def _hook_owners(model: nn.Module) -> dict[nn.Module, dict[str, str]] | None:
    """``{module: {"weight": name, "bias": name}}`` (trainable entries only) when every trainable
    parameter is owned by exactly one supported module, else None."""
    owner_of: dict[int, list[tuple[nn.Module, str]]] = {}
    for m in model.modules():
        for attr, p in m._parameters.items():
            if p is not None:
                owner_of.setdefault(id(p), []).append((m, attr))
    owners: dict[nn.Module, dict[str, str]] = {}
    for name, p in _trainable(model).items():
        found = owner_of.get(id(p), [])
        if len(found) != 1 or not _fast_module(found[0][0]):
            return None
        m, attr = found[0]
        owners.setdefault(m, {})[attr] = name
    return owners


def _sum_grads_hooks(
    model: nn.Module,
    x: Tensor,
    v: Directions,
    owners: dict[nn.Module, dict[str, str]],
    max_elements: int,
    absolute: bool,
) -> dict[str, Tensor] | None:
    """Equation (2) through forward hooks (|·| in place of ² when ``absolute``); None when this
    batch cannot use them (then fall back)."""
    logits, seen = _capture_outputs(model, x, owners)
    for m, calls in seen.items():
        if len(calls) != 1:
            return None  # unused or called twice (shared weights): per-sample grads need func
        a, v_a, _, _ = calls[0]
        if a._version != v_a:
            return None  # the layer's input was modified in place after the layer read it
        if a.dim() != (2 if type(m) is nn.Linear else 4):
            return None
    v = _directions(v, logits)  # (K, B, C)
    mods = list(owners)
    outs = [seen[m][0][2] for m in mods]  # each layer's output s, (B, out) or (B, out, H, W)
    G: list[Tensor | None] = [None] * len(mods)  # Linear: Σ_k g_k² or Σ_k |g_k|   (B, out)
    conv: dict[str, Tensor] = {}
    unfolded: dict[nn.Module, Tensor] = {}
    for k in range(v.shape[0]):
        # One backward per direction (measured faster on CPU than is_grads_batched=True, whose
        # vmapped matmuls broadcast the weights); samples are independent, so row n of g is the
        # per-sample output gradient ∂(v_{k,n}ᵀ z_n)/∂s_n.
        grads = torch.autograd.grad(
            logits, outs, grad_outputs=v[k], retain_graph=k + 1 < v.shape[0], allow_unused=True
        )
        for i, (m, g) in enumerate(zip(mods, grads)):
            if g is None:
                continue  # the logits do not depend on this layer: zero gradient
            if type(m) is nn.Linear:
                if G[i] is None:
                    G[i] = _elementwise(g, absolute)  # (B, out)
                elif absolute:
                    G[i].add_(g.abs())
                else:
                    G[i].addcmul_(g, g)
            else:
                if m not in unfolded:
                    unfolded[m] = _unfold(m, seen[m][0][0].detach())  # (B, groups, i·kh·kw, L)
                for attr, s in _conv_sum(m, unfolded[m], g, max_elements, absolute).items():
                    name = owners[m][attr]
                    conv[name] = s if name not in conv else conv[name].add_(s)

    result: dict[str, Tensor] = dict(conv)
    for m, Gm in zip(mods, G):
        if Gm is None:
            continue
        names = owners[m]
        a = seen[m][0][0].detach()  # (B, in)
        if "weight" in names:
            result[names["weight"]] = Gm.T @ _elementwise(a, absolute)  # (out, in), equation (2)
        if "bias" in names:
            result[names["bias"]] = Gm.sum(0)  # (out,)
    return {
        n: result[n].reshape(p.shape).to(p.dtype) if n in result else torch.zeros_like(p)
        for n, p in _trainable(model).items()
    }


def _forward_capture(
    model: nn.Module, x: Tensor, owners: dict[nn.Module, dict[str, str]], copy_outputs: bool
) -> tuple[Tensor, dict[nn.Module, list[tuple[Tensor, int, Tensor, int]]]]:
    """Run the model, recording (input, its version, output, its version) at each call of an
    owner module; with ``copy_outputs`` each module hands a clone of its output downstream."""
    seen: dict[nn.Module, list[tuple[Tensor, int, Tensor, int]]] = {m: [] for m in owners}

    def hook(m: nn.Module, args: tuple, out: Tensor) -> Tensor | None:
        seen[m].append((args[0], args[0]._version, out, out._version))
        return out.clone() if copy_outputs else None

    handles = [m.register_forward_hook(hook) for m in owners]
    try:
        logits = model(x)  # (B, C)
    finally:
        for h in handles:
            h.remove()
    return logits, seen


def _capture_outputs(
    model: nn.Module, x: Tensor, owners: dict[nn.Module, dict[str, str]]
) -> tuple[Tensor, dict[nn.Module, list[tuple[Tensor, int, Tensor, int]]]]:
    """:func:`_forward_capture` whose captured outputs are the ones the logits were computed from: when an
    in-place op after a layer (ReLU(inplace=True)) rewrote a captured output, whose gradient would then be
    the wrong one, run again, handing a copy of each output downstream."""
    logits, seen = _forward_capture(model, x, owners, copy_outputs=False)
    if any(out._version != v_out for calls in seen.values() for _, _, out, v_out in calls):
        logits, seen = _forward_capture(model, x, owners, copy_outputs=True)
    return logits, seen


def _unfold(m: nn.Conv2d, a: Tensor) -> Tensor:
    """Input patches of a convolution, grouped: (B, groups, in/groups·kh·kw, L)."""
    U = F.unfold(a, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)
    return U.reshape(a.shape[0], m.groups, -1, U.shape[-1])


def _conv_sum(m: nn.Conv2d, U: Tensor, g: Tensor, max_elements: int, absolute: bool) -> dict[str, Tensor]:
    """Σ_n of squared (``absolute``: absolute) per-sample conv gradients for one direction,
    g = output gradient (B, out, H, W).

    The per-sample weight gradient is g_n U_nᵀ per group (U from :func:`_unfold`); it is formed for
    a chunk of samples at a time so the (B', groups, out/groups, in/groups·kh·kw) temporary stays
    under ``max_elements``.
    """
    B, out = g.shape[:2]
    g = g.reshape(B, m.groups, out // m.groups, -1)  # (B, groups, out/groups, L)
    sums: dict[str, Tensor] = {}
    if m.weight.requires_grad:
        b_chunk = max(1, min(B, max_elements // m.weight.numel()))
        total = None
        for b0 in range(0, B, b_chunk):
            gw = g[b0 : b0 + b_chunk] @ U[b0 : b0 + b_chunk].transpose(-1, -2)  # (B', groups, o, i)
            s = _elementwise(gw, absolute).sum(0)  # (groups, out/groups, in/groups·kh·kw)
            total = s if total is None else total.add_(s)
        sums["weight"] = total.reshape(m.weight.shape)
    if m.bias is not None and m.bias.requires_grad:
        sums["bias"] = _elementwise(g.sum(-1), absolute).sum(0).reshape(out)  # (out,)
    return sums


# ---------------------------------------------------------------------------------------------
# Fallback: torch.func, any model.


def _sum_grads_func(
    model: nn.Module, x: Tensor, v: Directions, max_elements: int, absolute: bool
) -> dict[str, Tensor]:
    """Equation (1), or (3) if ``absolute``, by ``vmap`` over samples of ``vjp`` (with a ``vmap``
    over directions inside)."""
    from torch.func import functional_call, vjp, vmap

    params = {n: p.detach() for n, p in _trainable(model).items()}
    if callable(v):
        with torch.no_grad():
            v = _directions(v, model(x))
    elif v.dim() != 3 or v.shape[1] != x.shape[0]:
        raise UsageError(f"directions must have shape (K, B, C) with B = {x.shape[0]}; got {tuple(v.shape)}")
    K, B = v.shape[:2]
    if K == 0:  # no directions (e.g. the exact Fisher with one active class): the sum is 0
        return {n: torch.zeros_like(p) for n, p in params.items()}
    v = v.detach().transpose(0, 1)  # (B, K, C)

    def one_sample(xn: Tensor, vn: Tensor) -> dict[str, Tensor]:
        def logits_of(p: dict[str, Tensor]) -> Tensor:
            return functional_call(model, p, (xn.unsqueeze(0),)).squeeze(0)  # (C,)

        z, pullback = vjp(logits_of, params)
        (grads,) = vmap(pullback)(vn.to(z.dtype))  # {name: (K, *shape)}
        return {n: _elementwise(g, absolute).sum(0) for n, g in grads.items()}

    n_params = sum(p.numel() for p in params.values())
    b_chunk = max(1, min(B, max_elements // max(1, K * n_params)))
    total: dict[str, Tensor] = {}
    for b0 in range(0, B, b_chunk):
        per = vmap(one_sample)(x[b0 : b0 + b_chunk], v[b0 : b0 + b_chunk])  # {name: (B', *shape)}
        for n, s in per.items():
            s = s.sum(0)
            total[n] = s if n not in total else total[n] + s
    return {n: total[n].to(p.dtype) for n, p in params.items()}


# ---------------------------------------------------------------------------------------------
# Kronecker factors: the same captured inputs and per-sample output gradients, as second moments.


def kron_layers(model: nn.Module, x: Tensor) -> dict[str, nn.Module]:
    """The layers whose Fisher block the Kronecker factors of :func:`sum_kron_factors` describe exactly
    as K-FAC/KFC define them: ``{module name: module}`` for every ``nn.Linear`` called once on 2-D input
    and every zero-padded, ungrouped ``nn.Conv2d`` called once, whose weight is trainable (a trainable bias
    is folded in). Found by one forward of ``x``; every other trainable parameter is left to the diagonal."""
    candidates = {m: name for name, m in model.named_modules()
                  if _fast_module(m) and getattr(m, "groups", 1) == 1 and m.weight.requires_grad}
    with eval_mode(model), torch.no_grad():
        _, seen = _forward_capture(model, x, {m: {} for m in candidates}, copy_outputs=False)
    return {name: m for m, name in candidates.items()
            if len(seen[m]) == 1 and seen[m][0][0].dim() == (2 if type(m) is nn.Linear else 4)}


def fold_width(m: nn.Module) -> int:
    """Columns of the layer's folded weight [W | b]: inputs (Linear) or in·kh·kw (Conv2d), plus one for a
    trainable bias."""
    return m.weight[0].numel() + int(m.bias is not None and m.bias.requires_grad)


def sum_kron_factors(model: nn.Module, x: Tensor, v: Directions, layers: dict[str, nn.Module]) -> dict[str, Tensor]:
    """Sums over the samples of one batch of the Kronecker factors of each layer in ``layers``
    (``{name: module}`` from :func:`kron_layers`), for logit directions ``v`` (K, B, C):

        Linear   A = Σ_n ā_n ā_nᵀ,            G = Σ_n Σ_k g_{k,n} g_{k,n}ᵀ                         (4)
        Conv2d   A = Σ_n Σ_l ū_{n,l} ū_{n,l}ᵀ,  G = Σ_n 1/L Σ_l Σ_k g_{k,n,l} g_{k,n,l}ᵀ             (5)

    with ā = [a; 1] the layer's input with a 1 appended when the bias is trainable (the bias is the
    weight of a constant input), ū_{n,l} the input patch at output location l of L (:func:`_unfold`),
    and g the gradient of v_{k,n}ᵀ z_n with respect to the layer's output (at location l): per sample,
    from one backward per direction, as in :func:`sum_sq_grads`. (5) is KFC's Ω and Γ (Grosse & Martens
    2016, "A Kronecker-factored approximate Fisher matrix for convolution layers", eqs. 27-28: the sum
    over locations on the input side, the mean on the output side). Returned as ``{"<name>.A": (i, i),
    "<name>.G": (o, o)}`` in the layer's dtype; summed over batches in float64 and divided by the number
    of samples they are the factors of :func:`lifelong.importance.kfac.kron_factors`.
    """
    with eval_mode(model), torch.enable_grad():
        owners = {m: {} for m in layers.values()}
        logits, seen = _capture_outputs(model, x, owners)
        for name, m in layers.items():
            if len(seen[m]) != 1:
                raise UsageError(f"layer {name!r} was called {len(seen[m])} times in one forward; its Kronecker "
                                 "factors need exactly one call per forward (the layers are found on the first batch)")
        v = _directions(v, logits)  # (K, B, C)
        mods = list(layers.items())
        out: dict[str, Tensor] = {}
        for name, m in mods:
            a = seen[m][0][0].detach()
            if type(m) is nn.Conv2d:
                a = _unfold(m, a).squeeze(1).transpose(1, 2).reshape(-1, m.weight[0].numel())  # (B·L, i·kh·kw)
            if fold_width(m) > a.shape[1]:
                a = torch.cat([a, a.new_ones(a.shape[0], 1)], 1)  # ā = [a; 1]
            out[f"{name}.A"] = a.T @ a  # (i, i), equations (4)-(5), in the layer's dtype (callers sum in float64)
        outs = [seen[m][0][2] for _, m in mods]
        gs: dict[str, list[Tensor]] = {name: [] for name, _ in mods}
        for k in range(v.shape[0]):
            grads = torch.autograd.grad(logits, outs, grad_outputs=v[k], retain_graph=k + 1 < v.shape[0],
                                        allow_unused=True)
            for (name, m), g in zip(mods, grads):
                if g is None:
                    continue  # the logits do not depend on this layer
                if g.dim() == 4:  # (B, o, H, W) -> (B·L, o), each location weighted 1/L
                    L = g.shape[2] * g.shape[3]
                    g = g.flatten(2).transpose(1, 2).reshape(-1, g.shape[1]) / L**0.5
                gs[name].append(g)
        for name, m in mods:
            g = torch.cat(gs[name]) if gs[name] else m.weight.new_zeros(0, m.weight.shape[0])  # (K·B(·L), o)
            out[f"{name}.G"] = g.T @ g  # (o, o): Σ_k Σ_n g gᵀ in one product
    return out
