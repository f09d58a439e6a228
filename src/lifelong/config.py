"""Run configuration: one flat, validated dataclass that owns every default.

A run writes its resolved config (``config.json``) before training starts; its id is a hash of the
fields that change results, so the same experiment always gets the same id. Unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import UsageError
from .importance import FISHER_KINDS
from .models import MODELS
from .scenarios import DEFAULT_SPLIT_GROUPS as DEFAULT_GROUPS
from .scenarios import SCENARIOS
from .strategies import STRATEGIES
from .train.loop import OPTIMIZERS

# benchmark -> (data set, stream kind)
BENCHMARKS = {
    "permuted-mnist": ("mnist", "permuted"),
    "rotated-mnist": ("mnist", "rotated"),
    "split-mnist": ("mnist", "split"),
    "permuted-fashion": ("fashion-mnist", "permuted"),
    "rotated-fashion": ("fashion-mnist", "rotated"),
    "split-fashion": ("fashion-mnist", "split"),
}
STRATEGY_NAMES = tuple(STRATEGIES)
DEFAULT_TASKS = {"permuted": 10, "rotated": 5, "split": 5}
MAX_PERMUTED_TASKS = 1000

# Fields that do not change the numbers a run produces: left out of the run id.
NOT_IN_ID = ("data_dir", "download", "threads", "out", "progress", "checkpoint_every")


@dataclass(frozen=True)
class RunConfig:
    benchmark: str = "permuted-mnist"
    scenario: str | None = None  # default: domain for permuted/rotated, task for split
    tasks: int | None = None  # default: 10 permuted, 5 rotated and split
    angles: tuple[float, ...] | None = None  # rotated: degrees per task (default: evenly spaced in [0, 180))
    split_groups: tuple[tuple[int, ...], ...] | None = None  # split: classes per task
    class_units: str = "all"  # class scenario: softmax over "all" units, or those of tasks "seen" so far
    strategy: str = "naive"
    lam: float = 100.0  # strength λ of every regularizer's penalty λ/2 Σ Ω (θ − θ̄)²
    gamma: float = 1.0  # online EWC decay
    fisher: str = "exact"  # EWC / online EWC
    mc_samples: int = 1
    xi: float = 0.1  # SI damping ξ
    alpha: float = 0.9  # RWalk: weight of the newest Fisher in its moving average
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
    seed: int = 0
    threads: int | None = None
    data_dir: str | None = None
    download: bool = True
    out: str | None = None
    progress: bool = False
    checkpoint_every: int = 500  # optimizer steps between checkpoints (0: only at the end of each task)

    # ---- derived views -------------------------------------------------------------------------
    @property
    def dataset(self) -> str:
        return BENCHMARKS[self.benchmark][0]

    @property
    def kind(self) -> str:
        return BENCHMARKS[self.benchmark][1]

    def resolved(self) -> "RunConfig":
        """Fill benchmark-dependent defaults, then validate. Idempotent."""
        _check_choice("benchmark", self.benchmark, BENCHMARKS)
        kind = BENCHMARKS[self.benchmark][1]
        c = self
        if c.scenario is None:
            c = dataclasses.replace(c, scenario="task" if kind == "split" else "domain")
        if kind == "rotated" and c.angles is None:
            n = c.tasks or DEFAULT_TASKS["rotated"]
            c = dataclasses.replace(c, angles=tuple(round(180.0 * t / n, 6) for t in range(n)))
        if kind == "split" and c.split_groups is None:
            n = c.tasks or DEFAULT_TASKS["split"]
            if not 1 <= n <= len(DEFAULT_GROUPS):
                raise UsageError(
                    f"split benchmarks have at most {len(DEFAULT_GROUPS)} tasks of 2 classes, got --tasks {n}; "
                    "use --split-groups to choose other class groups"
                )
            c = dataclasses.replace(c, split_groups=DEFAULT_GROUPS[:n])
        if c.tasks is None:
            n = {"rotated": len(c.angles or ()), "split": len(c.split_groups or ())}.get(kind, DEFAULT_TASKS[kind])
            c = dataclasses.replace(c, tasks=n)
        c.validate()  # every value given is checked, even one the strategy will not use
        # Settings of other strategies do not belong to this run: reset them, so that they neither
        # change the run id nor show up as differences (``--strategy naive --lambda 5`` = naive).
        own = set(STRATEGIES[c.strategy].hyperparameters)
        others = {k for cls in STRATEGIES.values() for k in cls.hyperparameters} - own
        defaults = RunConfig()
        if c.scenario != "class":
            others.add("class_units")  # only the class scenario has a choice of live units
        return dataclasses.replace(c, **{k: getattr(defaults, k) for k in others})

    def validate(self) -> None:
        _check_choice("benchmark", self.benchmark, BENCHMARKS)
        _check_choice("scenario", self.scenario, SCENARIOS)
        _check_choice("strategy", self.strategy, STRATEGY_NAMES)
        _check_choice("fisher", self.fisher, FISHER_KINDS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("model", self.model, MODELS)
        _check(self.tasks is not None and self.tasks >= 1, f"--tasks must be >= 1, got {self.tasks}")
        if self.kind == "permuted":
            _check(self.tasks <= MAX_PERMUTED_TASKS, f"--tasks must be <= {MAX_PERMUTED_TASKS} for permuted streams")
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
            _check(all(0 <= c <= 9 for c in flat), "--split-groups: classes must be in 0..9")
            if self.scenario == "domain":
                _check(len({len(g) for g in groups}) == 1, "the domain scenario needs --split-groups of equal size")
        _check(math.isfinite(self.lam) and self.lam >= 0, f"--lambda must be >= 0, got {self.lam:g}")
        _check(math.isfinite(self.xi) and self.xi > 0, f"--xi must be > 0, got {self.xi:g}")
        _check(0.0 < self.alpha <= 1.0, f"--alpha must be in (0, 1], got {self.alpha:g}")
        _check(0 <= self.pad <= 64, f"--pad must be in 0..64, got {self.pad}")
        _check(math.isfinite(self.mean), "--mean must be a finite number")
        _check(math.isfinite(self.std) and self.std > 0, f"--std must be > 0, got {self.std:g}")
        _check(0.0 < self.gamma <= 1.0, f"--gamma must be in (0, 1], got {self.gamma:g}")
        _check(self.mc_samples >= 1, f"--mc-samples must be >= 1, got {self.mc_samples}")
        _check(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), f"--hidden must be positive widths like 400,400, got {self.hidden}")
        _check(math.isfinite(self.lr) and self.lr > 0, f"--lr must be > 0, got {self.lr:g}")
        _check(math.isfinite(self.momentum) and 0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum:g}")
        _check(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        _check(self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}")
        _check(self.iterations is None or self.iterations >= 1, f"--iterations must be >= 1, got {self.iterations}")
        _check(0.0 <= self.val_fraction < 1.0, f"--val-fraction must be in [0, 1), got {self.val_fraction:g}")
        _check(self.threads is None or self.threads >= 1, f"--threads must be >= 1, got {self.threads}")
        _check(self.seed >= 0, f"--seed must be >= 0, got {self.seed}")
        _check_choice("class-units", self.class_units, ("all", "seen"))
        _check(self.checkpoint_every >= 0, f"--checkpoint-every must be >= 0, got {self.checkpoint_every}")

    # ---- serialization -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("hidden", "angles"):
            if d[k] is not None:
                d[k] = list(d[k])
        if d["split_groups"] is not None:
            d["split_groups"] = [list(g) for g in d["split_groups"]]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UsageError(f"unknown config keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        d = dict(d)
        if d.get("hidden") is not None:
            d["hidden"] = tuple(int(h) for h in d["hidden"])
        if d.get("angles") is not None:
            d["angles"] = tuple(float(a) for a in d["angles"])
        if d.get("split_groups") is not None:
            d["split_groups"] = tuple(tuple(int(c) for c in g) for g in d["split_groups"])
        return cls(**d)

    def run_id(self) -> str:
        """``<benchmark>-<strategy>-<12 hex>``: a hash of every field that changes the results."""
        d = {k: v for k, v in self.resolved().to_dict().items() if k not in NOT_IN_ID}
        digest = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.benchmark}-{self.strategy}-{digest}"


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


def _check_choice(what: str, value, choices) -> None:
    if value not in choices:
        raise UsageError(f"unknown {what} {value!r}: choose one of {', '.join(choices)}")


def _fmt_groups(groups) -> str:
    return "/".join(",".join(str(c) for c in g) for g in groups)
