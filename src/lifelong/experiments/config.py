"""Run configuration: one validated dataclass that owns every default of a run, the strategy's
settings nested inside it.

A run writes its resolved config (``config.json``) before training starts; its id is a hash of the
fields that change results, so the same experiment always gets the same id. Unknown keys are errors.
In ``config.json`` the strategy is a name and the settings of its dataclass::

    {"benchmark": "permuted-mnist", ..., "strategy": "ewc",
     "settings": {"lam": 100.0, "fisher": "exact", "mc_samples": 1}, ...}

and a composite's settings are keyed by part: ``"strategy": "ewc+l2", "settings": {"ewc": {...},
"l2": {...}}``. Flat dicts (a sweep grid entry, ``RunConfig.from_flat``) may give settings as plain
keys (``"lam": 10``; ``"ewc.lam"`` for one part of a composite). Folders written by lifelong 0.1 have a
flat config (``"lam"`` beside ``"strategy"``, ``config_version`` absent): :func:`from_dict` reads it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np

from ..errors import UsageError, names
from ..models import MODELS
from ..train.augment import AUGMENTATIONS
from ..scenarios import SCENARIOS
from ..strategies import registry
from ..train.device import check_device_name
from ..train.loop import OPTIMIZERS, TrainSettings
from .value_types import as_type, describe, unwrap

CONFIG_VERSION = 2

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
    "custom": ("custom", "custom"),  # your own tasks: --data tasks.npz or --stream package.module:function
}
CUSTOM_UNITS = ("auto", "shared", "per-task")
N_CLASSES = {"mnist": 10, "fashion-mnist": 10, "cifar10": 10, "cifar100": 100}


def default_groups(dataset: str) -> tuple[tuple[int, ...], ...]:
    """The default class groups of a split benchmark: pairs (0,1), (2,3), ... for the 10-class sets,
    ten groups of ten for CIFAR-100 (iCaRL's, DER's protocol)."""
    n = N_CLASSES[dataset]
    size = 2 if n == 10 else 10
    return tuple(tuple(range(k, k + size)) for k in range(0, n, size))

DEFAULT_TASKS = {"permuted": 10, "rotated": 5, "split": 5}
MAX_TASKS = 1000
F32_MAX = float(np.finfo(np.float32).max)

# Fields that do not change the numbers a run produces (up to floating-point rounding across devices
# and thread counts): left out of the run id.
# fields added after runs were made: left out of the run id while unset, so that older runs keep their ids
ADDED_IN_ID = {"train_samples": None, "shuffle_classes": False, "augment": "none", "optimizer_state": "reset",
               "stream": None, "units": "auto"}
# "data_file" (a file's path) is replaced in the id by the file's sha256: the same tasks wherever the file lies.
NOT_IN_ID = ("nproc", "log", "data_file", "data_dir", "download", "threads", "device", "out", "progress", "checkpoint_every")
# Settings of version-1 (flat) configs, by the strategies that read them.
LEGACY_SETTINGS = ("lam", "gamma", "fisher", "mc_samples", "xi", "alpha")


@dataclass(frozen=True)
class RunConfig:
    benchmark: str = "permuted-mnist"
    scenario: str | None = None  # default: domain for permuted/rotated, task for split
    tasks: int | None = None  # default: 10 permuted, 5 rotated and split
    angles: tuple[float, ...] | None = None  # rotated: degrees per task (default: evenly spaced in [0, 180))
    split_groups: tuple[tuple[int, ...], ...] | None = None  # split: classes per task
    shuffle_classes: bool = False  # split: assign the classes to the tasks in a seeded random order
    augment: str = "none"  # "crop-flip": random crops (4-pixel padding) and horizontal flips while training
    optimizer_state: str = "reset"  # "keep": one optimizer (Adam's moments) for the whole stream
    class_units: str = "all"  # class scenario: softmax over "all" units, or those of tasks "seen" so far
    strategy: str = "naive"
    settings: Any = None  # the strategy's settings dataclass (default: its defaults)
    pad: int = 0  # zero-pad images by this many pixels per side (Hsu et al. 2018: 2, to 32x32)
    mean: float = 0.0  # then normalize: (x - mean) / std, x in [0, 1]
    std: float = 1.0
    model: str = "mlp"
    hidden: tuple[int, ...] = (400, 400)
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    batch_size: int = 128
    epochs: int = 1
    iterations: int | None = None
    val_fraction: float = 0.0
    train_samples: int | None = None  # a seeded subset of this many training samples per task (GEM, A-GEM: 1000)
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    data_dir: str | None = None
    download: bool = True
    out: str | None = None
    progress: bool = False
    data_file: str | None = None  # --data: your own tasks: an .npz / .safetensors file (benchmark "custom")
    stream: str | None = None  # your own tasks: package.module:function returning a TaskStream
    nproc: int = 1  # data-parallel processes for one run (lifelong.train.distributed); results equal up to rounding
    log: str = "jsonl"  # events.jsonl in the run folder; "tensorboard": and TensorBoard scalars; "none"
    units: str = "auto"  # custom data: output units "shared" by label, "per-task", or auto (lifelong.scenarios.custom)
    checkpoint_every: int = 500  # optimizer steps between checkpoints (0: only at the end of each task)

    def __post_init__(self) -> None:
        """Lists from JSON become the tuples the fields are typed as (so configs compare and hash)."""
        try:
            for name, depth in (("hidden", 1), ("angles", 1), ("split_groups", 2)):
                v = getattr(self, name)
                if isinstance(v, (list, tuple)):
                    cast = float if name == "angles" else int
                    v = tuple(tuple(cast(c) for c in g) for g in v) if depth == 2 else tuple(cast(c) for c in v)
                    object.__setattr__(self, name, v)
        except (TypeError, ValueError) as e:
            raise UsageError(f"config: {name} holds a value of the wrong type ({e})") from None

    # ---- derived views -------------------------------------------------------------------------
    @property
    def dataset(self) -> str:
        return BENCHMARKS[self.benchmark][0]

    @property
    def kind(self) -> str:
        return BENCHMARKS[self.benchmark][1]

    def train_settings(self) -> TrainSettings:
        return TrainSettings(self.optimizer, self.lr, self.momentum, self.batch_size, self.epochs, self.iterations,
                             self.seed, augment=self.augment, optimizer_state=self.optimizer_state)

    def resolved(self) -> "RunConfig":
        """Fill benchmark-dependent defaults and the strategy's default settings, then validate.
        Idempotent."""
        _check_choice("benchmark", self.benchmark, BENCHMARKS)
        c = self
        if c.data_file is not None or c.stream is not None:
            _check(c.benchmark in ("custom", RunConfig.benchmark),
                   f"--data / --stream give your own tasks: drop --benchmark {c.benchmark}")
            _check(c.data_file is None or c.stream is None, "give --data FILE or --stream MODULE:FUNCTION, not both")
            data = c.data_file if c.data_file is None else _absolute(c.data_file)
            c = dataclasses.replace(c, benchmark="custom", data_file=data)
        elif c.benchmark == "custom":
            raise UsageError("the custom benchmark reads your tasks: give --data tasks.npz or --stream package.module:function")
        kind = BENCHMARKS[c.benchmark][1]
        name = registry.check_name(c.strategy)
        if name != c.strategy or c.settings is None:
            c = dataclasses.replace(c, strategy=name, settings=c.settings or registry.default_settings(name))
        if c.scenario is None:
            c = dataclasses.replace(c, scenario="task" if kind in ("split", "custom") else "domain")
        if kind == "rotated" and c.angles is None:
            n = c.tasks or DEFAULT_TASKS["rotated"]
            _check(isinstance(n, int) and 1 <= n <= MAX_TASKS, f"--tasks must be in 1..{MAX_TASKS}, got {n}")
            c = dataclasses.replace(c, angles=tuple(round(180.0 * t / n, 6) for t in range(n)))
        if kind == "split" and c.split_groups is None:
            groups = default_groups(c.dataset)
            n = c.tasks or len(groups)
            if not 1 <= n <= len(groups):
                raise UsageError(
                    f"{c.benchmark} has at most {len(groups)} tasks of {len(groups[0])} classes, got --tasks {n}; "
                    "use --split-groups to choose other class groups"
                )
            c = dataclasses.replace(c, split_groups=groups[:n])
        if c.tasks is None and kind != "custom":  # custom: the file's or the function's tasks
            n = {"rotated": len(c.angles or ()), "split": len(c.split_groups or ())}.get(kind, DEFAULT_TASKS[kind])
            c = dataclasses.replace(c, tasks=n)
        c.validate()
        if c.scenario != "class" and c.class_units != "all":
            c = dataclasses.replace(c, class_units="all")  # only the class scenario has a choice of live units
        return c

    def validate(self) -> None:
        _check_choice("benchmark", self.benchmark, BENCHMARKS)
        _check_choice("scenario", self.scenario, SCENARIOS)
        _check_settings(self.strategy, self.settings)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("model", self.model, MODELS)
        _check((self.kind == "custom" and self.tasks is None) or (self.tasks is not None and 1 <= self.tasks <= MAX_TASKS),
               f"--tasks must be in 1..{MAX_TASKS}, got {self.tasks}")
        _check_choice("units", self.units, CUSTOM_UNITS)
        _check_choice("log", self.log, ("jsonl", "tensorboard", "none"))
        _check(isinstance(self.nproc, int) and 1 <= self.nproc <= 256, f"--nproc must be in 1..256, got {self.nproc}")
        _check(self.kind == "custom" or self.units == "auto", f"--units applies to --data / --stream, not {self.benchmark}")
        if self.kind == "custom":
            _check(self.pad == 0, "--pad applies to the built-in benchmarks; pad your own images before saving them")
            if self.data_file is not None:
                _check(self.data_file.lower().endswith((".npz", ".safetensors")),
                       f"--data {self.data_file}: give an .npz or .safetensors file")
        # an option stored in the config and the run id must matter to the run
        _check(self.kind == "rotated" or self.angles is None, f"--angles applies to rotated benchmarks, not {self.benchmark}")
        _check(self.kind == "split" or self.split_groups is None,
               f"--split-groups applies to split benchmarks, not {self.benchmark}")
        _check(self.kind == "split" or not self.shuffle_classes,
               f"--shuffle-classes applies to split benchmarks, not {self.benchmark}")
        _check(isinstance(self.shuffle_classes, bool), "shuffle_classes must be true or false")
        _check(self.optimizer == "sgd" or self.momentum == 0.0, f"--momentum applies to --optimizer sgd, not {self.optimizer}")
        _check(self.iterations is None or self.epochs == 1,
               "give --epochs or --iterations, not both (--iterations sets the steps per task)")
        if self.kind == "rotated":
            _check(
                len(self.angles or ()) == self.tasks,
                f"--tasks {self.tasks} does not match the {len(self.angles or ())} --angles given; drop one of them",
            )
            _check(all(math.isfinite(a) for a in self.angles), "--angles must be finite numbers of degrees")
        if self.kind == "split":
            groups = self.split_groups or ()
            _check(len(groups) == self.tasks, f"--tasks {self.tasks} does not match the {len(groups)} --split-groups")
            flat = [c for g in groups for c in g]
            _check(all(len(g) > 0 for g in groups), "--split-groups: every group needs at least one class")
            _check(len(set(flat)) == len(flat), f"--split-groups overlap: {_fmt_groups(groups)}; a class may be in one task only")
            top = N_CLASSES[self.dataset] - 1
            _check(all(0 <= c <= top for c in flat), f"--split-groups: classes must be in 0..{top}")
            if self.scenario == "domain":
                _check(len({len(g) for g in groups}) == 1, "the domain scenario needs --split-groups of equal size")
        _check(0 <= self.pad <= 64, f"--pad must be in 0..64, got {self.pad}")
        _check(math.isfinite(self.mean), "--mean must be a finite number")
        _check(math.isfinite(self.std) and self.std > 0, f"--std must be > 0, got {self.std:g}")
        _check_normalization(self.mean, self.std)
        _check(len(self.hidden) >= 1 and all(1 <= h <= MAX_WIDTH for h in self.hidden),
               f"--hidden must be positive widths up to {MAX_WIDTH:,} like 400,400, got {','.join(map(str, self.hidden))}")
        _check(math.isfinite(self.lr) and self.lr > 0, f"--lr must be > 0, got {self.lr:g}")
        _check(self.lr <= F32_MAX, f"--lr {self.lr:g} is not a float32 number (the parameters' type); give at most {F32_MAX:.3g}")
        _check(math.isfinite(self.momentum) and 0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum:g}")
        _check(1 <= self.batch_size <= 2**31 - 1, f"--batch-size must be in 1..{2**31 - 1}, got {self.batch_size}")
        _check(1 <= self.epochs <= 10**6, f"--epochs must be in 1..1000000, got {self.epochs}")
        _check(self.iterations is None or 1 <= self.iterations <= 10**12,
               f"--iterations must be in 1..{10**12}, got {self.iterations}")
        _check(0.0 <= self.val_fraction < 1.0, f"--val-fraction must be in [0, 1), got {self.val_fraction:g}")
        _check(self.train_samples is None or 1 <= self.train_samples <= 10**9,
               f"--train-samples must be a count of samples >= 1, got {self.train_samples}")
        _check(self.threads is None or 1 <= self.threads <= 1024, f"--threads must be in 1..1024, got {self.threads}")
        _check(0 <= self.seed < 2**63, f"--seed must be in 0..2**63-1, got {self.seed}")
        _check_choice("class-units", self.class_units, ("all", "seen"))
        _check_choice("augment", self.augment, AUGMENTATIONS)
        _check_choice("optimizer-state", self.optimizer_state, ("reset", "keep"))
        _check(0 <= self.checkpoint_every < 2**62, f"--checkpoint-every must be >= 0, got {self.checkpoint_every}")
        _check(isinstance(self.device, str), "--device must be a device name like cpu or cuda:0")
        check_device_name(self.device)

    # ---- serialization -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "settings":
                v = None if v is None else registry.settings_dict(self.strategy, v)
            elif f.name in ("hidden", "angles") and v is not None:
                v = list(v)
            elif f.name == "split_groups" and v is not None:
                v = [list(g) for g in v]
            d[f.name] = v
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "config") -> "RunConfig":
        """A config from its ``to_dict`` form (or a version-1 flat one, see the module docstring)."""
        if not isinstance(d, Mapping):
            raise UsageError(f"{where} must be a JSON object of config fields, got {type(d).__name__}")
        d = dict(d)
        d.pop("config_version", None)
        if "settings" not in d and any(k in d for k in LEGACY_SETTINGS):
            d = _from_legacy(d)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UsageError(f"{where}: unknown config keys: {names(unknown)} (known: {', '.join(sorted(known))})")
        strategy = registry.check_name(d.get("strategy", "naive"))
        d["strategy"] = strategy
        d["settings"] = registry.settings_from(strategy, d.get("settings"), f"{where}: settings")
        hints = typing.get_type_hints(cls)
        for k, v in list(d.items()):
            if k in ("strategy", "settings"):
                continue
            tp, optional = unwrap(hints[k])
            if v is None and optional:
                continue
            try:
                d[k] = as_type(tp, v)
            except TypeError:
                raise UsageError(f"{where}: {k}={json.dumps(v)} must be {describe(hints[k])}") from None
        return cls(**d)

    @classmethod
    def from_flat(cls, values: Mapping[str, Any], where: str = "") -> "RunConfig":
        """A config from one flat mapping of run fields and strategy settings (``{"strategy": "ewc",
        "lam": 10, "lr": 0.01}``; a composite's parts as ``"ewc.lam"``). Settings not given take the
        strategy's defaults; a setting the strategy does not have is a UsageError."""
        run_keys = {f.name for f in fields(cls)} - {"settings"}
        run = {k: v for k, v in values.items() if k in run_keys}
        given = {k: v for k, v in values.items() if k not in run_keys and k != "settings"}
        strategy = registry.check_name(run.get("strategy", "naive"))
        base = values.get("settings")
        if base is None:
            base = registry.default_settings(strategy)
        elif isinstance(base, Mapping):
            base = registry.settings_from(strategy, base, f"{where}settings")
        settings = registry.with_settings(strategy, base, given, where)
        return cls(**{**run, "strategy": strategy, "settings": settings})

    @classmethod
    def make(cls, **values: Any) -> "RunConfig":
        """``RunConfig.make(strategy="ewc", lam=10, lr=0.01)``: :meth:`from_flat` with keywords."""
        return cls.from_flat(values)

    def replace(self, **changes: Any) -> "RunConfig":
        """This config with run fields and strategy settings changed (``cfg.replace(lam=10, seed=1)``);
        with a new ``strategy``, settings not given take that strategy's defaults."""
        run = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "settings"}
        same = registry.check_name(changes.get("strategy", self.strategy)) == registry.check_name(self.strategy)
        settings = {"settings": self.settings} if same and self.settings is not None else {}
        return RunConfig.from_flat({**run, **settings, **changes})

    def flat(self) -> dict[str, Any]:
        """``to_dict`` with the settings spread out as keys (``lam``, or ``ewc.lam`` in a composite):
        the form sweeps vary and compare labels show."""
        d = self.to_dict()
        settings = d.pop("settings") or {}
        if "+" in self.strategy:
            for part, values in settings.items():
                d.update({f"{part}.{k}": v for k, v in values.items()})
        else:
            d.update(settings)
        return d

    def run_id(self) -> str:
        """``<benchmark>-<strategy>-<12 hex>``: a hash of every field that changes the results."""
        d = {k: v for k, v in self.resolved().to_dict().items()
             if k not in NOT_IN_ID and not (k in ADDED_IN_ID and v == ADDED_IN_ID[k])}
        if d.get("benchmark") == "custom" and self.data_file is not None:
            d["data_sha256"] = data_file_fingerprint(self.resolved().data_file)["sha256"]
        digest = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.benchmark}-{self.strategy}-{digest}"


