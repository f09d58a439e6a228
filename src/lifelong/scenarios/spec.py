"""Which stream to learn, as settings: :class:`StreamSpec` names a benchmark (or your own tasks) and
everything that shapes it, owns the defaults, and builds the :class:`TaskStream`.

    >>> spec = StreamSpec(benchmark="split-mnist", scenario="class")
    >>> spec.resolved().tasks, spec.resolved().split_groups[:2]
    (5, ((0, 1), (2, 3)))

``lifelong.benchmark("split-mnist", scenario="class", seed=0)`` is ``StreamSpec(...).build(seed)``.
Defaults that depend on the benchmark (the scenario, the number of tasks, the angles of a rotated
stream, the class groups of a split one) are filled by :meth:`StreamSpec.resolved`, once; a spec with
every default filled is what a run records.

Benchmarks (data set, kind): permuted / rotated / split MNIST and Fashion-MNIST, split CIFAR-10 (5
tasks of 2 classes) and CIFAR-100 (10 tasks of 10 classes), and ``custom``: your own tasks from a file
(``data_file``, :mod:`lifelong.scenarios.custom`) or a Python function (``entry_point``,
``package.module:function``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UsageError
from ..settings import Settings, setting
from .benchmarks import derived_generator, permuted, rotated, split_classes, subsample_train
from .task import CLASS_UNITS, SCENARIOS, TaskStream
from .taskfree import SCHEDULES, rotating, task_free

# benchmark -> (data set, stream kind)
BENCHMARKS = {
    "permuted-mnist": ("mnist", "permuted"),
    "rotated-mnist": ("mnist", "rotated"),
    "split-mnist": ("mnist", "split"),
    "permuted-fashion": ("fashion-mnist", "permuted"),
    "rotated-fashion": ("fashion-mnist", "rotated"),
    "split-fashion": ("fashion-mnist", "split"),
    "split-cifar10": ("cifar10", "split"),  # 5 tasks of 2 classes
    "split-cifar100": ("cifar100", "split"),  # 10 tasks of 10 classes
    "rotating-mnist": ("mnist", "rotating"),  # task-free: digit pairs at a turning angle (MNIST-360's manner)
    "rotating-fashion": ("fashion-mnist", "rotating"),
    "custom": ("custom", "custom"),  # your own tasks: data_file or entry_point
}
N_CLASSES = {"mnist": 10, "fashion-mnist": 10, "cifar10": 10, "cifar100": 100}
DEFAULT_TASKS = {"permuted": 10, "rotated": 5, "split": 5, "rotating": 27}
SCHEDULE_CHOICES = ("tasks", *SCHEDULES, "rotating")
MAX_TASKS = 1000
UNITS = ("auto", "shared", "per-task")
F32_MAX = float(np.finfo(np.float32).max)


def default_groups(dataset: str) -> tuple[tuple[int, ...], ...]:
    """The default class groups of a split benchmark: pairs (0,1), (2,3), ... for the 10-class sets,
    ten groups of ten for CIFAR-100 (iCaRL's, DER's protocol)."""
    n = N_CLASSES[dataset]
    size = 2 if n == 10 else 10
    return tuple(tuple(range(k, k + size)) for k in range(0, n, size))


def shuffled_groups(groups, seed: int) -> tuple[tuple[int, ...], ...]:
    """``groups`` with their classes assigned in a seeded random order (same group sizes): van de Ven et
    al.'s split MNIST draws which digits form each task anew for every seed."""
    flat = sorted(c for g in groups for c in g)
    perm = torch.randperm(len(flat), generator=derived_generator(seed, "classes")).tolist()
    mapping = {c: flat[p] for c, p in zip(flat, perm)}
    return tuple(tuple(mapping[c] for c in g) for g in groups)


