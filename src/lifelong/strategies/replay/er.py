"""Experience replay (ER) and ER with asymmetric cross-entropy (ER-ACE).

**ER** (Chaudhry et al. 2019, "On tiny episodic memories in continual learning", Alg. 1; the
"naive rehearsal" of Hsu et al. 2018): every step trains on the current batch B together with a batch
B_M of ``--replay-batch`` samples drawn from the memory M (the batch size unless set),

    L = CE(B ∪ B_M)                                  (--replay-weighting mean, the default)
    L = (1/t) CE(B) + (1 − 1/t) CE(B_M)              (--replay-weighting tasks: van de Ven et al. 2020/2022,
                                                      t = tasks seen including the current one)

or, with ``--replay-mixing concat`` (Hsu et al. 2018's code, ``agents/exp_replay.py``), the memory,
repeated ⌊N / budget⌋ times so that old and new data are about 1:1, joins the current task's N training
samples and is shuffled with them; an epoch then covers both.

**ER-ACE** (Caccia et al. 2022, "New insights on reducing abrupt representation change in online
continual learning", eq. 5): the current batch's cross-entropy runs over the classes present in that
batch only (from the second task on), the memory batch's over every live unit, and the two are added:

    L = CE_{classes in B}(B) + CE(B_M)

so that new classes do not push the old ones' logits down.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...errors import UsageError
from ..settings import setting
from .base import ConcatMixing, MemorySettings, Replay, check_concat


@dataclass(frozen=True)
class ERSettings(MemorySettings):
    replay_batch: int = setting(0, flag="--replay-batch", check=lambda v: v >= 0, must="be >= 0", maximum=10**7,
                                help="memory samples added to each batch (0: as many as the batch has)")
    mixing: str = setting("batch", flag="--replay-mixing", choices=("batch", "concat"),
                          help="batch: a memory batch joins every step; concat: the memory (repeated so old:new is "
                               "about 1:1) joins the task's training set (Hsu et al. 2018)")
    weighting: str = setting("mean", flag="--replay-weighting", choices=("mean", "tasks"),
                             help="mean: one cross-entropy over current and memory samples; tasks: 1/t for the "
                                  "current batch, 1 - 1/t for the memory's (van de Ven et al.)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_concat(self)
        if self.mixing == "concat" and (self.weighting != "mean" or self.replay_batch):
            raise UsageError("--replay-weighting and --replay-batch apply to --replay-mixing batch only")


class ER(ConcatMixing, Replay):
    """Experience replay: the current batch plus a memory batch, one cross-entropy (see module)."""

    name = "er"
    Settings = ERSettings

    def prepare_batch(self, ctx, batch):
        if self.settings.mixing == "concat":
            self._n = len(batch.y)
            return batch
        return self.with_memory(ctx, batch, self.settings.replay_batch or len(batch.y))

    def task_loss(self, ctx, batch, logits):
        n = self._n
        if self.settings.weighting == "mean" or len(batch.y) == n:
            return super().task_loss(ctx, batch, logits)
        losses = F.cross_entropy(ctx.heads.logits(logits, batch.task, ctx.task_index), batch.y, reduction="none")
        w = 1.0 / (ctx.task_index + 1)
        return w * losses[:n].mean() + (1.0 - w) * losses[n:].mean()


@dataclass(frozen=True)
class ERACESettings(MemorySettings):
    replay_batch: int = setting(0, flag="--replay-batch", check=lambda v: v >= 0, must="be >= 0", maximum=10**7,
                                help="memory samples added to each batch (0: as many as the batch has)")


class ERACE(Replay):
    """ER with the asymmetric cross-entropy of Caccia et al. 2022 (see module)."""

    name = "er-ace"
    Settings = ERACESettings

    def prepare_batch(self, ctx, batch):
        return self.with_memory(ctx, batch, self.settings.replay_batch or len(batch.y))

    def task_loss(self, ctx, batch, logits):
        n = self._n
        z = ctx.heads.logits(logits, batch.task, ctx.task_index)
        cur = z[:n]
        if ctx.task_index > 0:  # only the classes present in the incoming batch
            present = torch.zeros(z.shape[1], dtype=torch.bool, device=z.device)
            present[batch.y[:n]] = True
            cur = cur.masked_fill(~present, float("-inf"))
        loss = F.cross_entropy(cur, batch.y[:n])
        if len(batch.y) > n:
            loss = loss + F.cross_entropy(z[n:], batch.y[n:])
        return loss