def _absolute(path: str) -> str:
    from pathlib import Path

    return str(Path(path).expanduser().resolve())


_SHA_CACHE: dict[tuple, dict[str, str]] = {}


def data_file_fingerprint(path: str) -> dict[str, str]:
    """A --data file's name and sha256 (cached by path, size and modification time: the run id and
    config.json's fingerprint read the file once)."""
    import os

    from ..scenarios.custom import file_fingerprint

    try:
        st = os.stat(path)
    except OSError:
        raise UsageError(f"--data {path}: no such file (give an .npz or .safetensors file of tasks)") from None
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_fingerprint(path)
    return dict(_SHA_CACHE[key])


def _from_legacy(d: dict[str, Any]) -> dict[str, Any]:
    """A version-1 flat config: settings spread as keys, and those of other strategies present too
    (reset to their defaults). Keep the ones the strategy has."""
    d = dict(d)
    legacy = {k: d.pop(k) for k in LEGACY_SETTINGS if k in d}
    strategy = registry.check_name(d.get("strategy", "naive"))
    own = registry.setting_keys(strategy)
    d["settings"] = registry.settings_dict(
        strategy, registry.with_settings(strategy, registry.default_settings(strategy),
                                         {k: v for k, v in legacy.items() if k in own}))
    return d


