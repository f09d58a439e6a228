"""Streams without task boundaries: one sequence of samples whose make-up drifts, seen once, in order.

A task-free stream is a :class:`TaskStream` with a single task whose training split is stored in the
order it is learned, and a :class:`Timeline` that says where each sample comes from. The strategy is
never told where one distribution ends and the next begins (there is no ``after_task`` until the
stream's end, every sample's task id is 0); the timeline is for evaluation and pictures only.

A sample's *group* is what the anytime evaluation measures (:mod:`lifelong.eval.anytime`): its class
in a class-incremental stream, its source task in a domain-incremental one (permuted, rotated). The
schedules, each a seeded function of the source stream's tasks (their *phases*):

- ``flat``: the tasks one after another, each task's samples shuffled within it (the sharp boundaries
  are still in the data, only unannounced).
- ``ordered``: the tasks one after another, each in its stored order (your own data that arrives in order:
  one task, or several back to back, from :meth:`TaskStream.from_tensors`).
- ``gradual``: each sample of task t gets a time τ = t + ½ + w·z, z ~ N(0, 1), and the stream is
  ordered by τ, so that task t's share of the stream at time u is
  N_t φ((u − t − ½)/w) / Σ_s N_s φ((u − s − ½)/w): Gaussian-scheduled, overlapping mixtures (w is
  ``width``, in task lengths).
- ``blurry``: i-Blurry (Koh et al. 2022, "Online continual learning on class incremental blurry task
  configuration with anytime inference", §3): a share ``disjoint`` of the groups stays in its own
  phase; every sample of the other ("blurry") groups moves, with probability ``blurry``, to a phase drawn
  uniformly from the other phases; each phase is shuffled within itself.
- ``rotating`` (:func:`rotating`): in the manner of MNIST-360 (Buzzega et al. 2020, "Dark experience for
  general continual learning", §5): digits 0-8 in overlapping pairs (0, 1), (1, 2), ..., (8, 0), round
  after round, each image rotated by an angle that turns continuously with the position in the stream
  (one full turn per round of nine pairs).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from ..errors import UsageError
from ..seeds import derived_generator
from .task import DataSplit, Preprocess, Task, TaskStream

SCHEDULES = ("flat", "ordered", "gradual", "blurry")
UNITS = ("class", "task")


@dataclass(frozen=True)
class Timeline:
    """Where each sample of a task-free stream comes from (evaluation and pictures only: the learner
    never sees it).

    ``train_groups`` (N,) the group of each training sample in stream order, ``train_phases`` (N,) the
    source task it was drawn from, ``test_groups`` (M,) the group of each test sample, ``eval_index``
    (K,) the fixed evaluation subset (indices into the test split, at most ``eval_per_group`` of each
    group, drawn from the seed). ``unit`` says what a group is: a ``class`` or a source ``task``."""

    schedule: str
    unit: str
    group_names: tuple[str, ...]
    phase_names: tuple[str, ...]
    train_groups: Tensor
    train_phases: Tensor
    test_groups: Tensor
    eval_index: Tensor
    params: dict = field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        return len(self.group_names)

    def entries(self) -> list[int | None]:
        """For each group, the position in the stream of its first training sample (None: never trained)."""
        first: list[int | None] = [None] * self.n_groups
        g = self.train_groups
        n = len(g)
        pos = torch.full((self.n_groups,), n, dtype=torch.long).scatter_reduce(
            0, g, torch.arange(n), reduce="amin", include_self=True)
        for k, p in enumerate(pos.tolist()):
            first[k] = None if p >= n else p
        return first

    def shares(self, bins: int = 100) -> Tensor:
        """(bins, groups): each group's share of the training samples in each of ``bins`` equal windows of
        the stream (what the schedule pictures show)."""
        n = len(self.train_groups)
        bins = max(1, min(bins, n))
        which = torch.div(torch.arange(n) * bins, n, rounding_mode="floor")
        counts = torch.zeros(bins, self.n_groups, dtype=torch.float64)
        counts.index_put_((which, self.train_groups), torch.ones(n, dtype=torch.float64), accumulate=True)
        return counts / counts.sum(1, keepdim=True)

    def to_dict(self) -> dict:
        """What results.json records of the timeline (not the per-sample tensors)."""
        return {"schedule": self.schedule, "unit": self.unit, "groups": list(self.group_names),
                "phases": list(self.phase_names), "samples": int(len(self.train_groups)),
                "eval_samples": int(len(self.eval_index)), "entries": self.entries(), **self.params}


# ---- orders: pure functions of the phases and a generator --------------------------------------------
def flat_order(phases: Tensor, generator: torch.Generator) -> Tensor:
    """Positions of the samples in stream order: phase after phase, shuffled within each phase."""
    key = torch.rand(len(phases), generator=generator, dtype=torch.float64)
    return _lexsort(phases.to(torch.float64), key)


def gradual_order(phases: Tensor, width: float, generator: torch.Generator) -> Tensor:
    """Positions of the samples in stream order: sample i of phase t at time t + ½ + width·z_i, sorted."""
    if not width > 0:
        raise UsageError(f"schedule_width must be > 0 (in task lengths), got {width}", params=("schedule_width",))
    z = torch.randn(len(phases), generator=generator, dtype=torch.float64)
    return torch.sort(phases.to(torch.float64) + 0.5 + width * z, stable=True).indices


def blurry_phases(phases: Tensor, groups: Tensor, n_phases: int, disjoint: float, blurry: float,
                  generator: torch.Generator) -> tuple[Tensor, list[int]]:
    """i-Blurry's phase of each sample, and the disjoint groups: round(disjoint × G) groups drawn from the
    generator keep all their samples in their own phase; each sample of another group moves with
    probability ``blurry`` to a phase drawn uniformly from the other ``n_phases − 1``."""
    if not 0.0 <= disjoint <= 1.0:
        raise UsageError(f"disjoint_share must be in [0, 1], got {disjoint}", params=("disjoint_share",))
    if not 0.0 <= blurry < 1.0:
        raise UsageError(f"blurry_share must be in [0, 1), got {blurry}", params=("blurry_share",))
    present = torch.unique(groups)
    order = present[torch.randperm(len(present), generator=generator)]
    fixed = sorted(order[: round(disjoint * len(present))].tolist())
    moves = torch.rand(len(phases), generator=generator, dtype=torch.float64) < blurry
    moves &= ~torch.isin(groups, torch.tensor(fixed, dtype=torch.long))
    out = phases.clone()
    if n_phases > 1:
        other = torch.randint(0, n_phases - 1, (len(phases),), generator=generator)
        other = other + (other >= phases).long()  # uniform over the other phases
        out[moves] = other[moves]
    return out, fixed


def eval_subset(groups: Tensor, per_group: int, generator: torch.Generator) -> Tensor:
    """Sorted indices of at most ``per_group`` samples of every group, drawn from ``generator``: the fixed
    evaluation set of anytime evaluation (its cost is bounded by groups × per_group samples)."""
    if per_group < 1:
        raise UsageError(f"eval_per_group must be >= 1, got {per_group}", params=("eval_per_group",))
    perm = torch.randperm(len(groups), generator=generator)
    g = groups[perm]
    keep = _rank_within(g) < per_group
    return perm[keep].sort().values


def _rank_within(g: Tensor) -> Tensor:
    """For each element, how many earlier elements have the same value."""
    order = torch.sort(g, stable=True).indices
    sg = g[order]
    start = torch.ones_like(sg, dtype=torch.bool)
    start[1:] = sg[1:] != sg[:-1]
    idx = torch.arange(len(g))
    first = torch.cummax(torch.where(start, idx, torch.zeros_like(idx)), 0).values
    rank = torch.empty_like(idx)
    rank[order] = idx - first
    return rank


def _lexsort(primary: Tensor, secondary: Tensor) -> Tensor:
    inner = torch.sort(secondary, stable=True).indices
    return inner[torch.sort(primary[inner], stable=True).indices]


# ---- building ------------------------------------------------------------------------------------------
def task_free(stream: TaskStream, schedule: str, *, seed: int = 0, width: float = 0.5, disjoint: float = 0.5,
              blurry: float = 0.1, eval_per_group: int = 100) -> TaskStream:
    """``stream``'s tasks as one boundary-free sequence under ``schedule`` (see the module docstring);
    the images are laid out (padded, permuted) once, so that samples of every task share one
    preprocessing. Groups are classes in the class scenario, source tasks in the domain scenario."""
    if schedule not in SCHEDULES:
        raise UsageError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}", params=("schedule",))
    if stream.scenario == "task":
        raise UsageError("a task-free stream gives no task identity: learn it in the class (or domain) scenario, not "
                         "task", params=("scenario",))
    if stream.timeline is not None:
        raise UsageError(f"the stream {stream.name!r} is task-free already", params=("schedule",))
    if stream.eval_scenarios or stream.class_units != "all":
        raise UsageError("eval_scenarios and class_units='seen' belong to streams with tasks: drop them for a task-free "
                         "stream", params=("eval_scenarios", "class_units"))
    unit = "class" if stream.scenario == "class" else "task"
    tasks = stream.tasks
    pre0 = tasks[0].preprocess
    if any((t.preprocess.mean, t.preprocess.std) != (pre0.mean, pre0.std) for t in tasks):
        raise UsageError("the tasks normalize their inputs differently: a task-free stream has one preprocessing")

    def joined(split: str) -> tuple[Tensor, Tensor, Tensor] | None:
        parts = [t.split(split) if getattr(t, split) is not None else None for t in tasks]
        if any(p is None for p in parts):
            return None
        x = torch.cat([t.preprocess.layout(p.images) for t, p in zip(tasks, parts)])
        y = torch.cat([p.targets for p in parts])
        ph = torch.cat([torch.full((len(p),), t.index, dtype=torch.long) for t, p in zip(tasks, parts)])
        return x, y, ph

    tr_x, tr_y, tr_ph = joined("train")
    te_x, te_y, te_ph = joined("test")
    val = joined("val")
    if unit == "class":
        names = sorted({int(c) for t in tasks for c in t.classes})
        if names != list(range(len(names))):
            raise UsageError("a class-incremental task-free stream needs its classes on output units 0..C-1")
        group_names = tuple(f"class {c}" for c in names)
        tr_g, te_g = tr_y, te_y
    else:
        group_names = tuple(t.name for t in tasks)
        tr_g, te_g = tr_ph, te_ph
    gen = derived_generator(seed, f"task-free:{schedule}")
    params: dict = {}
    phases = tr_ph
    if schedule == "flat":
        order = flat_order(phases, gen)
    elif schedule == "ordered":
        order = torch.arange(len(phases))
    elif schedule == "gradual":
        order = gradual_order(phases, width, gen)
        params = {"width": width}
    else:
        phases, fixed = blurry_phases(tr_ph, tr_g, len(tasks), disjoint, blurry, gen)
        order = flat_order(phases, gen)
        params = {"disjoint_share": disjoint, "blurry_share": blurry, "disjoint_groups": [group_names[g] for g in fixed]}
    classes = tuple(sorted({int(c) for t in tasks for c in t.classes}))
    ev = eval_subset(te_g, eval_per_group, derived_generator(seed, "task-free:eval"))
    params["eval_per_group"] = eval_per_group
    timeline = Timeline(schedule, unit, group_names, tuple(stream.task_names), tr_g[order].clone(),
                        phases[order].clone(), te_g.clone(), ev, params)
    task = Task(0, schedule, DataSplit(tr_x[order], tr_y[order]), DataSplit(te_x, te_y),
                None if val is None else DataSplit(val[0], val[1]), classes,
                Preprocess(mean=pre0.mean, std=pre0.std), None)
    return dataclasses.replace(stream, tasks=(task,), timeline=timeline)


def rotate_each(images: Tensor, degrees: Tensor, chunk: int = 10000) -> Tensor:
    """uint8 images (N, H, W), each rotated counter-clockwise by its own angle ``degrees[i]`` (bilinear,
    zero fill, rounded back to uint8, as :func:`~lifelong.scenarios.benchmarks.rotate_images`)."""
    out = torch.empty_like(images)
    a = degrees.to(torch.float64) * (math.pi / 180.0)
    for s in range(0, len(images), chunk):
        x = images[s : s + chunk].to(torch.float32).unsqueeze(1)
        c, sn = torch.cos(a[s : s + chunk]).float(), torch.sin(a[s : s + chunk]).float()
        z = torch.zeros_like(c)
        theta = torch.stack([torch.stack([c, -sn, z], 1), torch.stack([sn, c, z], 1)], 1)  # (B, 2, 3)
        grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
        y = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out[s : s + chunk] = y.squeeze(1).round_().clamp_(0, 255).to(torch.uint8)
    return out


def rotating(data, segments: int = 27, *, seed: int = 0, val_fraction: float = 0.0, name: str = "rotating-mnist",
             pad: int = 0, mean: float = 0.0, std: float = 1.0, samples: int | None = None,
             eval_per_group: int = 100, classes: Sequence[int] = tuple(range(9))) -> TaskStream:
    """The rotating-digit stream (see the module docstring): ``segments`` pairs of consecutive classes
    (k, k+1 mod C), k = s mod C, each class's training images dealt evenly (seeded) to the segments that
    show it; within a segment the two classes are shuffled together; sample i of the stream's n is rotated
    by 360° · (i / n) · (segments / C) mod 360 (one turn per round of C segments). The test images of the same classes are
    rotated by angles drawn uniformly from [0°, 360°). ``samples``: a seeded subset of this many training
    images in all (before dealing). Class-incremental, C output units."""
    from .benchmarks import _as_tensors, _holdout, _unpack

    tr_x, tr_y, te_x, te_y = _as_tensors(*_unpack(data))
    classes = [int(c) for c in classes]
    C = len(classes)
    if segments < 1:
        raise UsageError(f"tasks (segments of the rotating stream) must be >= 1, got {segments}", params=("tasks",))
    shows = [[s for s in range(segments) if k in (s % C, (s + 1) % C)] for k in range(C)]
    if any(not s for s in shows):
        raise UsageError(f"tasks={segments}: every class needs a segment (at least {C - 1})", params=("tasks",))
    tr_idx, val_idx = _holdout(len(tr_y), val_fraction, seed)
    unit = torch.full((int(max(tr_y.max(), te_y.max())) + 1,), -1, dtype=torch.long)
    unit[torch.tensor(classes)] = torch.arange(C)
    keep = unit[tr_y[tr_idx]] >= 0
    pool = tr_idx[keep]
    if samples is not None:
        if samples > len(pool):
            raise UsageError(f"train_samples={samples} is more than the {len(pool)} training images of classes "
                             f"{classes}", params=("train_samples",))
        pool = pool[torch.randperm(len(pool), generator=derived_generator(seed, "rotating:subset"))[:samples]].sort().values
    gen = derived_generator(seed, "rotating:deal")
    seg_of = torch.empty(len(pool), dtype=torch.long)
    pu = unit[tr_y[pool]]
    for k in range(C):
        mine = (pu == k).nonzero().squeeze(1)
        mine = mine[torch.randperm(len(mine), generator=gen)]
        owners = torch.tensor(shows[k])
        seg_of[mine] = owners[torch.arange(len(mine)) * len(owners) // max(len(mine), 1)]
    order = flat_order(seg_of, gen)
    n = len(order)
    angles = (torch.arange(n, dtype=torch.float64) * 360.0 * (segments / C) / max(n, 1)) % 360.0
    images = rotate_each(tr_x[pool[order]], angles)
    targets = pu[order]
    test_keep = unit[te_y] >= 0
    te_imgs, te_t = te_x[test_keep], unit[te_y[test_keep]]
    te_angles = torch.rand(len(te_t), generator=derived_generator(seed, "rotating:test"), dtype=torch.float64) * 360.0
    te_imgs = rotate_each(te_imgs, te_angles)
    val = None
    if val_idx is not None:
        vk = val_idx[unit[tr_y[val_idx]] >= 0]
        va = torch.rand(len(vk), generator=derived_generator(seed, "rotating:val"), dtype=torch.float64) * 360.0
        val = DataSplit(rotate_each(tr_x[vk], va), unit[tr_y[vk]])
    pre = Preprocess(pad=pad, mean=mean, std=std)
    images, te_imgs = pre.layout(images), pre.layout(te_imgs)
    if val is not None:
        val = DataSplit(pre.layout(val.images), val.targets)
    group_names = tuple(f"class {c}" for c in classes)
    phase_names = tuple(f"{classes[s % C]}-{classes[(s + 1) % C]}" for s in range(segments))
    ev = eval_subset(te_t, eval_per_group, derived_generator(seed, "task-free:eval"))
    params = {"segments": segments, "degrees_per_round": 360.0, "eval_per_group": eval_per_group}
    timeline = Timeline("rotating", "class", group_names, phase_names, targets.clone(), seg_of[order].clone(),
                        te_t.clone(), ev, params)
    task = Task(0, "rotating", DataSplit(images, targets), DataSplit(te_imgs, te_t), val, tuple(range(C)),
                Preprocess(mean=mean, std=std), None)
    h, w = images.shape[1:]
    return TaskStream(name, "class", (task,), C, (1, h, w), timeline=timeline)
