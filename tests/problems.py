"""The one table of tiny problems of the per-sample estimator tests (Fisher, MAS): seeded float64
models with inputs, labels and class masks, as data (``PROBLEMS``), and the brute-force reference the
engines are checked against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn


def mlp(sizes: list[int], act: type[nn.Module] = nn.ReLU, bias: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def small_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),  # in place after a hooked layer: the hook must hand on a copy
        nn.Conv2d(3, 4, 3, padding=2, dilation=2, bias=False),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 2 * 2, 5),
    )


def layernorm_mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(5, 6), nn.LayerNorm(6), nn.Tanh(), nn.Linear(6, 4))


def frozen_first_layer() -> nn.Sequential:
    net = mlp([5, 6, 4], nn.Tanh)
    net[0].weight.requires_grad_(False)  # its bias stays trainable
    return net


def trainable(model: nn.Module) -> dict[str, Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def flat(d: dict[str, Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in d.values()])



def rel_err(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    """Largest over tensors of max|a − b| / max|b| (0 where both vanish)."""
    assert a.keys() == b.keys()
    return max(float((a[n] - b[n]).abs().max() / b[n].abs().max().clamp_min(1e-300)) for n in b)


def reference_per_sample(model: nn.Module, x: Tensor, v: Tensor, elementwise) -> dict[str, Tensor]:
    """Σ_k Σ_n elementwise(∂(v_{k,n}ᵀ z_n)/∂θ), one sample and one direction at a time: the brute-force
    reference of the engines (``Tensor.square`` for sum_sq_grads, ``Tensor.abs`` for sum_abs_grads)."""
    model.eval()
    params = trainable(model)
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for n in range(x.shape[0]):
        z = model(x[n : n + 1])[0]  # (C,)
        for k in range(v.shape[0]):
            grads = torch.autograd.grad(z @ v[k, n], list(params.values()), retain_graph=True, allow_unused=True)
            for name, g in zip(params, grads):
                if g is not None:
                    total[name] += elementwise(g)
    return total


# ---- the one table of tiny problems ----------------------------------------------------------


@dataclass
class Problem:
    model: nn.Module
    x: Tensor  # (B, ...)
    y: Tensor  # (B,)
    mask: Tensor | None  # (C,) or (B, C) bool, or None
    hooks: bool  # whether the fast path applies


class TokenMLP(nn.Module):
    """nn.Linear on 3-D input (B, T, D): not the fast path, detected at run time."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.head = nn.Linear(3, 5), nn.Linear(5, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.tanh(self.embed(x)).mean(1))  # (B, T, 3) -> (B, 4)


class SharedLinear(nn.Module):
    """One nn.Linear called twice (weight sharing): per-sample grads need the fallback."""

    def __init__(self) -> None:
        super().__init__()
        self.inner, self.head = nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.tanh(self.inner(torch.tanh(self.inner(x)))))


def _labels(gen: torch.Generator, mask: Tensor | None, B: int, C: int) -> Tensor:
    """Random labels among each sample's active classes."""
    allowed = torch.ones(B, C, dtype=torch.bool) if mask is None else mask.expand(B, C)
    return torch.multinomial(allowed.double(), 1, generator=gen).squeeze(1)


def make(build: Callable[[], nn.Module], x_shape: tuple[int, ...], C: int, seed: int, mask: str | None = None,
         hooks: bool = True) -> Callable[[], Problem]:
    def problem() -> Problem:
        torch.manual_seed(seed)  # parameter init uses the global RNG; seeded per problem
        model = build().double()
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(x_shape, generator=gen, dtype=torch.float64)
        B = x_shape[0]
        m = None
        if mask == "fixed":
            m = torch.ones(C, dtype=torch.bool)
            m[[1, C - 1]] = False
        elif mask == "per-sample":
            m = torch.rand(B, C, generator=gen) < 0.6
            m[:, 0] |= ~m.any(1)  # at least one active class
        return Problem(model, x, _labels(gen, m, B, C), m, hooks)

    return problem


def grouped_cnn(pool: bool = False) -> nn.Sequential:
    """A grouped, strided convolution on 6×6 inputs; with ``pool``, an average pool before the head."""
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=2),
        nn.Tanh(),
        *([nn.AvgPool2d(3)] if pool else []),
        nn.Flatten(),
        nn.Linear(4 if pool else 4 * 3 * 3, 4),
    )


def dropout_mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Dropout(0.5), nn.Linear(7, 4))


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "linear": make(lambda: mlp([4, 3]), (7, 4), 3, seed=0),
    "mlp-relu": make(lambda: mlp([5, 7, 4]), (6, 5), 4, seed=1),
    "mlp-tanh-nobias": make(lambda: mlp([6, 8, 8, 5], nn.Tanh, bias=False), (6, 6), 5, seed=2),
    "mlp-relu-deep": make(lambda: mlp([3, 9, 4, 6, 4]), (8, 3), 4, seed=3),
    "mlp-fixed-mask": make(lambda: mlp([5, 7, 6], nn.Tanh), (6, 5), 6, seed=4, mask="fixed"),
    "mlp-sample-mask": make(lambda: mlp([5, 7, 6]), (7, 5), 6, seed=5, mask="per-sample"),
    "mlp-dropout": make(dropout_mlp, (6, 5), 4, seed=6),
    "frozen-weight": make(frozen_first_layer, (6, 5), 4, seed=7),
    "cnn": make(small_cnn, (5, 2, 8, 8), 5, seed=8),
    "cnn-groups-mask": make(grouped_cnn, (4, 2, 6, 6), 4, seed=9, mask="fixed"),
    "cnn-groups-pool": make(lambda: grouped_cnn(pool=True), (4, 2, 6, 6), 4, seed=13),
    "layernorm": make(layernorm_mlp, (6, 5), 4, seed=10, hooks=False),
    "linear-3d": make(TokenMLP, (5, 3, 3), 4, seed=11, hooks=False),
    "shared-linear": make(SharedLinear, (5, 4), 3, seed=12, hooks=False),
}