MAX_WIDTH = 10**7  # units in one hidden layer (a 784-wide input already makes that 31 GB of weights)


def _check_normalization(mean: float, std: float) -> None:
    """(x − mean) / std must be a finite float32 for pixels x in [0, 1], or training fails for the inputs'
    sake (and the divergence hint would blame the learning rate)."""
    with np.errstate(over="ignore", under="ignore"):
        m, sd = np.float32(mean), np.float32(std)
    if not np.isfinite(m) or not np.isfinite(sd) or sd == 0:
        raise UsageError(f"--mean {mean:g} / --std {std:g} are not float32 numbers (the inputs' type; a std of {std:g} "
                         f"is {float(sd):g} there): give a std of at least 1e-30 and values below 3e38")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        ends = (np.float32(0.0) - m) / sd, (np.float32(1.0) - m) / sd
    if not all(np.isfinite(e) for e in ends):
        raise UsageError(f"--mean {mean:g} / --std {std:g} make the inputs (x - mean) / std overflow float32 for pixels "
                         "x in [0, 1]: use a larger --std or a smaller --mean")


def _check_settings(strategy: str, settings: Any) -> None:
    registry.check_name(strategy)
    expected = type(registry.default_settings(strategy))
    if type(settings) is not expected:
        raise UsageError(f"settings of {strategy} must be a {expected.__name__}, got {type(settings).__name__}")
    if isinstance(settings, registry.ComposeSettings):
        for part, s in zip(registry.parts(strategy), settings.parts):
            cls = registry.STRATEGIES[part].Settings
            if type(s) is not cls:
                raise UsageError(f"settings of {part} in {strategy} must be a {cls.__name__}, got {type(s).__name__}")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


def _check_choice(what: str, value, choices) -> None:
    if value not in choices:
        raise UsageError(f"unknown {what} {value!r}: choose one of {', '.join(choices)}")


def _fmt_groups(groups) -> str:
    return "/".join(",".join(str(c) for c in g) for g in groups)