@dataclass(frozen=True)
class StreamSpec(Settings):
    """A task stream, as settings (see the module docstring)."""

    part = "stream"

    benchmark: str = setting("permuted-mnist", choices=tuple(BENCHMARKS), help="the task stream")
    scenario: str | None = setting(
        None, choices=SCENARIOS,
        help="task-incremental (task identity given, one head per task), domain-incremental (one shared head) or "
             "class-incremental (one head over all classes, no task identity); default: domain for permuted and "
             "rotated, task for split and custom")
    tasks: int | None = setting(None, check=lambda v: 1 <= v <= MAX_TASKS, must=f"be in 1..{MAX_TASKS}",
                                help="number of tasks (default: 10 permuted, 5 rotated and split; custom: all of them)")
    angles: tuple[float, ...] | None = setting(
        None, help="rotated: degrees per task, e.g. 0,45,90 (default: evenly spaced in [0, 180))")
    split_groups: tuple[tuple[int, ...], ...] | None = setting(
        None, help="split: classes per task, e.g. 0,1/2,3/4,5 (default: pairs 0,1/2,3/...)")
    shuffle_classes: bool = setting(
        False, added=True,
        help="split: assign the classes to the tasks in an order drawn from the seed (van de Ven et al.)")
    class_units: str = setting("all", choices=CLASS_UNITS,
                               help="class scenario: softmax over all output units from the start, or only over the "
                                    "classes of the tasks seen so far (Hsu et al. 2018, van de Ven et al.)")
    pad: int = setting(0, check=lambda v: 0 <= v <= 64, must="be in 0..64",
                       help="zero-pad images by this many pixels per side (Hsu et al. 2018: 2, to 32x32)")
    mean: float = setting(0.0, help="normalize inputs as (x - mean) / std, x in [0, 1]")
    std: float = setting(1.0, check=lambda v: v > 0, must="be > 0", help="see mean")
    val_fraction: float = setting(0.0, check=lambda v: 0.0 <= v < 1.0, must="be in [0, 1)",
                                  help="hold out this fraction of each task's training data as a validation split "
                                       "(measured into the validation accuracy matrix)")
    train_samples: int | None = setting(None, added=True, check=lambda v: 1 <= v <= 10**9,
                                        must="be a count of samples >= 1",
                                        help="train on a seeded random subset of this many samples of each task's (rotating-*: of the whole stream's) "
                                             "training split (the low-data protocol of GEM and A-GEM: 1000)")
    data_file: str | None = setting(None, flag="data",
                                    help="your own tasks: an .npz or .safetensors file with train_x_<t>, train_y_<t>, "
                                         "test_x_<t>, test_y_<t> per task; the benchmark is then custom")
    entry_point: str | None = setting(None, added=True, flag="stream",
                                      help="your own tasks: package.module:function returning a lifelong TaskStream (it "
                                           "may take seed, scenario, val_fraction); the module must be importable")
    units: str = setting("auto", added=True, choices=UNITS,
                         help="your own tasks: output units shared by label, or a block per task (auto: per-task when "
                              "tasks reuse labels in the task or class scenario)")
    eval_scenarios: tuple[str, ...] = setting(
        (), added=True, check=lambda v: all(x in ("task", "class") for x in v),
        must="list task and/or class, like class,task",
        help="also evaluate the model in these scenarios (task: logits masked to each task's classes; class: no task "
             "identity): an accuracy matrix and metrics per scenario in results.json; training follows scenario")

    schedule: str | None = setting(
        None, added=True, choices=SCHEDULE_CHOICES,
        help="tasks: announced task boundaries; flat, ordered, gradual, blurry: the tasks as one boundary-free stream, "
             "learned in order (flat: back to back, each shuffled; ordered: back to back as stored; gradual: overlapping Gaussian-scheduled mixtures; blurry: i-Blurry phases); "
             "rotating: the rotating-* benchmarks' own (default: tasks, rotating for rotating-*)")
    schedule_width: float | None = setting(
        None, added=True, check=lambda v: 0 < v <= 1000, must="be in (0, 1000]",
        help="gradual schedule: the spread of each task's samples in time, in task lengths (default 0.5)")
    disjoint_share: float | None = setting(
        None, added=True, check=lambda v: 0 <= v <= 1, must="be in [0, 1]",
        help="blurry schedule: the share of classes (tasks, in the domain scenario) that stay in their own phase "
             "(default 0.5, i-Blurry-50)")
    blurry_share: float | None = setting(
        None, added=True, check=lambda v: 0 <= v < 1, must="be in [0, 1)",
        help="blurry schedule: the chance that a sample of another class moves to another phase (default 0.1, "
             "i-Blurry-N-10)")
    eval_per_group: int | None = setting(
        None, added=True, check=lambda v: 1 <= v <= 10**7, must="be in 1..10000000",
        help="task-free streams: test samples per class (per task in the domain scenario) in the fixed subset that "
             "anytime evaluation measures (default 100)")

    # ---- derived views -------------------------------------------------------------------------------
    @property
    def dataset(self) -> str:
        return BENCHMARKS[self.benchmark][0]

    @property
    def kind(self) -> str:
        return BENCHMARKS[self.benchmark][1]

    @property
    def is_resolved(self) -> bool:
        return self.scenario is not None and (self.kind == "custom" or self.tasks is not None)

    def check(self) -> None:
        kind = self.kind
        if self.data_file is not None or self.entry_point is not None:
            if self.data_file is not None and self.entry_point is not None:
                self.fail("data_file", "and `entry_point` both give your own tasks: give one", "entry_point")
            if kind != "custom" and self.benchmark != StreamSpec.benchmark:
                self.fail("benchmark", f"{self.benchmark!r} has its own data; your own tasks (`data_file` or "
                          "`entry_point`) are the custom benchmark: drop `benchmark`", "data_file", "entry_point")
        if self.data_file is not None and not self.data_file.lower().endswith((".npz", ".safetensors")):
            self.fail("data_file", f"must be an .npz or .safetensors file, got {self.data_file}")
        if self.entry_point is not None and (self.entry_point.count(":") != 1 or not all(self.entry_point.split(":"))):
            self.fail("entry_point", f"must be package.module:function, got {self.entry_point!r}")
        custom = kind == "custom" or self.data_file is not None or self.entry_point is not None
        if not custom:
            if self.units != "auto":
                self.fail("units", f"applies to your own tasks (`data_file` or `entry_point`), not {self.benchmark}",
                          "data_file", "entry_point")
        elif self.pad:
            self.fail("pad", "applies to the built-in benchmarks; pad your own images before saving them")
        free = self.schedule not in (None, "tasks")
        if kind == "rotating" and self.schedule not in (None, "rotating"):
            self.fail("schedule", f"{self.benchmark} has its own schedule (rotating); drop `schedule`")
        if kind != "rotating" and self.schedule == "rotating":
            self.fail("schedule", "'rotating' is the rotating-* benchmarks' own; choose flat, gradual or blurry")
        if self.schedule_width is not None and self.schedule != "gradual":
            self.fail("schedule_width", "applies to schedule='gradual'", "schedule")
        for name in ("disjoint_share", "blurry_share"):
            if getattr(self, name) is not None and self.schedule != "blurry":
                self.fail(name, "applies to schedule='blurry'", "schedule")
        if self.eval_per_group is not None and not (free or kind == "rotating"):
            self.fail("eval_per_group", "applies to task-free streams (a schedule other than tasks)", "schedule")
        if free or kind == "rotating":
            if self.scenario == "task":
                self.fail("scenario", "task: a task-free stream gives no task identity; use class (or domain)", "schedule")
            if self.eval_scenarios or self.class_units != "all":
                self.fail("eval_scenarios" if self.eval_scenarios else "class_units",
                          "belongs to streams with tasks, not a task-free one", "schedule")
        if kind == "rotating" and self.scenario not in (None, "class"):
            self.fail("scenario", f"{self.benchmark} is class-incremental", "benchmark")
        if kind != "rotated" and self.angles is not None:
            self.fail("angles", f"applies to rotated benchmarks, not {self.benchmark}")
        if kind != "split" and self.split_groups is not None:
            self.fail("split_groups", f"applies to split benchmarks, not {self.benchmark}")
        if kind != "split" and self.shuffle_classes:
            self.fail("shuffle_classes", f"applies to split benchmarks, not {self.benchmark}")
        if self.class_units != "all" and self.scenario not in (None, "class"):
            self.fail("class_units", f"applies to the class scenario, not {self.scenario}")
        if self.angles is not None and self.tasks is not None and len(self.angles) != self.tasks:
            self.fail("tasks", f"{self.tasks} does not match the {len(self.angles)} `angles` given; drop one of them",
                      "angles")
        if self.split_groups is not None:
            groups = self.split_groups
            flat = [c for g in groups for c in g]
            if self.tasks is not None and len(groups) != self.tasks:
                self.fail("tasks", f"{self.tasks} does not match the {len(groups)} `split_groups`", "split_groups")
            if not groups or any(len(g) == 0 for g in groups):
                self.fail("split_groups", "need at least one class in every group")
            if len(set(flat)) != len(flat):
                self.fail("split_groups", f"overlap: {'/'.join(','.join(map(str, g)) for g in groups)}; a class may be "
                          "in one task only")
            top = N_CLASSES[self.dataset] - 1
            if not all(0 <= c <= top for c in flat):
                self.fail("split_groups", f"must name classes in 0..{top}")
            if self.scenario == "domain" and len({len(g) for g in groups}) != 1:
                self.fail("split_groups", "must be of equal size in the domain scenario (they share one head)")
        _check_normalization(self)

    # ---- defaults that depend on the benchmark ---------------------------------------------------------
    def resolved(self) -> "StreamSpec":
        """This spec with the benchmark's defaults filled in (scenario, tasks, angles, class groups);
        idempotent."""
        s = self
        if s.kind != "custom" and (s.data_file is not None or s.entry_point is not None):
            s = dataclasses.replace(s, benchmark="custom")
        if s.data_file is not None:
            s = dataclasses.replace(s, data_file=str(Path(s.data_file).expanduser().resolve()))
        if s.kind == "custom" and s.data_file is None and s.entry_point is None:
            raise UsageError("the custom benchmark reads your tasks: give `data_file` (an .npz or .safetensors file) or "
                             "`entry_point` (package.module:function)", params=("data_file", "entry_point"))
        kind = s.kind
        if s.schedule is None:
            s = dataclasses.replace(s, schedule="rotating" if kind == "rotating" else "tasks")
        free = s.schedule != "tasks"
        if s.scenario is None:
            if kind == "rotating" or (free and kind in ("split", "custom")):
                s = dataclasses.replace(s, scenario="class")
            else:
                s = dataclasses.replace(s, scenario="task" if kind in ("split", "custom") else "domain")
        if s.schedule == "gradual" and s.schedule_width is None:
            s = dataclasses.replace(s, schedule_width=0.5)
        if s.schedule == "blurry":
            s = dataclasses.replace(s, disjoint_share=0.5 if s.disjoint_share is None else s.disjoint_share,
                                    blurry_share=0.1 if s.blurry_share is None else s.blurry_share)
        if free and s.eval_per_group is None:
            s = dataclasses.replace(s, eval_per_group=100)
        if kind == "rotated" and s.angles is None:
            n = s.tasks or DEFAULT_TASKS["rotated"]
            s = dataclasses.replace(s, angles=tuple(round(180.0 * t / n, 6) for t in range(n)))
        if kind == "split" and s.split_groups is None:
            groups = default_groups(s.dataset)
            n = s.tasks or len(groups)
            if n > len(groups):
                raise UsageError(f"tasks={n}: {s.benchmark} has at most {len(groups)} tasks of {len(groups[0])} classes; "
                                 "give `split_groups` to choose other class groups", params=("tasks", "split_groups"))
            s = dataclasses.replace(s, split_groups=groups[:n])
        if s.tasks is None and kind != "custom":
            n = {"rotated": len(s.angles or ()), "split": len(s.split_groups or ())}.get(kind, DEFAULT_TASKS.get(kind))
            s = dataclasses.replace(s, tasks=n)
        return s

    # ---- building --------------------------------------------------------------------------------------
    def fingerprint(self, seed: int = 0, *, data_dir: str | None = None, download: bool = True) -> dict:
        """What identifies the data :meth:`build` would train on, wherever it is read from (its
        ``info["data"]``): a data file's sha256; the sha256 of the tensors a ``entry_point`` function
        returns (the function is called); a benchmark data set's md5s (read once per process)."""
        s = self.resolved()
        if s.kind == "custom":
            if s.data_file is not None:
                from .custom import data_file_fingerprint

                return data_file_fingerprint(s.data_file)
            return s.build(seed, data_dir=data_dir, download=download).info["data"]
        from ..data import load_dataset

        return load_dataset(s.dataset, data_dir, download=download, copy=False).fingerprint()  # md5s only

    def build(self, seed: int = 0, *, data_dir: str | None = None, download: bool = True) -> TaskStream:
        """The stream this spec describes (resolved first), seeded by ``seed``; loads the data set from
        ``data_dir``, ``$LIFELONG_DATA_DIR``, the cache or a download (see :mod:`lifelong.data`). Its
        ``info["data"]`` is the data's fingerprint (the md5s, or a file's or stream's sha256)."""
        s = self.resolved()
        if s.kind == "custom":
            stream = _custom_stream(s, seed)
        else:
            from ..data import load_dataset

            data = load_dataset(s.dataset, data_dir, download=download)
            common = dict(seed=seed, val_fraction=s.val_fraction, name=s.benchmark, pad=s.pad, mean=s.mean, std=s.std)
            if s.kind == "permuted":
                stream = permuted(data, s.tasks, s.scenario, **common)
            elif s.kind == "rotated":
                stream = rotated(data, s.angles, s.scenario, **common)
            elif s.kind == "rotating":
                stream = rotating(data, s.tasks, samples=s.train_samples, eval_per_group=s.eval_per_group, **common)
            else:
                groups = shuffled_groups(s.split_groups, seed) if s.shuffle_classes else s.split_groups
                stream = split_classes(data, groups, s.scenario, **common)
            stream = dataclasses.replace(stream, info={**stream.info, "data": data.fingerprint()})
        if s.train_samples is not None and s.kind != "rotating":
            stream = subsample_train(stream, s.train_samples, seed)
        if s.schedule in SCHEDULES:  # the resolved spec holds the settings its schedule uses
            given = dict(width=s.schedule_width, disjoint=s.disjoint_share, blurry=s.blurry_share,
                         eval_per_group=s.eval_per_group)
            stream = task_free(stream, s.schedule, seed=seed, **{k: v for k, v in given.items() if v is not None})
        if s.class_units != "all":
            stream = stream.with_class_units(s.class_units)
        if s.eval_scenarios:
            stream = stream.with_eval_scenarios(s.eval_scenarios)
        return stream


