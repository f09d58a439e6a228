"""Episodic memory: a fixed budget of past samples, kept as tensors on the run's device.

A :class:`Buffer` holds up to ``capacity`` samples as plain tensors: inputs ``x`` (as the model takes
them, float), targets ``y``, the task of each sample ``task`` and, for DER, the model's ``logits`` when
the sample was stored. Its state is a flat dict of those tensors (saved without pickle); its bytes are
what a method that replays really has to keep.

Selection rules, each a small pure function here:

- :func:`reservoir_slots`: reservoir sampling over the stream (Vitter 1985, Algorithm R; Chaudhry et
  al. 2019, "On tiny episodic memories in continual learning", §4): the g-th sample offered (g counts
  from 0 over the whole stream) is kept with probability M / (g + 1), in a slot drawn uniformly,
  so that at every moment the memory is a uniform sample of everything seen. Vectorized over a batch,
  with exactly the result of offering the batch's samples one by one.
- :func:`balanced_selection`: at a task's end the budget is split equally between the keys seen so far
  (a key is a class, i.e. a (task, target) pair, or a task), each key keeping ⌊M / keys⌋ samples: the
  old keys keep their first ones (a random subset, since they were stored in random order) and the new
  keys draw theirs at random (Hsu et al. 2018's naive rehearsal by task; van de Ven et al. 2022 and
  iCaRL by class; with ``per_class`` a fixed number per class instead of a total).
- ``slots``: each task owns ⌊M / T⌋ slots (T the stream's tasks), filled at its end with a random
  choice of its samples and never given up: the memory is full only after the last task (the A-GEM
  and GEM reference codes' episodic memory, ``episodic_mem_size = M / T``).
- :func:`ring_positions`: a ring buffer per task: its ⌊M / T⌋ slots receive its samples as they pass,
  the oldest overwritten first, so they hold the task's newest samples (A-GEM's ``ring_buffer``,
  Mammoth's ``ring`` mode).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ...scenarios import AsIs, Batch, DataSplit, Task, gather

POLICIES = ("reservoir", "class", "task", "slots", "ring")
#: the policies whose memory changes during a task (every step), not only at its end
STREAMING = ("reservoir", "ring")
KEYS = ("x", "y", "task", "logits", "seen")


def reservoir_slots(seen: int, n: int, capacity: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Reservoir sampling of ``n`` new samples when ``seen`` have been offered before.

    Sample k (global index g = seen + k) goes to slot g while g < capacity; afterwards a slot
    j ~ U{0, ..., g} is drawn and the sample replaces slot j if j < capacity. Returns ``(src, slot)``
    (CPU int64): the batch positions kept and their slots; when two samples of the batch draw the
    same slot the later one wins, as if they had been offered one at a time.
    """
    g = torch.arange(seen, seen + n, dtype=torch.float64)
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    j = torch.floor(u * (g + 1)).long()  # U{0..g}: u < 1
    j = torch.where(g < capacity, g.long(), j)
    take = j < capacity
    src, slot = take.nonzero().squeeze(1), j[take]
    uniq, which = torch.unique(slot, return_inverse=True)  # (memory in the batch's size, not the budget's)
    last = torch.full((len(uniq),), -1, dtype=torch.long).scatter_reduce(0, which, src, "amax")
    keep = last[which] == src
    return src[keep], slot[keep]


def ring_positions(seen: int, n: int, size: int) -> tuple[Tensor, Tensor]:
    """A ring of ``size`` slots that has received ``seen`` samples gets ``n`` more: sample k goes to slot
    (seen + k) mod size. Returns ``(src, slot)`` (CPU int64) for the samples that stay: when the batch
    wraps the ring, only its last ``size`` samples (the newest) are written."""
    first = max(0, n - size)
    src = torch.arange(first, n)
    return src, (seen + src) % size


def rank_within(keys: Tensor) -> Tensor:
    """For each entry, how many earlier entries share its key (0 for the first of each key)."""
    if keys.numel() == 0:
        return keys.clone()
    order = torch.sort(keys, stable=True).indices
    sorted_keys = keys[order]
    start = torch.ones_like(sorted_keys, dtype=torch.bool)
    start[1:] = sorted_keys[1:] != sorted_keys[:-1]
    first = torch.cummax(torch.where(start, torch.arange(len(keys), device=keys.device), 0), 0).values
    rank = torch.empty_like(keys)
    rank[order] = torch.arange(len(keys), device=keys.device) - first
    return rank


