"""Dark Experience Replay: DER and DER++ (Buzzega, Boschini, Porrello, Abati & Calderara 2020,
NeurIPS, "Dark experience for general continual learning: a strong, simple baseline", eqs. 6 and 7).

The memory (reservoir sampling) keeps, with each input, the logits z the model gave it when it was
stored. With B the current batch and B', B'' two independent batches from the memory,

    DER    L = CE(B) + α · mean_{(x, z) ∈ B'} ‖f(x) − z‖² / C                    (terms task, logits)
    DER++  L = CE(B) + β · CE(B'') + α · mean_{(x, z) ∈ B'} ‖f(x) − z‖² / C      (task, replay, logits)

(the squared error averaged over the C output units, as their code's ``F.mse_loss``). All samples go
through the model in one forward pass: B is the step's batch's source 0, B' source 1, B'' source 2.
The logits stored with each current sample are those of the step's forward pass (``step.logits``); in a
data-parallel run each process computed its own share of them, gathered before they are stored. (``derpp`` is DER++'s name here: ``+`` joins composites.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from ...scenarios import join, memory_rows
from ...settings import strength_setting
from .base import MemorySettings, Replay
from .buffer import Buffer
from .er import replay_batch_setting


@dataclass(frozen=True)
class DERSettings(MemorySettings):
    alpha: float = strength_setting(0.3, help="weight of the logit-matching term (DER's α)")
    replay_batch: int = replay_batch_setting()

    def check(self) -> None:
        super().check()
        if self.policy != "reservoir":  # the logits are stored as the samples pass: a reservoir
            self.fail("policy", f"must be 'reservoir': der stores each sample's logits as it passes, got {self.policy!r}")


@dataclass(frozen=True)
class DERppSettings(DERSettings):
    beta: float = strength_setting(0.5, flag="beta", help="weight of DER++'s cross-entropy on memory labels (β)")


class DER(Replay):
    """DER: match the stored logits of memory samples (see module)."""

    name = "der"
    Settings = DERSettings
    groups = 1  # memory batches per step
    loss_terms = ("task", "logits")

    def make_buffer(self) -> Buffer:
        return Buffer(self.settings.memory, "reservoir", logits=True)

    def prepare_batch(self, ctx, step):
        batch = step.batch
        if not len(self.buffer):
            return batch
        m = self.settings.replay_batch or len(batch.y)
        idx = [self.buffer.sample(m, ctx.generator, ctx.device) for _ in range(self.groups)]
        step.aux["der.stored"] = self.buffer.logits[idx[0]]  # the logits memory group 1 is matched to
        return join(batch, *(memory_rows(self.buffer.batch(i), g + 1) for g, i in enumerate(idx)))

    def losses(self, ctx, step):
        cur, mem = step.rows(0), step.rows(1)
        b, logits = step.inputs, step.logits
        z = ctx.heads.logits(logits, b.task, ctx.task_index)
        terms = {"task": F.cross_entropy(z[cur], b.y[cur])}
        if "der.stored" in step.aux:
            if self.groups > 1:
                second = step.rows(2)
                terms["replay"] = self.settings.beta * F.cross_entropy(z[second], b.y[second])
            stored = ctx.dist.shard_rows(step.aux["der.stored"], step.batch.rows(1).start)  # this process's rows
            terms["logits"] = self.settings.alpha * F.mse_loss(logits[mem], stored)
        return terms

    def after_step(self, ctx, step):
        cur = step.batch.rows(0)
        logits = ctx.dist.gather_rows(step.logits[step.rows(0)].detach(), cur.stop - cur.start)
        self.buffer.add_reservoir(step.batch.select(cur), ctx.generator, logits)


class DERpp(DER):
    """DER++: DER plus a cross-entropy on a second memory batch's labels (see module)."""

    name = "derpp"
    Settings = DERppSettings
    groups = 2
    loss_terms = ("task", "replay", "logits")
