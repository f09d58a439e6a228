"""EWC: consolidation identities (zero at the anchor, separate = sum of per-task penalties, online = one
decayed Fisher), its state, and EWC protecting old tasks on real data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lifelong.experiments.config import RunConfig
from lifelong.importance import fisher_diag_exact
from lifelong.scenarios import batches, permuted
from lifelong.data import load_dataset
from lifelong.strategies import EWC, OnlineEWC
from lifelong.experiments.build import build_stream, seeded_model
from lifelong.strategies import build
from lifelong.train import run_stream
from tests.helpers import ROOT, TINY



@pytest.fixture(scope="module")
def stream():
    return permuted(load_dataset("mnist", TINY, download=False), 3, "domain", seed=0)


def small_model(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return m.to(dtype)


def task_data(task, n=200):
    return [(x[:n].double(), y[:n]) for x, y, _, _ in batches([task], "train", batch_size=10_000)]


def test_ewc_penalty_is_zero_with_zero_gradient_right_after_consolidation(stream):
    m = small_model()
    ewc = EWC(lam=50.0)
    ewc.consolidate(m, task_data(stream[0]))
    pen = ewc.penalty(m)
    grads = torch.autograd.grad(pen, list(m.parameters()))
    assert pen.item() == 0.0 and all(torch.count_nonzero(g) == 0 for g in grads)


def test_separate_ewc_equals_sum_of_per_task_penalties(stream):
    m = small_model()
    ewc = EWC(lam=3.0)
    fishers, anchors = [], []
    for k in range(3):
        with torch.no_grad():  # move to a new θ*_k as if task k had been trained
            for p in m.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(k), dtype=p.dtype))
        data = task_data(stream[k])
        fishers.append(fisher_diag_exact(m, data))
        anchors.append({n: p.detach().clone() for n, p in m.named_parameters()})
        ewc.consolidate(m, data)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(1.3)
    params = dict(m.named_parameters())
    expected = sum(
        1.5 * sum((f[n] * (params[n] - a[n]) ** 2).sum() for n in f) for f, a in zip(fishers, anchors)
    )
    got = ewc.penalty(m)
    torch.testing.assert_close(got.double(), expected, rtol=1e-10, atol=0)
    g_got = torch.autograd.grad(got, list(params.values()))
    g_exp = torch.autograd.grad(expected, list(params.values()))
    for a, b in zip(g_got, g_exp):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


def test_online_ewc_keeps_one_decayed_fisher(stream):
    m = small_model()
    onl = OnlineEWC(lam=1.0, gamma=0.5)
    f0 = onl.consolidate(m, task_data(stream[0]))
    f1 = onl.consolidate(m, task_data(stream[1]))
    for n in f0:
        torch.testing.assert_close(onl.state["importance"][n], 0.5 * f0[n] + f1[n], rtol=1e-12, atol=0)


def test_strategy_state_is_a_flat_dict_of_tensors_that_round_trips(stream):
    m = small_model()
    ewc = EWC(lam=2.0)
    ewc.consolidate(m, task_data(stream[0]))
    sd = ewc.state_dict()
    assert all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items())
    other = EWC(lam=2.0)
    other.load_state_dict({k: v.clone() for k, v in sd.items()}, m)
    with torch.no_grad():
        m[1].weight.add_(0.01)
    assert other.penalty(m).item() == ewc.penalty(m).item() > 0


def _full_mnist() -> str | None:
    for d in (os.environ.get("LIFELONG_DATA_DIR"), str(ROOT.parent / "shared" / "data")):
        if d and (Path(d) / "mnist" / "train-images-idx3-ubyte.gz").exists():
            return d
    return None


@pytest.mark.skipif(_full_mnist() is None, reason="full MNIST not available (set LIFELONG_DATA_DIR)")
def test_ewc_forgets_less_than_fine_tuning_and_joint_is_the_ceiling():
    """Three permuted-MNIST tasks, 300 Adam steps each: EWC keeps task 1 far better than fine-tuning."""
    base = RunConfig.make(benchmark="permuted-mnist", tasks=3, iterations=300, hidden=(100,), data_dir=_full_mnist(),
                     threads=None)
    stream = build_stream(base.resolve())
    R = {}
    for name in ("naive", "ewc", "joint"):
        cfg = base.replace(strategy=name, **({"lam": 1000.0} if name == "ewc" else {})).resolve()
        R[name] = np.array(run_stream(seeded_model(cfg, stream), stream, build(cfg.strategy), cfg.train, seed=cfg.seed).accuracy_matrix)
    first_task_end = {k: r[-1, 0] for k, r in R.items()}
    assert first_task_end["ewc"] > first_task_end["naive"] + 0.03
    assert R["ewc"][-1].mean() > R["naive"][-1].mean()
    assert R["joint"][-1].mean() > R["naive"][-1].mean()