def _custom_stream(s: StreamSpec, seed: int) -> TaskStream:
    """Your own tasks: ``data_file`` (the layout of :mod:`lifelong.scenarios.custom`) or ``entry_point``;
    ``tasks`` keeps the first N."""
    from . import custom

    if s.data_file is not None:
        stream = custom.load_tasks_file(s.data_file, units=s.units, scenario=s.scenario, val_fraction=s.val_fraction,
                                        seed=seed, mean=s.mean, std=s.std)
        fingerprint = custom.data_file_fingerprint(s.data_file)
    else:
        stream = custom.stream_from_entry_point(s.entry_point, seed=seed, scenario=s.scenario,
                                                val_fraction=s.val_fraction)
        if stream.scenario != s.scenario:
            raise UsageError(f"{s.entry_point} returned a {stream.scenario}-incremental stream: give scenario="
                             f"{stream.scenario!r} (or let the function take a scenario argument)", params=("scenario",))
        if s.val_fraction and stream.tasks[0].val is None:
            raise UsageError(f"{s.entry_point} returned no validation split: let the function take val_fraction, or "
                             "drop `val_fraction`", params=("val_fraction",))
        fingerprint = {"stream": s.entry_point, "sha256": custom.stream_fingerprint(stream)}
    if s.tasks is not None:
        if s.tasks > len(stream):
            raise UsageError(f"tasks={s.tasks}: the data holds {len(stream)} tasks", params=("tasks",))
        stream = dataclasses.replace(stream, tasks=stream.tasks[: s.tasks])
    return dataclasses.replace(stream, name="custom", info={**stream.info, "data": fingerprint})


