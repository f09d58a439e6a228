"""Tiny models shared by the per-sample estimator tests (Fisher, MAS): problems as data."""

from __future__ import annotations

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
