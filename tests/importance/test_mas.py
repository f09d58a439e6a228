"""MAS importance, in float64 (its per-sample engine, ``sum_abs_grads``, is test_persample.py's).

The tiny problems of tests/problems.py (``PROBLEMS``, shared with the Fisher tests), each run without a
mask, with one mask for the batch and with a mask per sample. ``mas_importance`` is compared with a
plain loop over samples of ``torch.autograd.grad``; in float64 the
two differ by rounding only (~1e-15 relative), so 1e-8 is a tight yet safe bound. Then identities
(closed form on a linear model, label-freeness, batch-size independence, the triangle inequality
against the mini-batch version). The MAS strategy's tests are in tests/strategies/regularization.
"""

from __future__ import annotations


import pytest
import torch
from torch import Tensor, nn

from lifelong.errors import UsageError
from lifelong.importance import mas_importance
from tests.problems import PROBLEMS, Problem, flat, mlp, rel_err, trainable

RTOL = 1e-8  # float64 vs float64 reference: rounding only


pytestmark = pytest.mark.usefixtures("one_thread")


MASKS = (None, "fixed", "per-sample")


def n_outputs(pr: Problem) -> int:
    with torch.no_grad():
        return pr.model.eval()(pr.x).shape[-1]


def make_mask(kind: str | None, B: int, C: int, seed: int = 0) -> Tensor | None:
    """None; (C,) with units 1 and C − 1 off; or (B, C) random with at least one unit on per row."""
    if kind is None:
        return None
    if kind == "fixed":
        m = torch.ones(C, dtype=torch.bool)
        m[[1, C - 1]] = False
        return m
    m = torch.rand(B, C, generator=torch.Generator().manual_seed(seed)) < 0.6
    m[:, 0] |= ~m.any(1)
    return m


# ---------------------------------------------------------------------------------------------
# Brute-force references: one sample at a time.


def _mask_rows(mask: Tensor | None, lo: int, hi: int) -> Tensor | None:
    return mask if mask is None or mask.dim() == 1 else mask[lo:hi]


def reference_mas(model: nn.Module, x: Tensor, mask: Tensor | None) -> dict[str, Tensor]:
    """Aljundi et al. 2018, eqs. 2 and 4, literally: 1/N Σ_n |∂‖z_n ⊙ m_n‖²/∂θ| by a loop over n."""
    model.eval()
    params = trainable(model)
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for n in range(x.shape[0]):
        z = model(x[n : n + 1])[0]  # (C,)
        m = _mask_rows(mask, n, n + 1)
        if m is not None:
            z = z * m.reshape(-1)  # inactive units are 0
        grads = torch.autograd.grad(z.square().sum(), list(params.values()), allow_unused=True)
        for name, g in zip(params, grads):
            if g is not None:
                total[name] += g.abs()
    return {n: t / x.shape[0] for n, t in total.items()}


def batch_gradient_abs(model: nn.Module, x: Tensor, mask: Tensor | None) -> dict[str, Tensor]:
    """|∂/∂θ 1/N Σ_n ‖z_n ⊙ m_n‖²|: the absolute value of the mini-batch gradient (not MAS)."""
    model.eval()
    params = trainable(model)
    z = model(x)  # (B, C)
    if mask is not None:
        z = z * mask
    grads = torch.autograd.grad(z.square().sum(1).mean(), list(params.values()))
    return {n: g.abs() for n, g in zip(params, grads)}


# ---------------------------------------------------------------------------------------------
# MAS importance and the engine against closed forms and the loop.


@pytest.mark.parametrize("mask_kind", MASKS)
def test_mas_on_a_linear_model_matches_the_closed_form(mask_kind: str | None) -> None:
    """z = W x + b: ∂‖z‖²/∂W = 2 z xᵀ and ∂‖z‖²/∂b = 2z per sample, so Ω_W = 1/N Σ_n |2 z_n x_nᵀ| and
    Ω_b = 1/N Σ_n |2 z_n| (with z_n ⊙ m_n under a mask). One matmul vs a formula: rounding only."""
    pr = PROBLEMS["linear"]()
    lin = pr.model[0]
    mask = make_mask(mask_kind, *pr.x.shape[:1], 3)
    with torch.no_grad():
        z = lin(pr.x)  # (N, C)
        if mask is not None:
            z = z * mask
        want_W = (2 * z[:, :, None] * pr.x[:, None, :]).abs().mean(0)  # (C, D)
        want_b = (2 * z).abs().mean(0)  # (C,)
    got = mas_importance(pr.model, [(pr.x, None, mask)])
    assert rel_err(got, {"0.weight": want_W, "0.bias": want_b}) <= 1e-12


@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("name", PROBLEMS)
def test_mas_matches_per_sample_loop(name: str, mask_kind: str | None) -> None:
    pr = PROBLEMS[name]()
    mask = make_mask(mask_kind, pr.x.shape[0], n_outputs(pr))
    got = mas_importance(pr.model, [(pr.x, None, mask)])
    want = reference_mas(pr.model, pr.x, mask)
    assert got.keys() == want.keys() == trainable(pr.model).keys()
    assert all(got[n].dtype == torch.float64 and got[n].shape == want[n].shape for n in got)
    assert rel_err(got, want) <= RTOL


