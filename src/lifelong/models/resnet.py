"""The reduced ResNet-18 of GEM, A-GEM and DER (Lopez-Paz & Ranzato 2017, their ``model/common.py``):
He et al.'s ResNet-18 (four stages of two basic blocks) with 20 filters in the first stage instead of
64, so 20-40-80-160 channels, a 3×3 stride-1 stem for 32×32 inputs, global average pooling and one
linear layer over 160 features (about 1.1 M parameters for 100 classes).

Batch normalization keeps running statistics: as in their code, the model is used in train mode while
learning and in eval mode for evaluation (our loop and evaluation do so).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a shortcut (a 1×1 conv-BN when the shape changes), then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ReducedResNet18(nn.Module):
    """Inputs (B, C, H, W) -> logits (B, n_outputs); ``nf`` filters in the first stage (20: reduced)."""

    def __init__(self, in_channels: int = 3, n_outputs: int = 10, nf: int = 20) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, nf, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(nf)
        stages, c = [], nf
        for k, stride in enumerate((1, 2, 2, 2)):
            width = nf * 2**k
            stages.append(nn.Sequential(BasicBlock(c, width, stride), BasicBlock(width, width, 1)))
            c = width
        self.stages = nn.Sequential(*stages)
        self.linear = nn.Linear(c, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.stages(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # (B, 8 nf): avg_pool2d(4) on 32x32 inputs
        return self.linear(out)
