"""Fisher diagonals against a brute-force loop, plus identities (the per-sample engine itself,
``sum_sq_grads``, is test_persample.py's).

The tiny problems of tests/problems.py (``PROBLEMS``): seeded float64 models with inputs, labels and
masks. Every Fisher kind is compared to a plain loop over
samples (and classes) of ``torch.autograd.grad`` of log p, squared and accumulated. In float64 the
two differ only by rounding (~1e-15 relative), so 1e-8 is a tight yet safe bound.
"""

from __future__ import annotations


import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from lifelong.errors import UsageError
from lifelong.importance import (
    FISHER_KINDS,
    fisher_diag,
    fisher_diag_empirical,
    fisher_diag_exact,
    fisher_diag_mc,
    fisher_diag_predicted,
    logit_directions,
    masked_logits,
    multinomial_cov_factor,
    sum_sq_grads,
)
from tests.problems import PROBLEMS, Problem, flat, mlp, reference_per_sample, rel_err, trainable

RTOL = 1e-8  # float64 vs float64 reference: rounding only


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# Brute-force references: one sample, one class at a time.


def _mask_row(mask: Tensor | None, n: int) -> Tensor | None:
    return None if mask is None or mask.dim() == 1 else mask[n : n + 1]


def reference_fisher(pr: Problem, kind: str, mc_labels: Tensor | None = None) -> dict[str, Tensor]:
    """Equations (1)-(4) of lifelong.importance.fisher by a loop over samples and classes."""
    model, params = pr.model.eval(), trainable(pr.model)
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    B = pr.x.shape[0]
    for n in range(B):
        mask = pr.mask if pr.mask is None or pr.mask.dim() == 1 else pr.mask[n]
        logp = masked_logits(model(pr.x[n : n + 1]), mask).log_softmax(-1)[0]  # (C,)
        p = logp.detach().exp()
        if kind == "exact":
            terms = [(c, p[c]) for c in range(len(p)) if p[c] > 0]
        elif kind == "empirical":
            terms = [(int(pr.y[n]), 1.0)]
        elif kind == "predicted":
            terms = [(int(p.argmax()), 1.0)]
        else:
            terms = [(int(c), 1.0 / len(mc_labels[n])) for c in mc_labels[n]]
        for c, w in terms:
            grads = torch.autograd.grad(logp[c], list(params.values()), retain_graph=True, allow_unused=True)
            for name, g in zip(params, grads):
                if g is not None:
                    total[name] += w * g.square()
    return {n: t / B for n, t in total.items()}


def reference_sum_sq(model: nn.Module, x: Tensor, v: Tensor) -> dict[str, Tensor]:
    return reference_per_sample(model, x, v, Tensor.square)


def mc_labels_like_fisher(pr: Problem, seed: int, S: int) -> Tensor:
    """The labels fisher_diag(kind="mc") draws for one batch: multinomial(p, S) with the generator."""
    with torch.no_grad():
        p = masked_logits(pr.model.eval()(pr.x), pr.mask).softmax(-1)
    return torch.multinomial(p, S, replacement=True, generator=torch.Generator().manual_seed(seed))  # (B, S)


# ---------------------------------------------------------------------------------------------
# Fast paths and fallback against the loop.


@pytest.mark.parametrize("kind", FISHER_KINDS)
@pytest.mark.parametrize("name", PROBLEMS)
def test_fisher_matches_loop(name: str, kind: str) -> None:
    pr = PROBLEMS[name]()
    S, seed = 3, 7
    got = fisher_diag(pr.model, [(pr.x, pr.y, pr.mask)], kind,
                      generator=torch.Generator().manual_seed(seed), mc_samples=S)
    labels = mc_labels_like_fisher(pr, seed, S) if kind == "mc" else None
    want = reference_fisher(pr, kind, labels)
    assert got.keys() == want.keys() == trainable(pr.model).keys()
    assert all(got[n].dtype == torch.float64 and got[n].shape == want[n].shape for n in got)
    assert rel_err(got, want) <= RTOL