def test_float32_model_close_to_float64_reference() -> None:
    pr = PROBLEMS["cnn"]()
    want = reference_mas(pr.model, pr.x, None)
    got = mas_importance(pr.model.float(), [pr.x.float()])
    assert all(t.dtype == torch.float32 for t in got.values())
    assert rel_err({n: t.double() for n, t in got.items()}, want) <= 1e-4  # float32 rounding


def test_eval_mode_used_and_modes_restored() -> None:
    """Dropout is off while Ω is computed, and each module's own mode comes back."""
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Dropout(0.5), nn.Linear(7, 4)).double().train()
    model[0].eval()
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    got = mas_importance(model, [x])
    assert [m.training for m in model] == [False, True, True, True]
    assert rel_err(got, reference_mas(model, x, None)) <= RTOL


def test_masked_output_units_get_zero_importance() -> None:
    """A unit masked for the whole batch is 0 before the norm: its head row and bias get Ω = 0."""
    pr = PROBLEMS["mlp-relu"]()
    mask = make_mask("fixed", pr.x.shape[0], n_outputs(pr))
    omega = mas_importance(pr.model, [(pr.x, None, mask)])
    assert (omega["2.weight"][~mask] == 0).all() and (omega["2.bias"][~mask] == 0).all()
    assert (omega["2.bias"][mask] > 0).all()


# ---------------------------------------------------------------------------------------------
# Identities of the importance.


def test_mas_is_label_free() -> None:
    """No label is read: x alone, (x,), (x, None), true, shuffled or even invalid labels give the same Ω."""
    pr = PROBLEMS["cnn"]()
    B, C = pr.x.shape[0], n_outputs(pr)
    gen = torch.Generator().manual_seed(1)
    y = torch.randint(0, C, (B,), generator=gen)
    shuffled = y[torch.randperm(B, generator=gen)]
    nonsense = torch.full((B,), -7.5)  # not even a valid label tensor
    base = mas_importance(pr.model, [pr.x])
    for batch in [(pr.x,), (pr.x, None), (pr.x, y), (pr.x, shuffled), (pr.x, nonsense), [pr.x, y, None]]:
        got = mas_importance(pr.model, [batch])
        assert all(torch.equal(got[n], base[n]) for n in base)
    mask = make_mask("per-sample", B, C)
    masked = mas_importance(pr.model, [(pr.x, None, mask)])
    assert all(torch.equal(mas_importance(pr.model, [(pr.x, shuffled, mask)])[n], masked[n]) for n in masked)


def _batches(x: Tensor, mask: Tensor | None, size: int) -> list[tuple]:
    return [(x[i : i + size], None, _mask_rows(mask, i, i + size)) for i in range(0, x.shape[0], size)]


@pytest.mark.parametrize("name, mask_kind", [("mlp-relu", "per-sample"), ("cnn", "fixed"), ("layernorm", None)])
def test_independent_of_batch_size(name: str, mask_kind: str | None) -> None:
    """Sums are per sample and divided by N once: batching changes rounding only."""
    pr = PROBLEMS[name]()
    mask = make_mask(mask_kind, pr.x.shape[0], n_outputs(pr))
    whole = mas_importance(pr.model, _batches(pr.x, mask, pr.x.shape[0]))
    for size in (1, 3):
        assert rel_err(mas_importance(pr.model, _batches(pr.x, mask, size)), whole) <= 1e-12


@pytest.mark.parametrize("name", ["mlp-relu", "cnn", "layernorm"])
def test_abs_of_batch_gradient_is_never_larger(name: str) -> None:
    """Triangle inequality: |1/N Σ_n g_n| ≤ 1/N Σ_n |g_n| elementwise, and strictly smaller in total."""
    pr = PROBLEMS[name]()
    omega = mas_importance(pr.model, [pr.x])
    batch = batch_gradient_abs(pr.model, pr.x, None)
    for n in omega:
        assert (batch[n] <= omega[n] * (1 + 1e-12) + 1e-300).all()
    assert float(flat(batch).sum()) < float(flat(omega).sum())


def test_per_sample_abs_is_not_abs_of_batch_gradient() -> None:
    """A clear case: z = W x with b = 0 and data {x_n} ∪ {−x_n}. ∂‖z‖²/∂b = 2z is odd in x, so the
    batch gradient for b cancels exactly (its |·| is 0) while MAS's Ω_b = 1/N Σ |2 z_n| is not."""
    torch.manual_seed(9)
    model = nn.Linear(4, 3).double()
    with torch.no_grad():
        model.bias.zero_()
    half = torch.randn(8, 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    x = torch.cat([half, -half])  # (16, 4)
    omega = mas_importance(model, [x])
    batch = batch_gradient_abs(model, x, None)
    assert float(batch["bias"].max()) <= 1e-12 * float(omega["bias"].min())
    assert float(omega["bias"].min()) > 0.1  # |2 z| averaged: order 1 for unit-variance inputs


@pytest.mark.parametrize(
    "batches, message",
    [
        ([], "at least one sample"),
        ([(torch.zeros(2, 4), None, torch.tensor([1, 0, 1]))], "bool"),
        ([{"x": torch.zeros(2, 4)}], r"\(x, y, mask\)"),
        ([(torch.zeros(2, 4), None, None, None)], r"\(x, y, mask\)"),
    ],
)
def test_usage_errors(batches: list, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        mas_importance(mlp([4, 3]), batches)