def _check_normalization(s: StreamSpec) -> None:
    """(x − mean) / std must be a finite float32 for pixels x in [0, 1], or training fails for the inputs'
    sake (and a divergence would blame the learning rate)."""
    mean, std = s.mean, s.std
    with np.errstate(over="ignore", under="ignore"):
        m, sd = np.float32(mean), np.float32(std)
    if not np.isfinite(m) or not np.isfinite(sd) or sd == 0:
        s.fail("std", f"and `mean` must be float32 numbers (the inputs' type; a std of {std:g} is {float(sd):g} there): "
               "give a std of at least 1e-30 and values below 3e38", "mean")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        ends = (np.float32(0.0) - m) / sd, (np.float32(1.0) - m) / sd
    if not all(math.isfinite(float(e)) for e in ends):
        s.fail("std", f"{std:g} with `mean` {mean:g} makes the inputs (x - mean) / std overflow float32 for pixels x in "
               "[0, 1]: use a larger `std` or a smaller `mean`", "mean")


def benchmark(name: str, *, seed: int = 0, data_dir: str | None = None, download: bool = True, **settings: Any) -> TaskStream:
    """A benchmark stream by name: ``benchmark("split-mnist", scenario="class", seed=0)``; ``settings`` are
    :class:`StreamSpec` fields (tasks, angles, split_groups, val_fraction, class_units, ...)."""
    return StreamSpec(benchmark=name, **settings).build(seed, data_dir=data_dir, download=download)