def test_a_model_vmap_cannot_trace_falls_back_to_the_per_sample_loop() -> None:
    """Data-dependent control flow (as Hugging Face attention masks have) stops vmap; method="auto"
    then loops over samples and still gives the per-sample sums (never a squared batch gradient)."""

    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3).double()
            self.scale = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))  # a bare parameter: no hooks

        def forward(self, x):
            return self.lin(x) * self.scale * (2.0 if x.sum().item() > 0 else 1.0)  # reads a value: vmap refuses

    torch.manual_seed(0)
    model = Branchy()
    x = torch.randn(5, 4, dtype=torch.float64)
    v = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with pytest.raises(RuntimeError, match="vmap"):
        sum_sq_grads(model, x, v, method="func")
    assert rel_err(sum_sq_grads(model, x, v), reference_sum_sq(model, x, v)) <= RTOL


def test_named_estimators_are_fisher_diag_kinds() -> None:
    pr = PROBLEMS["mlp-sample-mask"]()
    data = [(pr.x, pr.y, pr.mask)]
    assert rel_err(fisher_diag_exact(pr.model, data), fisher_diag(pr.model, data, "exact")) == 0
    assert rel_err(fisher_diag_empirical(pr.model, data), fisher_diag(pr.model, data, "empirical")) == 0
    assert rel_err(fisher_diag_predicted(pr.model, data), fisher_diag(pr.model, data, "predicted")) == 0
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert rel_err(fisher_diag_mc(pr.model, data, generator=g(), mc_samples=2),
                   fisher_diag(pr.model, data, "mc", generator=g(), mc_samples=2)) == 0


def test_float32_model_close_to_float64_reference() -> None:
    pr = PROBLEMS["cnn"]()
    want = reference_fisher(pr, "exact")
    got = fisher_diag_exact(pr.model.float(), [(pr.x.float(), pr.y, None)])
    assert all(t.dtype == torch.float32 for t in got.values())
    assert rel_err({n: t.double() for n, t in got.items()}, want) <= 1e-4  # float32 rounding


