"""Weight initializations (`--init`, ModelSpec.init, build_model(init=...)): each draws what its
reference code draws, from the run's model generator, and the default changes nothing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lifelong.errors import UsageError
from lifelong.models import INITS, ModelSpec, build_model, initialize

WIDE = (1, 64, 64)  # 4096 inputs: enough samples per layer for the statistics below


def layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def test_the_default_is_pytorchs_own_draw_and_changes_no_weight():
    a = ModelSpec().build((1, 28, 28), 10, seed=3)
    b = ModelSpec(init="torch").build((1, 28, 28), 10, seed=3)
    with torch.random.fork_rng(devices=[]):
        from lifelong.seeds import derived_generator

        torch.manual_seed(derived_generator(3, "model").initial_seed())
        c = build_model("mlp", (1, 28, 28), 10)  # no init argument at all
    for x, y, z in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(x, y) and torch.equal(x, z)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_xavier_uniform_bounds_and_variance(model):
    net = ModelSpec(model, hidden=(512, 256), init="xavier-zero-bias").build(WIDE, 10, seed=0)
    for m in layers(net):
        w = m.weight.detach().double()
        fan_in = w[0].numel()
        fan_out = w.shape[0] * (w[0, 0].numel() if w.dim() == 4 else 1)
        bound = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot & Bengio 2010, eq. 16
        assert float(w.abs().max()) <= bound
        if w.numel() > 2000:  # U(±b) has variance b²/3
            assert float(w.var()) == pytest.approx(bound ** 2 / 3, rel=0.1)
            assert float(w.abs().max()) > 0.97 * bound
        assert torch.equal(m.bias, torch.zeros_like(m.bias))


def test_xavier_keeps_pytorchs_biases():
    plain = ModelSpec(init="torch").build((1, 28, 28), 10, seed=1)
    xavier = ModelSpec(init="xavier").build((1, 28, 28), 10, seed=1)
    for a, b in zip(layers(plain), layers(xavier)):
        assert not torch.equal(a.weight, b.weight)
        assert torch.equal(a.bias, b.bias)  # the biases PyTorch drew, untouched


def test_truncated_normal_is_tensorflows_with_constant_biases():
    net = ModelSpec(hidden=(1000,), init="truncated-normal").build(WIDE, 10, seed=0)
    w = layers(net)[0].weight.detach().double()
    assert float(w.abs().max()) <= 0.2  # redrawn outside 2σ
    # a normal with σ = 0.1 truncated at ±2σ: variance σ²(1 − 2·2φ(2)/(2Φ(2) − 1))
    phi = math.exp(-2) / math.sqrt(2 * math.pi)
    Z = math.erf(2 / math.sqrt(2))
    assert float(w.std()) == pytest.approx(0.1 * math.sqrt(1 - 4 * phi / Z), rel=0.01)
    assert abs(float(w.mean())) < 1e-3
    for m in layers(net):
        assert torch.equal(m.bias, torch.full_like(m.bias, 0.1))


@pytest.mark.parametrize("init", INITS)
def test_each_initialization_is_drawn_from_the_seed_alone(init):
    torch.manual_seed(123)
    a = ModelSpec(init=init).build((1, 28, 28), 10, seed=5)
    torch.manual_seed(456)  # the global state does not matter, and is left as it was
    state = torch.get_rng_state()
    b = ModelSpec(init=init).build((1, 28, 28), 10, seed=5)
    assert torch.equal(state, torch.get_rng_state())
    c = ModelSpec(init=init).build((1, 28, 28), 10, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))


def test_batch_norm_is_left_alone_and_an_unknown_name_is_refused():
    net = ModelSpec("resnet18", init="truncated-normal").build((3, 32, 32), 10, seed=0)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in bns)
    with pytest.raises(UsageError, match="unknown initialization 'he'"):
        initialize(nn.Linear(2, 2), "he", torch.Generator())
