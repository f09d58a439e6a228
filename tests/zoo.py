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

