"""Dark Experience Replay: DER and DER++ (Buzzega, Boschini, Porrello, Abati & Calderara 2020,
NeurIPS, "Dark experience for general continual learning: a strong, simple baseline", eqs. 6 and 7).

The memory (reservoir sampling) keeps, with each input, the logits z the model gave it when it was
stored. With B the current batch and B', B'' two independent batches from the memory,

    DER    L = CE(B) + α · mean_{(x, z) ∈ B'} ‖f(x) − z‖² / C
    DER++  L = CE(B) + α · mean_{(x, z) ∈ B'} ‖f(x) − z‖² / C + β · CE(B'')

(the squared error averaged over the C output units, as their code's ``F.mse_loss``). All samples go
through the model in one forward pass. (``derpp`` is DER++'s name here: ``+`` joins composites.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from ...scenarios import Batch
from ..settings import setting
from .base import MemorySettings, Replay, concat
from .buffer import Buffer


@dataclass(frozen=True)
class DERSettings(MemorySettings):
    alpha: float = setting(0.3, flag="--alpha", check=lambda v: v >= 0, must="be >= 0", maximum=1e30,
                           help="weight of the logit-matching term (DER's α)")
    replay_batch: int = setting(0, flag="--replay-batch", check=lambda v: v >= 0, must="be >= 0", maximum=10**7,
                                help="memory samples in each memory batch (0: as many as the batch has)")


@dataclass(frozen=True)
class DERppSettings(DERSettings):
    beta: float = setting(0.5, flag="--beta", check=lambda v: v >= 0, must="be >= 0", maximum=1e30,
                          help="weight of DER++'s cross-entropy on memory labels (β)")


class DER(Replay):
    """DER: match the stored logits of memory samples (see module)."""

    name = "der"
    Settings = DERSettings
    groups = 1  # memory batches per step

    def make_buffer(self) -> Buffer:
        s = self.settings
        return Buffer(s.memory, "reservoir", logits=True)

    def prepare_batch(self, ctx, batch):
        self._n, self._m = len(batch.y), 0
        if not len(self.buffer):
            return batch
        m = self.settings.replay_batch or len(batch.y)
        idx = [self.buffer.sample(m, ctx.generator, ctx.device) for _ in range(self.groups)]
        self._m = len(idx[0])
        self._stored = self.buffer.logits[idx[0]]
        return concat(batch, *(self.buffer.batch(i) for i in idx))

    def task_loss(self, ctx, batch, logits):
        n, m = self._n, self._m
        self._logits = logits[:n].detach()  # stored with the current samples after the step
        z = ctx.heads.logits(logits, batch.task, ctx.task_index)
        loss = F.cross_entropy(z[:n], batch.y[:n])
        if m and self.groups > 1:
            loss = loss + self.settings.beta * F.cross_entropy(z[n + m:], batch.y[n + m:])
        return loss

    def extra_loss(self, ctx, batch, logits):
        if not self._m:
            return None
        n, m = self._n, self._m
        return self.settings.alpha * F.mse_loss(logits[n:n + m], self._stored)

    def after_step(self, ctx, batch):
        self.buffer.add_reservoir(Batch(*(t[: self._n] for t in batch)), ctx.generator, self._logits)


class DERpp(DER):
    """DER++: DER plus a cross-entropy on a second memory batch's labels (see module)."""

    name = "derpp"
    Settings = DERppSettings
    groups = 2
