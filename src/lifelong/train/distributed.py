"""One run over several processes (data parallel): ``lifelong run --nproc N`` or ``torchrun
--nproc-per-node N -m lifelong run ...``; gloo on CPU, nccl on CUDA.

The data-parallel part of training is this module's :class:`Dist`, which the driver (the Learner) holds
in place of the single-process ``LOCAL`` (:mod:`lifelong.strategies.base`): the same methods, so the loop
has no branch for it. The Learner shards what the model sees (:meth:`Dist.shard`) and averages the
gradients before the strategy's gradient hooks (:meth:`Dist.average_gradients`); strategies reduce what
they compute over their share (importances: :meth:`Dist.reduce_sums`; DER's stored logits:
:meth:`Dist.gather_rows`).

How a step is shared (every rank holds the same model, optimizer and strategy state throughout):

1. Every rank draws the same global batch (the run's seeded order) and ``prepare_batch`` adds the same
   replay samples (the strategy generator is the same on every rank), so the global batch is known to all.
2. Rank r trains on its shard of it: samples r, r + N, r + 2N, ... (:meth:`Dist.shard`).
3. After ``loss.backward()`` the gradients are all-reduced as the sample-weighted mean
   Σ_r n_r g_r / Σ_r n_r (one flat all-reduce, what ``DistributedDataParallel`` does, weighted so that
   an uneven last batch gives the single-process gradient): the gradient of the global batch's mean loss.
4. The strategy's hooks then see the same gradient on every rank (SI's path integral, A-GEM's projection,
   PackNet's and HAT's masks), the penalty's gradient is the same, the optimizer moves θ the same way,
   and ``after_step`` receives the whole global batch: replay memories stay identical across ranks.
5. At a task's end, importances (Fisher, MAS) are computed on each rank's shard of the task's data and
   all-reduced as float64 sums and sample counts (:meth:`Dist.reduce_sums`): the single-process value up
   to summation order. The strategy generator is then broadcast from rank 0 (an MC Fisher draws labels for
   each rank's own samples) so that later replay sampling stays identical.

So N ranks train on the same global batch size as one process would: the same hyperparameters give the
same run up to floating-point summation order. Rank 0 alone writes the run folder, checkpoints and logs.
Evaluation runs on every rank (it is small; each gets the same numbers). Work done inside a strategy's
``after_task`` on the full data (PackNet's retraining, iCaRL's herding) is repeated on every rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.distributed as dist
from torch import Tensor

from ..scenarios import Batch


@dataclass
class Dist:
    """This process's place in a data-parallel run."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    # ---- data --------------------------------------------------------------------------------------
    def shard(self, batch: Batch) -> Batch:
        """This rank's samples of a global batch: positions rank, rank + N, ..."""
        return Batch(*(None if t is None else t[self.rank :: self.world] for t in batch))

    def shard_rows(self, t: Tensor, start: int) -> Tensor:
        """This rank's rows of ``t``, a block of the global batch's rows beginning at global row ``start``
        (DER's stored logits of its memory rows)."""
        return t[(self.rank - start) % self.world :: self.world]

    def gather_rows(self, t: Tensor, rows: int) -> Tensor:
        """The global batch's first ``rows`` rows of a quantity each rank computed for its own share
        (rank r holds rows r, r + N, ...), in global order, on every rank."""
        size = -(-rows // self.world)
        local = torch.cat([t, t.new_zeros((size - t.shape[0], *t.shape[1:]))]) if t.shape[0] < size else t
        parts = [torch.empty_like(local) for _ in range(self.world)]
        dist.all_gather(parts, local.contiguous())
        return torch.stack(parts, 1).reshape(size * self.world, *t.shape[1:])[:rows]

    def shard_batches(self, batches: Iterable) -> "ShardedBatches":
        return ShardedBatches(batches, self)

    # ---- reductions --------------------------------------------------------------------------------
    def average_gradients(self, params: list[Tensor], n_local: int) -> None:
        """p.grad ← Σ_r n_r p.grad_r / Σ_r n_r for every parameter, in one flat all-reduce. A parameter
        without a gradient on this rank contributes zeros (it has none on any rank in practice)."""
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        flat = torch.cat([flat * float(n_local), flat.new_tensor([float(n_local)])])
        dist.all_reduce(flat)
        total = flat[-1]
        flat = flat[:-1] / total
        offset = 0
        for p in params:
            n = p.numel()
            g = flat[offset : offset + n].view_as(p)
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)
            offset += n

    def reduce_sums(self, sums: dict[str, Tensor], count: int) -> tuple[dict[str, Tensor], int]:
        """All-reduce float64 sums (in name order) and a sample count: the whole data set's."""
        names = sorted(sums)
        flat = torch.cat([sums[n].reshape(-1) for n in names] + [sums[names[0]].new_tensor([float(count)])])
        dist.all_reduce(flat)
        out, offset = {}, 0
        for n in names:
            k = sums[n].numel()
            out[n] = flat[offset : offset + k].view_as(sums[n])
            offset += k
        return out, int(round(float(flat[-1])))

    def mean(self, values: Tensor) -> Tensor:  # noqa: D401
        """The mean over ranks of ``values`` (the loss of each rank's shard, for logs and the NaN check)."""
        v = values.detach().clone().to(torch.float64)
        dist.all_reduce(v)
        return (v / self.world).to(values.dtype)

    def sync_generator(self, generator: torch.Generator) -> None:
        """Every rank takes rank 0's state of a CPU generator."""
        state = generator.get_state()
        if self.device.type == "cuda":
            t = state.to(self.device)
            dist.broadcast(t, 0)
            generator.set_state(t.cpu())
        else:
            dist.broadcast(state, 0)
            generator.set_state(state)

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        """The run's end on every rank: wait for all (rank 0 has written the run folder), then tear the
        process group down. Without it a rank that exits while another still holds the connection can
        die in gloo's destructor (SIGABRT), and a finished run would report a failed rank."""
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


