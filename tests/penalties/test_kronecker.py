"""The Kronecker-factored penalty: closed forms against the formed Kronecker products (torch.kron) in
float64, identities (zero at the anchor, one task = a diagonal EWC where the block is diagonal), the online
sum against its separate terms, the nearest Kronecker product against a brute-force SVD, and the strategy's
state through a round trip."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from lifelong import EWC, KFAC
from lifelong.errors import UsageError
from lifelong.penalties.kronecker import (
    folded, kron_grads, kron_penalty, kron_penalty_reference, kron_sum_error, merge_online, merge_separate, nearest_kron,
)
from tests.problems import mlp

pytestmark = pytest.mark.usefixtures("one_thread")


def spd(n: int, gen: torch.Generator, rank: int | None = None) -> Tensor:
    X = torch.randn(n, rank or n + 2, generator=gen, dtype=torch.float64)
    return X @ X.T / X.shape[1]


def random_state(net: nn.Module, T: int, online: bool, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    params = dict(net.named_parameters())
    state = {}
    for layer, m in net.named_modules():
        if isinstance(m, nn.Linear):
            o, w = m.weight.shape[0], m.weight.shape[1] + (m.bias is not None)
            W = folded(params, layer, w).detach()
            state[layer] = {"A": torch.stack([spd(w, gen) for _ in range(T)]), "G": torch.stack([spd(o, gen) for _ in range(T)]),
                            "anchor": W + 0.3 * torch.randn((1 if online else T, o, w), generator=gen, dtype=torch.float64)}
    return state


@pytest.mark.parametrize("online", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_value_and_closed_form_gradient_match_the_formed_kronecker_products(online: bool, bias: bool):
    torch.manual_seed(0)
    net = mlp([3, 4, 2], bias=bias).double()
    state = random_state(net, T=3, online=online)
    params = dict(net.named_parameters())
    lam = 2.5
    ref = kron_penalty_reference(params, state, lam)
    auto = torch.autograd.grad(ref, list(params.values()))
    value = kron_penalty(params, state, lam)
    assert torch.allclose(value, ref, rtol=1e-12)
    closed = kron_grads(params, state, lam)
    through = torch.autograd.grad(value, list(params.values()))
    for (name, _), a, t in zip(params.items(), auto, through):
        assert torch.allclose(closed[name], a, rtol=1e-10, atol=1e-13), name
        assert torch.allclose(t, a, rtol=1e-10, atol=1e-13), name


def test_zero_at_the_anchor_and_the_online_sum_is_its_separate_terms():
    torch.manual_seed(1)
    net = mlp([3, 4, 2]).double()
    params = dict(net.named_parameters())
    tasks = [random_state(net, 1, online=True, seed=s) for s in range(3)]
    online, separate = {}, {}
    for t in tasks:
        factors = {l: {"A": s["A"][0], "G": s["G"][0]} for l, s in t.items()}
        anchors = {l: s["anchor"][0] for l, s in t.items()}
        online, _ = merge_online(online, factors, anchors)
        separate = merge_separate(separate, factors, anchors)
    newest = {l: s["anchor"][0] for l, s in tasks[-1].items()}
    # the online penalty is every task's term, all centred on the newest anchor
    terms = sum(kron_penalty_reference(params, {l: {**s, "anchor": newest[l][None]} for l, s in t.items()}, 1.0) for t in tasks)
    assert torch.allclose(kron_penalty(params, online, 1.0), terms, rtol=1e-12)
    # separate terms keep their own anchors
    own = sum(kron_penalty_reference(params, t, 1.0) for t in tasks)
    assert torch.allclose(kron_penalty(params, separate, 1.0), own, rtol=1e-12)
    # zero (value and gradient) at the online anchor
    with torch.no_grad():
        for l, W in newest.items():
            net.get_submodule(l).weight.copy_(W[:, :-1])
            net.get_submodule(l).bias.copy_(W[:, -1])
    assert float(kron_penalty(params, online, 1.0)) == 0.0
    assert all(float(g.abs().max()) == 0.0 for g in kron_grads(params, online, 1.0).values())


def test_nearest_kronecker_product_is_the_rank_one_svd_of_the_rearrangement():
    gen = torch.Generator().manual_seed(3)
    A = torch.stack([spd(3, gen) for _ in range(3)])
    G = torch.stack([spd(2, gen) for _ in range(3)])
    X, Y, err = nearest_kron(A, G)
    S = sum(torch.kron(A[t], G[t]) for t in range(3))
    # brute force: rearrange S (blocks (i,j) of size 2×2 -> rows vec(block)) and take its top singular triple
    R = torch.stack([S[2 * i: 2 * i + 2, 2 * j: 2 * j + 2].T.reshape(-1) for j in range(3) for i in range(3)])
    U, sig, Vh = torch.linalg.svd(R)
    best = sig[0] * torch.outer(U[:, 0], Vh[0])
    assert torch.allclose(torch.stack([torch.kron(X, Y)[2 * i: 2 * i + 2, 2 * j: 2 * j + 2].T.reshape(-1)
                                       for j in range(3) for i in range(3)]), best, atol=1e-12)
    assert err == pytest.approx(float(torch.linalg.norm(S - torch.kron(X, Y)) / torch.linalg.norm(S)), rel=1e-9)
    assert kron_sum_error(A, G, X, Y) == pytest.approx(err, rel=1e-9)
    other = spd(3, gen), spd(2, gen)  # any product: the error from inner products is the formed one's
    assert kron_sum_error(A, G, *other) == pytest.approx(
        float(torch.linalg.norm(S - torch.kron(*other)) / torch.linalg.norm(S)), rel=1e-9)
    assert torch.linalg.eigvalsh(X).min() > -1e-12 and torch.linalg.eigvalsh(Y).min() > -1e-12  # PSD kept
    # a sum that is a Kronecker product is kept exactly
    X, Y, err = nearest_kron(torch.stack([A[0], 2 * A[0]]), torch.stack([G[0], 3 * G[0]]))
    assert err < 1e-7 and torch.allclose(torch.kron(X, Y), 7 * torch.kron(A[0], G[0]), atol=1e-12)


def test_kfac_with_one_sample_matches_ewc_along_each_weight():
    """The diagonal of ā āᵀ ⊗ g gᵀ is the diagonal Fisher of one sample, so moving one weight costs
    KFAC what it costs EWC."""
    torch.manual_seed(4)
    net = mlp([3, 4, 2], nn.Tanh).double()
    x = torch.randn(1, 3, dtype=torch.float64)
    kfac, ewc = KFAC(lam=3.0), EWC(lam=3.0)
    kfac.consolidate(net, [(x, None)])
    ewc.consolidate(net, [(x, None)])
    for p in net.parameters():
        for idx in [(0,) * p.dim(), tuple(s - 1 for s in p.shape)]:
            with torch.no_grad():
                p[idx] += 0.7
            assert float(kfac.penalty(net)) == pytest.approx(float(ewc.penalty(net)), rel=1e-10)
            with torch.no_grad():
                p[idx] -= 0.7


@pytest.mark.parametrize("settings", [dict(), dict(anchors="separate"), dict(kron_sum="nearest", gamma=0.9),
                                      dict(tau=0.5), dict(fisher="mc", mc_samples=2)])
def test_state_round_trip_keeps_the_penalty(settings: dict):
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 3)).double()
    kfac = KFAC(lam=2.0, **settings)
    for t in range(3):
        kfac.consolidate(net, [(torch.randn(6, 4, dtype=torch.float64), torch.randint(0, 3, (6,)))])
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.1 * torch.randn_like(p))
    assert sorted(kfac.report_laplace()["kronecker_layers"]) == ["0", "3"]
    other = KFAC(lam=2.0, **settings)
    other.load_state_dict(kfac.state_dict(), net)
    assert torch.equal(other.penalty(net), kfac.penalty(net))
    with pytest.raises(ValueError, match="kron.0.A"):
        broken = dict(kfac.state_dict())
        broken["kron.0.A"] = broken["kron.0.A"][:, :2]
        KFAC(lam=2.0, **settings).load_state_dict(broken, net)


def test_settings_that_do_not_apply_are_refused():
    with pytest.raises(UsageError, match="kron_sum"):
        KFAC(anchors="separate", kron_sum="nearest")
    with pytest.raises(UsageError, match="gamma"):
        KFAC(anchors="separate", gamma=0.5)


def test_the_docs_own_loop_example_runs_and_keeps_two_terms_per_layer(capsys):
    from tests.helpers import readme_block

    exec(compile(readme_block("kfac-loop"), "kfac-loop", "exec"), {})
    assert capsys.readouterr().out.strip() == "{'0': 2, '2': 2}"
