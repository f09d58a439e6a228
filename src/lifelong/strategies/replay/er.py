"""Experience replay (ER) and ER with asymmetric cross-entropy (ER-ACE).

**ER** (Chaudhry et al. 2019, "On tiny episodic memories in continual learning", Alg. 1; the
"naive rehearsal" of Hsu et al. 2018): every step trains on the current batch B together with a batch
B_M of ``replay_batch`` samples drawn from the memory M (the batch size unless set),

    L = CE(B ∪ B_M)                                  (weighting='mean', the default: one term, task)
    L = (1/t) CE(B) + (1 − 1/t) CE(B_M)              (weighting='tasks': the terms task and replay; van de Ven et al.,
                                                      t = tasks seen including the current one)

or, with ``mixing='concat'`` (Hsu et al. 2018's code, ``agents/exp_replay.py``), the memory,
repeated ⌊N / budget⌋ times so that old and new data are about 1:1, joins the current task's N training
samples and is shuffled with them; an epoch then covers both.

**ER-ACE** (Caccia et al. 2022, "New insights on reducing abrupt representation change in online
continual learning", eq. 5): the current batch's cross-entropy runs over the classes present in that
batch only (from the second task on), the memory batch's over every live unit, and the two are added:

    L = CE_{classes in B}(B) + CE(B_M)                  (the terms task and replay)

so that new classes do not push the old ones' logits down. On a task-free stream (no second task to wait
for) the asymmetric term applies from the first step whose batch holds memory samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...settings import setting
from .base import ConcatMixing, MemorySettings, Replay, check_concat


def replay_batch_setting():
    return setting(0, flag="replay-batch", check=lambda v: v >= 0, must="be >= 0", maximum=10**7,
                   help="memory samples added to each batch (0: as many as the batch has)")


@dataclass(frozen=True)
class ERSettings(MemorySettings):
    replay_batch: int = replay_batch_setting()
    mixing: str = setting("batch", flag="replay-mixing", choices=("batch", "concat"),
                          help="batch: a memory batch joins every step; concat: the memory (repeated so old:new is "
                               "about 1:1) joins the task's training set (Hsu et al. 2018)")
    weighting: str = setting("mean", flag="replay-weighting", choices=("mean", "tasks"),
                             help="mean: one cross-entropy over current and memory samples; tasks: 1/t for the "
                                  "current batch, 1 - 1/t for the memory's (van de Ven et al.)")

    def check(self) -> None:
        super().check()
        check_concat(self)
        if self.mixing == "concat" and self.weighting != "mean":
            self.fail("weighting", "applies to mixing='batch' only", "mixing")
        if self.mixing == "concat" and self.replay_batch:
            self.fail("replay_batch", "applies to mixing='batch' only", "mixing")


class ER(ConcatMixing, Replay):
    """Experience replay: the current batch plus a memory batch, one cross-entropy (see module)."""

    name = "er"
    Settings = ERSettings

    @property
    def loss_terms(self):  # type: ignore[override]
        return ("task", "replay") if self.settings.weighting == "tasks" else ()

    @property
    def term_note(self) -> dict:
        return {"task": "er's weighting='tasks' weighs the task term 1/t: use weighting='mean'"}

    def prepare_batch(self, ctx, step):
        if self.settings.mixing == "concat":
            return step.batch
        return self.with_memory(ctx, step.batch, self.settings.replay_batch or len(step.batch.y))

    def losses(self, ctx, step):
        cur, mem = step.rows(0), step.rows(1)
        if self.settings.weighting == "mean" or mem.stop == mem.start:
            return {}  # the task term: one cross-entropy over current and memory rows
        b = step.inputs
        losses = F.cross_entropy(ctx.heads.logits(step.logits, b.task, ctx.task_index), b.y, reduction="none")
        w = 1.0 / (ctx.task_index + 1)
        return {"task": w * losses[cur].mean(), "replay": (1.0 - w) * losses[mem].mean()}


@dataclass(frozen=True)
class ERACESettings(MemorySettings):
    replay_batch: int = replay_batch_setting()


class ERACE(Replay):
    """ER with the asymmetric cross-entropy of Caccia et al. 2022 (see module)."""

    name = "er-ace"
    Settings = ERACESettings
    loss_terms = ("task", "replay")

    def prepare_batch(self, ctx, step):
        return self.with_memory(ctx, step.batch, self.settings.replay_batch or len(step.batch.y))

    def losses(self, ctx, step):
        cur, mem = step.rows(0), step.rows(1)
        b = step.inputs
        z = ctx.heads.logits(step.logits, b.task, ctx.task_index)
        zc, yc = z[cur], b.y[cur]
        if ctx.task_index > 0 or (ctx.stream.task_free and mem.stop > mem.start):  # only the classes present in B
            present = torch.zeros(z.shape[1], dtype=torch.bool, device=z.device)
            present[yc] = True
            zc = zc.masked_fill(~present, float("-inf"))
        terms = {"task": F.cross_entropy(zc, yc)}
        if mem.stop > mem.start:
            terms["replay"] = F.cross_entropy(z[mem], b.y[mem])
        return terms
