"""Data augmentation as tensor operations on the run's device, drawn from a seeded generator.

``crop-flip`` is the CIFAR augmentation of the replay papers (DER, GEM's successors, iCaRL): pad each
image by 4 pixels, cut a random 32×32 window, and flip it horizontally with probability ½. Here it runs
on whole float batches (the current samples and the replayed ones, as DER's code augments both), with
the padding filled with the value a black pixel has after normalization, so that it is what
torchvision's ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()`` on the raw image gives. The
offsets and flips come from a CPU generator (saved in checkpoints): the same on every device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

AUGMENTATIONS = ("none", "crop-flip")


def crop_flip(x: Tensor, generator: torch.Generator, pad: int = 4, fill: float = 0.0) -> Tensor:
    """(B, C, H, W) -> (B, C, H, W): a random window of the image padded by ``pad`` (``fill``) on every
    side, mirrored left-right for a random half of the batch. One gather, no loop over samples."""
    B, C, H, W = x.shape
    off = torch.randint(0, 2 * pad + 1, (B, 2), generator=generator).to(x.device)
    flip = (torch.rand(B, generator=generator) < 0.5).to(x.device)
    xp = F.pad(x, (pad,) * 4, value=fill)
    rows = off[:, :1] + torch.arange(H, device=x.device)  # (B, H) rows of the window
    cols = off[:, 1:] + torch.arange(W, device=x.device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # a mirrored window reads its columns backwards
    b = torch.arange(B, device=x.device)[:, None, None]
    return xp.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