class ShardedBatches:
    """A task's ``(x, y, mask)`` batches, each cut to this rank's shard; ``reduce_sums`` tells the
    importance estimators (:func:`lifelong.importance.persample.batch_mean`) to all-reduce."""

    def __init__(self, batches: Iterable, d: Dist):
        self.batches, self.dist = batches, d

    def __iter__(self) -> Iterator:
        r, n = self.dist.rank, self.dist.world
        for x, y, mask in self.batches:
            m = mask[r::n] if mask is not None and mask.dim() == 2 else mask
            yield x[r::n], y[r::n], m

    def reduce_sums(self, sums, count):
        return self.dist.reduce_sums(sums, count)


def follower() -> bool:
    """True in a data-parallel run's ranks > 0 (RANK set and not 0, WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0


_announced = False  # whether rank 0 has told the other ranks what to do (once per process)


def announce(d: Dist, payload):
    """Rank 0 sends ``payload`` (a JSON-able object) to every rank; the others receive and return it.
    A payload ``{"stop": ...}`` tells them that rank 0 ended before training (an error, a finished run)."""
    global _announced
    box = [payload if d.main else None]
    dist.broadcast_object_list(box, src=0)
    _announced = True
    if not d.main and isinstance(box[0], dict) and "stop" in box[0]:
        raise RankStopped(box[0]["stop"])
    return box[0]


class RankStopped(Exception):
    """Raised in ranks > 0 when rank 0 ended before training: they stop too."""


def release_followers(reason: str | None) -> None:
    """A rank ended before the run was announced (``reason``: its error, or None when it is done). Rank 0
    tells the other ranks, which wait for that announcement, to stop instead of waiting forever; a rank > 0
    that failed first (a bad flag is refused in every rank) takes its part in the announcement, so that rank
    0 never waits for a rank that will not come."""
    if _announced or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    d = from_env("cpu")
    if d is not None:
        try:
            announce(d, {"stop": reason})
        except RankStopped:
            pass  # a rank > 0: rank 0 failed too, and says why


def rank_device(rank: int, device: torch.device) -> torch.device:
    """The device of this rank: the CUDA GPU of its local rank, or the CPU."""
    if device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % max(1, torch.cuda.device_count()))
    return device


def from_env(device: torch.device | str = "cpu") -> Dist | None:
    """The process group torchrun (or ``lifelong run --nproc``) set up through RANK / WORLD_SIZE /
    MASTER_ADDR / MASTER_PORT, initialized here if needed (gloo on CPU, nccl on CUDA); None when
    WORLD_SIZE is 1 or unset."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    device = torch.device(device)
    if not dist.is_initialized():
        # gloo for CPU tensors; nccl when the run is on CUDA (a follower learns the device from rank 0, so
        # CUDA runs pass LIFELONG_DIST_BACKEND=nccl, which the --nproc launcher sets)
        backend = os.environ.get("LIFELONG_DIST_BACKEND") or ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(backend)
    rank = dist.get_rank()
    return Dist(rank, dist.get_world_size(), rank_device(rank, device))
