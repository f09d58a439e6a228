"""Kronecker factors (K-FAC, KFC) against brute-force loops in float64, over every tiny problem of
tests/problems.py and every Fisher kind; the Kronecker approximation's error measured against the
brute-force Fisher block; exactness for one sample.

References are plain loops: one sample and one direction at a time, the layer's input and output
gradient read by a forward hook on that single-sample call, convolution patches cut out by hand (no
``F.unfold``). In float64 engine and loop differ by rounding only, so 1e-10 is a safe bound.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.importance import FISHER_KINDS, fisher_diag, logit_directions
from lifelong.importance.kfac import kron_factors
from tests.problems import PROBLEMS, Problem, mlp, trainable

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-10


def patches(m: nn.Conv2d, a: Tensor) -> Tensor:
    """Input patches of one sample a (C, H, W) at every output location, (L, C·kh·kw), by loops."""
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = m.kernel_size, m.stride, m.dilation, m.padding
    a = F.pad(a, (pw, pw, ph, ph))
    H = (a.shape[1] - dh * (kh - 1) - 1) // sh + 1
    W = (a.shape[2] - dw * (kw - 1) - 1) // sw + 1
    rows = []
    for i in range(H):
        for j in range(W):
            win = a[:, i * sh: i * sh + dh * (kh - 1) + 1: dh, j * sw: j * sw + dw * (kw - 1) + 1: dw]
            rows.append(win.reshape(-1))
    return torch.stack(rows)


def reference(pr: Problem, layers: list[str], kind: str) -> dict[str, dict[str, Tensor]]:
    """Equations (4)-(5) of lifelong.importance.persample by a loop over samples and directions."""
    model = pr.model.eval()
    mods = dict(model.named_modules())
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        v = logit_directions(model(pr.x), kind, y=pr.y, mask=pr.mask, generator=gen)  # (K, B, C)
    out = {l: {"A": 0.0, "G": 0.0} for l in layers}
    B = pr.x.shape[0]
    for n in range(B):
        seen = {}
        def hook(m, i, o, l):
            seen[l] = (i[0].detach().clone(), o)
            return o.clone()  # what follows (an in-place ReLU) must not rewrite the output we differentiate by

        hooks = [mods[l].register_forward_hook(lambda m, i, o, l=l: hook(m, i, o, l)) for l in layers]
        z = model(pr.x[n: n + 1])[0]
        for h in hooks:
            h.remove()
        for l in layers:
            m, (a, s) = mods[l], seen[l]
            u = a[0].reshape(1, -1) if isinstance(m, nn.Linear) else patches(m, a[0].detach())  # (L, i)
            if m.bias is not None and m.bias.requires_grad:
                u = torch.cat([u, torch.ones(u.shape[0], 1, dtype=u.dtype)], 1)
            out[l]["A"] = out[l]["A"] + u.T.detach() @ u.detach()
            for k in range(v.shape[0]):
                g = torch.autograd.grad(z @ v[k, n], s, retain_graph=True)[0][0]  # (o,) or (o, H, W)
                g = g.reshape(g.shape[0], -1)  # (o, L)
                out[l]["G"] = out[l]["G"] + g @ g.T / g.shape[1]
    return {l: {f: t / B for f, t in d.items()} for l, d in out.items()}


EXPECTED_LAYERS = {  # which layers get factors; the rest of each model falls back to the diagonal
    "linear": ["0"], "mlp-relu": ["0", "2"], "mlp-tanh-nobias": ["0", "2", "4"], "mlp-relu-deep": ["0", "2", "4", "6"],
    "mlp-fixed-mask": ["0", "2"], "mlp-sample-mask": ["0", "2"], "mlp-dropout": ["0", "3"], "frozen-weight": ["2"],
    "cnn": ["0", "2", "6"], "cnn-groups-mask": ["0", "5"], "cnn-groups-pool": ["0", "6"], "layernorm": ["0", "3"],
    "linear-3d": ["head"], "shared-linear": ["head"],
}


@pytest.mark.parametrize("kind", FISHER_KINDS)
@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_factors_match_the_loop_and_the_rest_gets_the_diagonal(name: str, kind: str):
    pr = PROBLEMS[name]()
    factors, diag, n = kron_factors(pr.model, [(pr.x, pr.y, pr.mask)], kind, generator=torch.Generator().manual_seed(5))
    assert sorted(factors) == EXPECTED_LAYERS[name] and n == pr.x.shape[0]
    ref = reference(pr, EXPECTED_LAYERS[name], kind)
    for l, f in factors.items():
        for part in ("A", "G"):
            want = ref[l][part]
            assert f[part].dtype == torch.float64
            assert torch.allclose(f[part], want, rtol=TOL, atol=TOL * float(want.abs().max())), (l, part)
    covered = {f"{l}.{p}" for l in factors for p in ("weight", "bias")}
    rest = [k for k in trainable(pr.model) if k not in covered]
    assert sorted(diag) == sorted(rest)
    if rest:
        full = fisher_diag(pr.model, [(pr.x, pr.y, pr.mask)], kind, generator=torch.Generator().manual_seed(5))
        for k in rest:
            assert torch.allclose(diag[k], full[k], rtol=TOL, atol=1e-14)


def fisher_block(model: nn.Module, layer: str, x: Tensor, kind: str = "exact") -> Tensor:
    """The brute-force Fisher block over vec([W | b]) of a Linear layer: Σ_k (vec ∂(v_kᵀz)/∂W̃)(…)ᵀ per sample,
    averaged (vec stacks columns)."""
    m = dict(model.named_modules())[layer]
    total = 0.0
    for n in range(x.shape[0]):
        z = model(x[n: n + 1])
        v = logit_directions(z.detach(), kind)[:, 0]  # (K, C)
        for k in range(v.shape[0]):
            gw, gb = torch.autograd.grad(z[0] @ v[k], [m.weight, m.bias], retain_graph=True)
            d = torch.cat([gw, gb[:, None]], 1).T.reshape(-1)
            total = total + torch.outer(d, d)
    return total / x.shape[0]


def test_one_sample_block_is_exactly_the_kronecker_product():
    """For one sample the Fisher block of a Linear layer is ā āᵀ ⊗ Σ_k g_k g_kᵀ: no approximation."""
    torch.manual_seed(0)
    net = mlp([4, 5, 3], nn.Tanh).double()
    x = torch.randn(1, 4, dtype=torch.float64)
    factors, _, _ = kron_factors(net, [(x, None)], "exact")
    for layer in ("0", "2"):
        block = fisher_block(net, layer, x)
        kron = torch.kron(factors[layer]["A"], factors[layer]["G"])
        assert float((block - kron).abs().max()) < 1e-10 * float(block.abs().max())


def test_batch_block_error_is_measured_not_hidden():
    """Over a batch, A ⊗ G = E[ā āᵀ] ⊗ E[g gᵀ] differs from the block E[ā āᵀ ⊗ g gᵀ]: the error is real,
    and it is exactly the difference of those two expectations."""
    torch.manual_seed(1)
    net = mlp([4, 6, 3], nn.Tanh).double()
    x = torch.randn(32, 4, dtype=torch.float64)
    factors, _, _ = kron_factors(net, [(x, None)], "exact")
    per = [kron_factors(net, [(x[n: n + 1], None)], "exact")[0] for n in range(32)]
    for layer in ("0", "2"):
        block = fisher_block(net, layer, x)
        exact_mean = sum(torch.kron(p[layer]["A"], p[layer]["G"]) for p in per) / 32  # E[ā āᵀ ⊗ g gᵀ]
        assert torch.allclose(block, exact_mean, atol=1e-12)
        kron = torch.kron(factors[layer]["A"], factors[layer]["G"])
        err = float(torch.linalg.norm(block - kron) / torch.linalg.norm(block))
        assert 1e-3 < err < 0.9, err  # an approximation: neither exact nor unrelated


def test_factors_do_not_depend_on_batching():
    pr = PROBLEMS["cnn"]()
    whole, _, _ = kron_factors(pr.model, [(pr.x, pr.y)], "empirical")
    one_by_one, _, _ = kron_factors(pr.model, [(pr.x[i: i + 1], pr.y[i: i + 1]) for i in range(pr.x.shape[0])], "empirical")
    for l in whole:
        for part in ("A", "G"):
            assert torch.allclose(whole[l][part], one_by_one[l][part], rtol=1e-12, atol=1e-15)


def test_mc_factors_converge_to_the_exact_ones():
    pr = PROBLEMS["mlp-relu"]()
    exact, _, _ = kron_factors(pr.model, [(pr.x, pr.y)], "exact")
    mc, _, _ = kron_factors(pr.model, [(pr.x, pr.y)], "mc", mc_samples=20_000, generator=torch.Generator().manual_seed(0))
    for l in exact:
        G, Gmc = exact[l]["G"], mc[l]["G"]
        assert float(torch.linalg.norm(Gmc - G) / torch.linalg.norm(G)) < 0.03  # error ~ 1/√S ≈ 0.007 per entry
        assert torch.equal(mc[l]["A"], exact[l]["A"])  # A does not depend on the labels