@settings(max_examples=60, deadline=None)
@given(
    logits=st.lists(st.one_of(st.floats(-40, 40), st.just(float("-inf"))), min_size=1, max_size=7).filter(
        lambda z: any(t > float("-inf") for t in z)
    ),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_cholesky_factor_reproduces_multinomial_covariance(logits: list[float], dtype: torch.dtype) -> None:
    """L Lᵀ = diag(p) − ppᵀ for any p, including exact zeros (masked classes) and near one-hots."""
    p = torch.tensor([logits], dtype=torch.float64).softmax(-1).to(dtype)  # (1, A)
    L = multinomial_cov_factor(p)
    assert L.shape == (1, p.shape[1], p.shape[1] - 1) and torch.isfinite(L).all()
    cov = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    eps = torch.finfo(dtype).eps
    assert (L @ L.mT - cov).abs().max() <= 8 * eps  # entries of cov are at most 1/4


@pytest.mark.parametrize("name", ["mlp-sample-mask", "cnn-groups-mask", "layernorm"])
def test_exact_factors_agree(name: str) -> None:
    """Equation (5): the Cholesky factor (A − 1 directions) and √p_c (e_c − p) (A directions)."""
    pr = PROBLEMS[name]()
    with torch.no_grad():
        z = pr.model.eval()(pr.x)
    chol = logit_directions(z, "exact", mask=pr.mask)
    sym = logit_directions(z, "exact", mask=pr.mask, exact_factor="sqrt")
    assert chol.shape[0] == sym.shape[0] - 1
    assert rel_err(sum_sq_grads(pr.model, pr.x, chol), sum_sq_grads(pr.model, pr.x, sym)) <= 1e-12


# ---------------------------------------------------------------------------------------------
# Identities.


def _batches(pr: Problem, size: int) -> list[tuple]:
    B = pr.x.shape[0]
    out = []
    for i in range(0, B, size):
        m = pr.mask if pr.mask is None or pr.mask.dim() == 1 else pr.mask[i : i + size]
        out.append((pr.x[i : i + size], pr.y[i : i + size], m))
    return out


@pytest.mark.parametrize("name", ["mlp-sample-mask", "cnn", "layernorm"])
def test_independent_of_batch_size(name: str) -> None:
    """(a) Sums are per sample and divided by N once: batching changes rounding only."""
    pr = PROBLEMS[name]()
    for kind in ("exact", "empirical", "predicted"):
        whole = fisher_diag(pr.model, _batches(pr, pr.x.shape[0]), kind)
        for size in (1, 3):
            assert rel_err(fisher_diag(pr.model, _batches(pr, size), kind), whole) <= 1e-12


@pytest.mark.parametrize("name", ["mlp-relu", "mlp-sample-mask", "cnn"])
def test_predicted_equals_empirical_at_argmax_labels(name: str) -> None:
    """(b) Equation (4) is (3) with y = argmax p."""
    pr = PROBLEMS[name]()
    with torch.no_grad():
        y = masked_logits(pr.model.eval()(pr.x), pr.mask).argmax(-1)
    data = [(pr.x, y, pr.mask)]
    assert rel_err(fisher_diag_predicted(pr.model, data), fisher_diag_empirical(pr.model, data)) <= 1e-14


def test_mc_converges_to_exact() -> None:
    """(c) MC is unbiased with variance ∝ 1/S: 16× the samples should cut the RMS error 4×.

    The RMS relative error over 10 generator seeds is used so one lucky or unlucky draw cannot
    decide; for 20 disjoint sets of 10 seeds the ratio ranged 0.19-0.33, so (1/8, 0.4) brackets
    1/4 with margin while rejecting both no convergence and a silently exact "MC" (ratio 0).
    """
    pr = PROBLEMS["mlp-relu"]()
    data = [(pr.x, pr.y, None)]
    exact = flat(fisher_diag_exact(pr.model, data))
    rms = []
    for S in (4, 64, 1024):
        sq = [
            float((flat(fisher_diag_mc(pr.model, data, generator=torch.Generator().manual_seed(seed),
                                       mc_samples=S)) - exact).norm() / exact.norm()) ** 2
            for seed in range(10)
        ]
        rms.append((sum(sq) / len(sq)) ** 0.5)
    assert 1 / 8 < rms[1] / rms[0] < 0.4 and 1 / 8 < rms[2] / rms[1] < 0.4, rms
    assert rms[2] < 0.05, rms


def _kl(pr: Problem, logits_a: Tensor, logits_b: Tensor) -> Tensor:
    """Mean over samples of KL(p_a ‖ p_b) over the active classes."""
    la = masked_logits(logits_a, pr.mask).log_softmax(-1)
    lb = masked_logits(logits_b, pr.mask).log_softmax(-1)
    pa = la.exp()
    terms = torch.where(pa > 0, pa * (la - lb), torch.zeros_like(pa))  # 0·log 0 = 0 on masked classes
    return terms.sum(-1).mean()


@pytest.mark.parametrize("name", ["mlp-tanh-nobias", "mlp-fixed-mask", "cnn"])
def test_exact_fisher_is_kl_curvature(name: str) -> None:
    """(d) KL(p_θ ‖ p_{θ+εe_i}) = ½ ε² F_ii + O(ε³) for the exact Fisher.

    ε = 1e-4: the O(ε³) term makes a relative error of order ε·|∂³KL|/F_ii ~ 1e-4, while float64
    rounding in a KL of ~1e-9 built from log-ratios of ~1e-4 stays near 1e-11 relative; 1e-3
    separates both from any real mismatch (the empirical Fisher is off by tens of percent here).
    """
    pr = PROBLEMS[name]()
    F = fisher_diag_exact(pr.model, [(pr.x, pr.y, pr.mask)])
    model = pr.model.eval()
    eps = 1e-4
    with torch.no_grad():
        base = model(pr.x)
        for name_p, p in trainable(model).items():
            flat_F = F[name_p].reshape(-1)
            for i in flat_F.topk(min(2, flat_F.numel())).indices.tolist():
                old = p.view(-1)[i].item()
                p.view(-1)[i] = old + eps
                kl = _kl(pr, base, model(pr.x))
                p.view(-1)[i] = old
                assert float(kl) == pytest.approx(0.5 * eps**2 * float(flat_F[i]), rel=1e-3)


def test_squared_batch_gradient_is_about_n_times_smaller() -> None:
    """(e) Squaring a mini-batch gradient is not the Fisher.

    With labels drawn from the model, per-sample scores have mean zero (E_y ∂log p(y|x) = 0) and are
    independent, so E‖mean gradient‖² = tr(F)/N exactly. With N = 256 the ratio tr(F) / ‖ḡ‖² should
    be ~256; the bounds [N/4, 4N] allow the noise of one draw yet exclude ratios near 1.
    """
    torch.manual_seed(20)
    model = mlp([6, 16, 5], nn.Tanh).double()
    gen = torch.Generator().manual_seed(20)
    N = 256
    x = torch.randn(N, 6, generator=gen, dtype=torch.float64)
    F = fisher_diag_exact(model, [(x, None)])
    logp = model(x).log_softmax(-1)  # (N, C)
    y = torch.multinomial(logp.detach().exp(), 1, generator=gen).squeeze(1)
    g = torch.autograd.grad(logp.gather(1, y[:, None]).mean(), list(model.parameters()))
    ratio = float(flat(F).sum() / sum(t.square().sum() for t in g))
    assert N / 4 < ratio < 4 * N, ratio


@pytest.mark.parametrize("kind", FISHER_KINDS)
def test_masked_output_units_get_zero_fisher(kind: str) -> None:
    """(f) A class masked for the whole batch has zero gradient: its output row and bias get F = 0."""
    pr = PROBLEMS["mlp-fixed-mask"]()
    F = fisher_diag(pr.model, [(pr.x, pr.y, pr.mask)], kind, mc_samples=4)
    off = ~pr.mask
    assert (F["2.weight"][off] == 0).all() and (F["2.bias"][off] == 0).all()
    assert (F["2.bias"][pr.mask] > 0).any()


@pytest.mark.parametrize("kind", FISHER_KINDS)
@pytest.mark.parametrize("name", ["mlp-relu", "layernorm"])
def test_one_active_class_gives_zero_fisher(name: str, kind: str) -> None:
    """With one active class p = 1 and log p ≡ 0: every kind is exactly 0 (exact has 0 directions)."""
    pr = PROBLEMS[name]()
    with torch.no_grad():
        C = pr.model(pr.x).shape[-1]
    mask = torch.zeros(C, dtype=torch.bool)
    mask[2] = True
    F = fisher_diag(pr.model, [(pr.x, torch.full_like(pr.y, 2), mask)], kind)
    assert all((t == 0).all() for t in F.values())


def test_mc_reproducible_with_same_seed() -> None:
    """(g) Labels come only from the explicit generator: same seed, same Fisher; new seed, new draws."""
    pr = PROBLEMS["mlp-relu-deep"]()
    data = [(pr.x, pr.y, None)]

    def run(seed: int) -> dict[str, Tensor]:
        return fisher_diag_mc(pr.model, data, generator=torch.Generator().manual_seed(seed), mc_samples=2)

    torch.manual_seed(123)
    a = run(5)
    torch.manual_seed(456)  # the global RNG must not matter
    assert rel_err(run(5), a) == 0
    assert rel_err(run(6), a) > 0
    assert rel_err(fisher_diag_mc(pr.model, data, mc_samples=2), run(0)) == 0  # default: seed 0


# ---------------------------------------------------------------------------------------------
# Contract details.


def test_model_modes_restored_and_eval_used() -> None:
    pr = PROBLEMS["mlp-dropout"]()
    pr.model.train()
    pr.model[0].eval()  # a mixed state must come back exactly
    got = fisher_diag_exact(pr.model, [(pr.x, pr.y)])
    assert [m.training for m in pr.model] == [False, True, True, True]
    assert rel_err(got, reference_fisher(pr, "exact")) <= RTOL  # dropout was off


def test_unknown_kind_lists_valid_kinds() -> None:
    pr = PROBLEMS["linear"]()
    with pytest.raises(UsageError, match="empirical, predicted, exact, mc"):
        fisher_diag(pr.model, [(pr.x, pr.y)], "true")


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "at least one sample"),
        ([(torch.zeros(2, 4), None)], "needs the true labels"),
        ([(torch.zeros(2, 4), torch.tensor([0, 1]), torch.tensor([True, False, True]))], "masked"),
        ([(torch.zeros(2, 4), torch.tensor([0, 3]))], r"\[0, 3\)"),
        ([torch.zeros(2, 4)], r"\(x, y\)"),
    ],
)
def test_usage_errors(data: list, message: str) -> None:
    model = mlp([4, 3])
    with pytest.raises(UsageError, match=message):
        fisher_diag_empirical(model, data)


def test_mc_samples_must_be_positive() -> None:
    pr = PROBLEMS["linear"]()
    with pytest.raises(UsageError, match="mc_samples"):
        fisher_diag_mc(pr.model, [(pr.x, pr.y)], mc_samples=0)