def balanced_selection(old_keys: Tensor, new_keys: Tensor, quota: int, generator: torch.Generator,
                       new_order: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Which stored entries stay and which candidates join, ``quota`` per key.

    ``old_keys`` (M,) are the keys of the stored entries in their stored order (the first ``quota`` of
    each key stay); ``new_keys`` (N,) those of the candidates, drawn in a random order from
    ``generator`` (or in ``new_order``, a priority order such as herding's). Returns (CPU int64) the
    indices of the old entries kept and of the candidates taken, the latter grouped by key in
    priority order."""
    old_keys, new_keys = old_keys.cpu(), new_keys.cpu()
    keep = (rank_within(old_keys) < quota).nonzero().squeeze(1)
    order = torch.randperm(len(new_keys), generator=generator) if new_order is None else new_order.cpu()
    shuffled = new_keys[order]
    grouped = torch.sort(shuffled, stable=True).indices  # by key, random (or priority) order within a key
    candidates = order[grouped]
    take = candidates[rank_within(new_keys[candidates]) < quota]
    return keep, take


class Buffer:
    """A memory of at most ``capacity`` samples, filled by ``policy``: ``reservoir`` (every step, over
    the whole stream), ``class`` or ``task`` (at each task's end, the budget split equally between the
    classes or the tasks seen so far). ``per_class`` > 0 keeps that many samples of every class instead
    of a total (the capacity is then per_class × the stream's classes)."""

    def __init__(self, capacity: int, policy: str = "reservoir", *, per_class: int = 0, logits: bool = False):
        if policy not in POLICIES:
            raise ValueError(f"unknown memory policy {policy!r}: choose one of {', '.join(POLICIES)}")
        self.capacity, self.policy, self.per_class, self.keep_logits = capacity, policy, per_class, logits
        self.x: Tensor | None = None
        self.y = self.task = self.logits = None
        self.filled = 0  # rows of x that hold samples
        self.seen = 0  # samples offered so far: to the reservoir, or (ring) to the current task's ring

    # ---- reading -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.filled

    def sample(self, n: int, generator: torch.Generator, device: torch.device) -> Tensor:
        """``min(n, len)`` distinct random rows (device int64), drawn from ``generator`` on the CPU."""
        return torch.randperm(self.filled, generator=generator)[:n].to(device)

    def batch(self, idx: Tensor | slice) -> Batch:
        return Batch(self.x[idx], self.y[idx], self.task[idx])

    def nbytes(self) -> int:
        """Bytes of the samples held (inputs, targets, task ids, logits)."""
        return sum(t[: self.filled].nelement() * t.element_size()
                   for t in (self.x, self.y, self.task, self.logits) if t is not None)

    def as_task(self, index: int, repeats: int = 1) -> Task:
        """The memory as a :class:`Task` whose training split is the stored samples ``repeats`` times
        (Hsu et al.'s rehearsal concatenates it with the current task's data)."""
        f = self.filled
        x, y, t = (v[:f].repeat((repeats,) + (1,) * (v.dim() - 1)) for v in (self.x, self.y, self.task))
        split = DataSplit(x, y, t)
        return Task(index, "memory", split, split, None, (), AsIs())  # type: ignore[arg-type]

    # ---- writing -----------------------------------------------------------------------------------
    def _allocate(self, like: Batch, n_outputs: int | None, rows: int, logits_dtype: torch.dtype | None = None) -> None:
        """Room for ``rows`` samples: grown by doubling up to the budget, never allocated at the budget
        up front (a budget larger than the stream costs only what is stored)."""
        have = 0 if self.x is None else self.x.shape[0]
        if rows <= have:
            return
        M, device = min(self.capacity, max(rows, 2 * have, 64)), like.x.device
        grown = [like.x.new_zeros((M, *like.x.shape[1:])), torch.zeros(M, dtype=torch.long, device=device),
                 torch.zeros(M, dtype=torch.long, device=device)]
        if self.keep_logits:
            # the logits' own dtype: inputs may be token ids (int64) while logits are floats
            dtype = self.logits.dtype if self.logits is not None else logits_dtype or torch.float32
            grown.append(torch.zeros((M, n_outputs if self.logits is None else self.logits.shape[1]), dtype=dtype,
                                     device=device))
        for new, old in zip(grown, (self.x, self.y, self.task, self.logits)):
            if old is not None:
                new[:have] = old[:have]
        self.x, self.y, self.task = grown[:3]
        if self.keep_logits:
            self.logits = grown[3]

    def add_reservoir(self, batch: Batch, generator: torch.Generator, logits: Tensor | None = None) -> None:
        """Offer every sample of ``batch`` (with its ``logits`` for DER) to the reservoir."""
        n = len(batch.y)
        src, slot = reservoir_slots(self.seen, n, self.capacity, generator)
        self._allocate(batch, None if logits is None else logits.shape[1], min(self.capacity, self.seen + n),
                       None if logits is None else logits.dtype)
        self.seen += n
        if len(src):
            src, slot = src.to(self.x.device), slot.to(self.x.device)
            self.x[slot] = batch.x[src].detach()
            self.y[slot] = batch.y[src]
            self.task[slot] = batch.task[src]
            if self.logits is not None and logits is not None:
                self.logits[slot] = logits[src].detach()
        self.filled = min(self.capacity, self.seen)

    def add_ring(self, batch: Batch, task_index: int, n_tasks: int) -> None:
        """Write the samples of ``batch`` (all of task ``task_index``) into that task's ring of ⌊M / T⌋
        slots, after the earlier tasks' rows (which never change)."""
        size = self.capacity // n_tasks
        if self.filled and int(self.task[self.filled - 1]) != task_index:
            self.seen = 0  # a new task: its ring starts after the rows kept so far
        start = self.filled - min(self.seen, size)
        n = len(batch.y)
        src, slot = ring_positions(self.seen, n, size)
        self._allocate(batch, None, start + min(self.seen + n, size))
        src, slot = src.to(self.x.device), slot.to(self.x.device) + start
        self.x[slot] = batch.x[src].detach()
        self.y[slot] = batch.y[src]
        self.task[slot] = batch.task[src]
        self.seen += n
        self.filled = start + min(self.seen, size)

    def add_slots(self, task: Task, n_tasks: int, generator: torch.Generator) -> None:
        """A task's end (``slots``): ⌊M / T⌋ random samples of its training split join the memory; the
        rows of earlier tasks stay as they are."""
        train = task.train
        take = torch.randperm(len(train.targets), generator=generator)[: self.capacity // n_tasks]
        self._keep_and_add(slice(0, self.filled), gather(task, "train", take.to(train.targets.device)))
        self.seen += len(train.targets)

    def key(self, y: Tensor, task: Tensor, n_outputs: int) -> Tensor:
        return task if self.policy == "task" else task * n_outputs + y

    def quota(self, n_keys: int) -> int:
        return self.per_class if self.per_class else self.capacity // max(1, n_keys)

    def select(self, task: Task, n_outputs: int, generator: torch.Generator,
               priority: Callable[[Task, Tensor, int], Tensor] | None = None) -> None:
        """A task's end (``class`` / ``task`` policies): rebalance the budget over the keys seen so far,
        adding samples of ``task``'s training split. ``priority(task, keys, quota)`` may give the
        candidates' order (iCaRL's herding); the default is random."""
        train = task.train
        cand_keys = self.key(train.targets, torch.full_like(train.targets, task.index), n_outputs)
        old_keys = self.key(self.y[: self.filled], self.task[: self.filled], n_outputs) if self.filled else cand_keys[:0]
        n_keys = len(torch.unique(torch.cat([old_keys, cand_keys])))
        quota = self.quota(n_keys)
        order = None if priority is None else priority(task, cand_keys, quota)
        keep, take = balanced_selection(old_keys, cand_keys, quota, generator, order)
        self._keep_and_add(keep, gather(task, "train", take.to(train.targets.device)))

    def _keep_and_add(self, keep: Tensor | slice, new: Batch) -> None:
        """The memory becomes its rows ``keep`` followed by the samples ``new`` (a task's end)."""
        if self.filled:
            kept = self.batch(keep.to(self.x.device) if isinstance(keep, Tensor) else keep)
            x, y, t = (torch.cat([kept[i], new[i]]) for i in range(3))
        else:
            x, y, t = new.x, new.y, new.task
        self.x, self.y, self.task, self.filled = x.contiguous(), y, t, len(y)

    # ---- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        if self.x is None:
            return {"seen": torch.tensor(self.seen)}
        f = self.filled
        state = {"x": self.x[:f], "y": self.y[:f], "task": self.task[:f], "seen": torch.tensor(self.seen)}
        if self.logits is not None:
            state["logits"] = self.logits[:f]
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        unknown = sorted(set(state) - set(KEYS))
        if unknown or "seen" not in state:
            raise ValueError(f"memory state has unknown keys {unknown[:3]}" if unknown else "memory state lacks 'seen'")
        seen = state["seen"]
        if seen.dim() != 0 or seen.dtype != torch.int64 or int(seen) < 0:
            raise ValueError("memory 'seen' must be a non-negative int64 count")
        self.seen, self.x, self.y, self.task, self.logits, self.filled = int(seen), None, None, None, None, 0
        if "x" not in state:
            if len(state) > 1:
                raise ValueError("memory state has targets but no inputs")
            return
        x, y, t = state["x"], state.get("y"), state.get("task")
        f = x.shape[0] if x.dim() else -1
        for name, v in (("y", y), ("task", t)):
            if v is None or v.dtype != torch.int64 or tuple(v.shape) != (f,):
                raise ValueError(f"memory {name!r} must be {f} int64 values, one per stored input")
        if not x.is_floating_point() or f > self.capacity or f < 1:
            raise ValueError(f"memory holds {f} float inputs; the budget is {self.capacity}")
        if self.policy == "reservoir" and f != min(self.capacity, self.seen):
            raise ValueError(f"reservoir memory holds {f} samples after {self.seen} offered (budget {self.capacity})")
        lg = state.get("logits")
        if self.keep_logits != (lg is not None) or (lg is not None and (lg.dim() != 2 or lg.shape[0] != f)):
            raise ValueError("memory logits must be stored with DER (one row per stored input) and only then")
        if self.policy in STREAMING:  # copies: the reservoir and the ring write into them (and grow them)
            self.x, self.y, self.task = x.clone(), y.clone(), t.clone()
            self.logits = None if lg is None else lg.clone()
        else:
            self.x, self.y, self.task, self.logits = x, y, t, lg
        self.filled = f
