"""Run configuration: one nested, validated record of everything a run is, resolved once.

A :class:`RunConfig` has five parts, each a settings dataclass that owns its defaults and checks its
values (:mod:`lifelong.settings`), plus the seed::

    RunConfig(stream=StreamSpec(...),      which tasks          lifelong.scenarios
              model=ModelSpec(...),        which network        lifelong.models
              strategy=EWCSettings(...),   which method         lifelong.strategies (knows its strategy)
              train=TrainSettings(...),    how each task trains lifelong.train
              runtime=Runtime(...),        where and how it runs (device, folder, logs): never the result
              seed=0)

:meth:`RunConfig.resolve` fills the defaults that depend on the benchmark (scenario, tasks, angles,
class groups) once, into its own type, :class:`ResolvedRun`, which is what builds, runs and folders
take and which carries the run's id.

**Keys.** Every leaf has a flat key, the name sweeps, ``--set``, compare labels and 0.2's config files
use: the field's name (``lr``, ``benchmark``, ``hidden``), with two renames (the model's ``name`` is
``model``, the stream's ``entry_point`` is ``stream``), and a dotted one (``train.lr``). A strategy's
setting is its field name (``lam``) where that is unambiguous for the run's strategy (one part has it,
or every part that has it declares the same short flag: ``lam`` in ``ewc+l2``), and always
``<strategy>.<field>`` (``der.alpha``).

**Files.** ``config.json`` holds :meth:`RunConfig.to_record`, the nested form (config version 3);
:meth:`RunConfig.from_record` also reads the flat forms of lifelong 0.2 (version 2) and 0.1. The run
id hashes the flat record in 0.2's layout (:meth:`ResolvedRun.id_record`), so a run made by 0.2 keeps
its id: a sweep still finds it finished and ``lifelong compare`` groups it with new runs.
"""

from __future__ import annotations

import difflib
import dataclasses
import functools
import hashlib
import json
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from ..errors import UsageError, names
from ..models import ModelSpec
from ..scenarios import StreamSpec
from ..settings import Settings, _plain, coerce, describe, meta, setting, unwrap
from ..strategies import registry
from ..strategies.compose import ComposeSettings
from ..train import TrainSettings
from ..train.device import DEVICES, check_device_name
from ..train.events import LOGS

CONFIG_VERSION = 3
PARTS = ("stream", "model", "train", "runtime")
#: Flat keys that differ from their field's name.
RENAMES = {("model", "name"): "model", ("stream", "entry_point"): "stream"}
# Fields that do not change the numbers a run produces (up to floating-point rounding across devices
# and thread counts): left out of the run id.
NOT_IN_ID = ("nproc", "log", "data_file", "data_dir", "download", "threads", "device", "out", "progress", "quiet",
             "checkpoint_every", "check_every")
# Settings of version-1 (flat) configs, by the strategies that read them.
LEGACY_SETTINGS = ("lam", "gamma", "fisher", "mc_samples", "xi", "alpha")
#: Keys a sweep sets itself.
SET_BY_SWEEP = {"out": "the sweep puts each run in DIR/runs/<run id>", "seed": "list the seeds in `seeds`"}


def _device_ok(name: str) -> bool:
    try:
        check_device_name(name)
        return True
    except UsageError:
        return False


@dataclass(frozen=True)
class Runtime(Settings):
    """Where and how a run runs: nothing here changes its numbers (none of it is in the run id)."""

    part = "runtime"

    device: str = setting("auto", check=_device_ok, must=f"be one of {', '.join(DEVICES)}",
                          help="where the model, the data (uint8), the strategy's state and the optimizer live; auto "
                               "is the first CUDA GPU if there is one")
    threads: int | None = setting(None, check=lambda v: 1 <= v <= 1024, must="be in 1..1024",
                                  help="CPU threads for PyTorch (default: PyTorch's choice)")
    data_dir: str | None = setting(None, help="folder with the data files (else $LIFELONG_DATA_DIR, then the cache, "
                                              "then the download)")
    download: bool = setting(True, help="download the data set when it is not found locally")
    out: str | None = setting(None, help="run folder (default: runs/<run id>)")
    progress: bool = setting(False, help="show a progress bar (the default on a terminal); without one a run prints a "
                                         "line per task and per checkpoint")
    quiet: bool = setting(False, help="print nothing while training: no progress bar, no per-task lines")
    nproc: int = setting(1, check=lambda v: 1 <= v <= 256, must="be in 1..256",
                         help="train this one run in N data-parallel processes (gloo on CPU, nccl on CUDA; the same as "
                              "torchrun --nproc-per-node N -m lifelong run ...)")
    log: str = setting("jsonl", choices=LOGS,
                       help="jsonl: events.jsonl in the run folder (per-step loss and its terms, penalty, per-task "
                            "timings and accuracy); tensorboard: that and TensorBoard scalars; none")
    checkpoint_every: int = setting(500, check=lambda v: 0 <= v < 2**62, must="be >= 0",
                                    help="optimizer steps between checkpoints; one is also saved after every task; 0: "
                                         "only after tasks")


def _default_strategy():
    return registry.default_settings("naive")


@dataclass(frozen=True)
class RunConfig(Settings):
    """A run: its stream, model, strategy settings, training, runtime and seed (see the module docstring).
    ``RunConfig.make(strategy="ewc", lam=10, lr=0.01)`` builds one from flat keys."""

    part = "run"

    stream: StreamSpec = field(default_factory=StreamSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    strategy: Any = field(default_factory=_default_strategy)  # the strategy's settings (ComposeSettings for a+b)
    train: TrainSettings = field(default_factory=TrainSettings)
    runtime: Runtime = field(default_factory=Runtime)
    seed: int = setting(0, check=lambda v: 0 <= v < 2**63, must="be in 0..2**63-1",
                        help="seeds the stream, the model, the data order and the strategy's randomness")

    def check(self) -> None:
        for p in registry.part_settings(self.strategy) if isinstance(self.strategy, (Settings, ComposeSettings)) else [None]:
            if not isinstance(p, Settings) or getattr(p, "strategy", None) not in registry.STRATEGIES:
                self.fail("strategy", f"must be the settings of a registered strategy, got {type(p).__name__}")
        registry.check_name(self.strategy.strategy)

    @property
    def strategy_name(self) -> str:
        return self.strategy.strategy

    # ---- flat keys -------------------------------------------------------------------------------------
    @classmethod
    def make(cls, **values: Any) -> "RunConfig":
        """``RunConfig.make(strategy="ewc", lam=10, lr=0.01)``: :meth:`from_flat` with keywords."""
        return cls.from_flat(values)

    @classmethod
    def from_flat(cls, values: Mapping[str, Any], where: str = "", base: "RunConfig | None" = None) -> "RunConfig":
        """A config from flat keys (``lr``, ``train.lr``, ``lam``, ``ewc.lam``; ``strategy`` a name), on top
        of ``base`` (default: every default). Strategy settings not given keep ``base``'s when the strategy
        is the same, else take the new strategy's defaults; a key nothing has is a UsageError."""
        base = base or cls()
        values = dict(values)
        name = values.pop("strategy", None)
        settings = values.pop("settings", None)
        if name is not None and not isinstance(name, str):
            raise UsageError(f"{where}strategy must be a name like 'ewc', got {name!r}", params=("strategy",))
        name = registry.check_name(name) if name is not None else base.strategy_name
        if settings is not None:
            strategy = settings if not isinstance(settings, Mapping) else registry.settings_from_dict(
                name, settings, f"{where}settings")
        else:
            strategy = base.strategy if name == base.strategy_name else registry.default_settings(name)
        parts = {p: {} for p in PARTS}
        top: dict[str, Any] = {}
        own: dict[tuple[str, str], Any] = {}
        for key, value in values.items():
            leaf = leaf_of(key, name, where)
            if leaf[0] == "strategy":
                for part in leaf[1]:
                    own[(part, leaf[2])] = value
            elif leaf[0] is None:
                top[leaf[1]] = value
            else:
                parts[leaf[0]][leaf[1]] = value
        made = {p: getattr(base, p).replace(**v) if v else getattr(base, p) for p, v in parts.items()}
        if own:
            strategy = with_settings(strategy, own)
        return cls(**made, strategy=strategy, seed=top.get("seed", base.seed))

    def replace(self, **changes: Any) -> "RunConfig":  # type: ignore[override]
        """This config with flat keys changed (``cfg.replace(lam=10, seed=1)``); a new ``strategy`` takes its
        defaults for the settings not given."""
        made = RunConfig.from_flat(changes, base=self)
        return made.resolve() if isinstance(self, ResolvedRun) else made

    def flat(self) -> dict[str, Any]:
        """Every leaf by flat key, ``strategy`` by name and its settings as keys (``lam``; ``ewc.lam`` in a
        composite): the form sweeps vary and labels show."""
        d: dict[str, Any] = {}
        for part in PARTS:
            for k, v in getattr(self, part).as_dict().items():  # as JSON holds it (lists for tuples)
                d[RENAMES.get((part, k), k)] = v
        d["seed"] = self.seed
        d["strategy"] = self.strategy_name
        ps = registry.part_settings(self.strategy)
        for p in ps:
            for k, v in p.as_dict().items():
                d[f"{p.strategy}.{k}" if len(ps) > 1 else k] = v
        return d

    # ---- files -----------------------------------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        """The nested form of ``config.json`` (config version 3)."""
        return {"config_version": CONFIG_VERSION, **{p: getattr(self, p).as_dict() for p in ("stream", "model")},
                "strategy": {"name": self.strategy_name, "settings": self.strategy.as_dict()},
                **{p: getattr(self, p).as_dict() for p in ("train", "runtime")}, "seed": self.seed}

    @classmethod
    def from_record(cls, d: Mapping[str, Any], where: str = "config") -> "RunConfig":
        """A config from ``config.json``: the nested form of this version, or the flat forms of 0.2 and 0.1."""
        if not isinstance(d, Mapping):
            raise UsageError(f"{where} must be a JSON object of config fields, got {type(d).__name__}")
        d = {k: v for k, v in d.items() if k not in ("run_id", "data")}
        version = d.pop("config_version", None)
        if version == CONFIG_VERSION or (version is None and isinstance(d.get("stream"), Mapping)):
            unknown = sorted(set(d) - {*PARTS, "strategy", "seed"}, key=str)
            if unknown:
                raise UsageError(f"{where}: unknown keys {names(unknown)} (known: {', '.join([*PARTS, 'strategy', 'seed'])})")
            s = d.get("strategy") or {}
            if not isinstance(s, Mapping) or set(s) - {"name", "settings"}:
                raise UsageError(f"{where}: strategy must be {{\"name\": ..., \"settings\": {{...}}}}")
            name = registry.check_name(s.get("name", "naive"))
            made = {p: _PART_TYPES[p].from_dict(d.get(p), f"{where}: {p}") for p in PARTS}
            return cls(**made, strategy=registry.settings_from_dict(name, s.get("settings"), f"{where}: strategy settings"),
                       seed=d.get("seed", 0))
        if version not in (None, 2):
            raise UsageError(f"{where}: config version {version!r} is not one this lifelong reads (1, 2, 3)")
        if "settings" not in d and any(k in d for k in LEGACY_SETTINGS):
            d = _from_legacy(d)
        known = set(flat_keys())
        unknown = sorted(set(d) - known - {"strategy", "settings"}, key=str)
        if unknown:
            raise UsageError(f"{where}: unknown config keys: {names(unknown)} (known: {', '.join(sorted(known))})")
        values = {k: v for k, v in d.items() if v is not None or k in _OPTIONAL_FLAT}
        return cls.from_flat(values, f"{where}: ")

    def resolve(self) -> "ResolvedRun":
        """This config with the benchmark's defaults filled (see :meth:`StreamSpec.resolved`): what builds,
        runs and folders take. Once resolved it stays so (a ResolvedRun resolves to itself)."""
        fields_ = {f.name: getattr(self, f.name) for f in fields(self)}
        return ResolvedRun(**{**fields_, "stream": self.stream.resolved()})


@dataclass(frozen=True)
class ResolvedRun(RunConfig):
    """A :class:`RunConfig` with every default filled: the type of a run that can be built, identified and
    written. ``run_id`` is ``<benchmark>-<strategy>-<12 hex>``, a hash of every field that changes the
    results (:meth:`id_record`), computed once."""

    def check(self) -> None:
        super().check()
        if not self.stream.is_resolved:
            self.fail("stream", "is not resolved: make a ResolvedRun with RunConfig.resolve()")

    def resolve(self) -> "ResolvedRun":
        return self

    def with_data(self, fingerprint: Mapping[str, Any] | None) -> "ResolvedRun":
        """This run with the fingerprint of the data it trains on (a built stream's ``info["data"]``), so
        that its id covers those very bytes; without it :attr:`data` reads the data to find it."""
        out = dataclasses.replace(self)
        object.__setattr__(out, "_data", None if fingerprint is None else dict(fingerprint))
        return out

    @property
    def data(self) -> dict | None:
        """The fingerprint of the run's data (:meth:`StreamSpec.fingerprint`): given by :meth:`with_data`,
        else found once (this reads the data set, or calls the stream's function)."""
        if "_data" not in self.__dict__:
            fp = self.stream.fingerprint(self.seed, data_dir=self.runtime.data_dir, download=self.runtime.download)
            object.__setattr__(self, "_data", fp)
        return self.__dict__["_data"]

    def method_record(self) -> dict[str, Any]:
        """Every field that changes the results, the data aside (the flat record in 0.2's layout without
        the fields that do not): two configs with equal records are one experiment on the same data."""
        d = {k: v for k, v in self.flat().items() if k in _V2_KEYS or k in ADDED_IN_ID}  # every field, older or added
        d["settings"] = self.strategy.id_dict()
        return {k: v for k, v in d.items() if k not in NOT_IN_ID and not (k in ADDED_IN_ID and v == ADDED_IN_ID[k])}

    def id_record(self) -> dict[str, Any]:
        """What the run id hashes: the flat record in 0.2's layout without the fields that do not change
        results, and the data: a data file's or a stream function's content (sha256), or the md5s of a
        benchmark's files when they are not the published ones (the published files add nothing, so the
        ids of runs on them are those of 0.2)."""
        d = self.method_record()
        data = self.data or {}
        if "sha256" in data:
            d["data_sha256"] = data["sha256"]
        elif not data.get("canonical", True):
            d["data_md5"] = data.get("md5")
        return d

    @functools.cached_property
    def run_id(self) -> str:
        """``<benchmark>-<strategy>-<12 hex>``: the hash of :meth:`id_record`, the data included."""
        digest = hashlib.sha256(json.dumps(self.id_record(), sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.stream.benchmark}-{self.strategy_name}-{digest}"

    @property
    def dataset(self) -> str:
        return self.stream.dataset


_PART_TYPES = {"stream": StreamSpec, "model": ModelSpec, "train": TrainSettings, "runtime": Runtime}
# Run fields added after runs were made (``setting(added=True)``), by flat key: left out of the run id
# while at their default, as they are in JSON, so older runs keep their ids (strategy settings: id_dict).
ADDED_IN_ID = {RENAMES.get((part, f.name), f.name): _plain(f.default)
               for part, cls in _PART_TYPES.items() for f in fields(cls) if meta(f)["added"]}
ADDED_IN_ID["schedule"] = "tasks"  # what a resolved spec of a stream with tasks says: the runs made before it
# 0.2's config keys, in its order (the run id's layout)
_V2_KEYS = ("benchmark", "scenario", "tasks", "angles", "split_groups", "shuffle_classes", "augment", "optimizer_state",
            "class_units", "strategy", "pad", "mean", "std", "model", "hidden", "optimizer", "lr", "momentum",
            "batch_size", "epochs", "iterations", "val_fraction", "train_samples", "seed", "device", "threads",
            "data_dir", "download", "out", "progress", "data_file", "stream", "nproc", "log", "units",
            "checkpoint_every", "init", "eval_scenarios")


# ---- keys ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def flat_keys() -> dict[str, tuple[str | None, str]]:
    """Every run key (not a strategy setting): flat key -> (part, field); part None for the seed."""
    keys: dict[str, tuple[str | None, str]] = {}
    for part, cls in _PART_TYPES.items():
        for f in fields(cls):
            keys[RENAMES.get((part, f.name), f.name)] = (part, f.name)
    keys["seed"] = (None, "seed")
    return keys


_OPTIONAL_FLAT = {k for k, (p, f) in flat_keys().items() if p is not None
                  and unwrap(typing.get_type_hints(_PART_TYPES[p])[f])[1]}


def run_field(key: str) -> tuple[str | None, str] | None:
    """The (part, field) of a run key, flat (``lr``) or dotted (``train.lr``); None for another key."""
    if key in flat_keys():
        return flat_keys()[key]
    if "." in key:
        part, name = key.split(".", 1)
        if part in _PART_TYPES and name in {f.name for f in fields(_PART_TYPES[part])}:
            return part, name
    return None


def setting_parts(key: str, strategy: str) -> tuple[tuple[str, ...], str] | None:
    """The parts of ``strategy`` a setting key names and the field: ``"ewc.lam"`` -> (("ewc",), "lam"),
    ``"lam"`` -> every part with a ``lam``; None when no part has it. A bare name that parts mean
    differently (``alpha`` in ``der+lwf``: no shared flag) is a UsageError naming the dotted keys."""
    ps = registry.parts(strategy)
    if "." in key:
        part, name = key.split(".", 1)
        if part in ps and name in _fields_of(part):
            return (part,), name
        return None
    owners = [p for p in ps if key in _fields_of(p)]
    if not owners:
        return None
    if not registry.one_meaning(key, owners):
        raise UsageError(f"{key} is a setting of {' and '.join(owners)} with different meanings: say which, as "
                         f"{' or '.join(f'{p}.{key}' for p in owners)}", params=())
    return tuple(owners), key


def _fields_of(part: str) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in fields(registry.STRATEGIES[part].Settings)}


def leaf_of(key: str, strategy: str, where: str = "") -> tuple:
    """Where key ``key`` of a run of ``strategy`` goes: ``(part, field)`` for a run key, ``("strategy",
    parts, field)`` for a setting; a UsageError that lists what exists otherwise."""
    leaf = run_field(key)
    if leaf is not None:
        return leaf
    found = setting_parts(key, strategy)
    if found is not None:
        return ("strategy", *found)
    field_name = key.split(".")[-1]
    owners = [s for s, cls in registry.STRATEGIES.items() if field_name in {f.name for f in fields(cls.Settings)}]
    if owners:
        raise UsageError(f"{where}{key} is not a setting of {strategy} (it is one of {', '.join(owners)})")
    settings = [f"{p}.{f}" if len(registry.parts(strategy)) > 1 else f for p in registry.parts(strategy)
                for f in _fields_of(p)]
    known = [*flat_keys(), *settings]
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6) or [k for k in known if key in k or k in key][:3]
    if close:
        raise UsageError(f"{where}unknown key {key!r}; did you mean {' or '.join(close)}?")
    raise UsageError(f"{where}unknown key {key!r} (run keys: {', '.join(flat_keys())}; settings of {strategy}: "
                     f"{', '.join(settings) or 'none'})")


def key_type(key: str, strategy: str | None) -> Any:
    """The annotated type of ``key`` for a run of ``strategy`` (any strategy when None), or None."""
    leaf = run_field(key)
    if leaf is not None:
        part, name = leaf
        cls = RunConfig if part is None else _PART_TYPES[part]
        return typing.get_type_hints(cls)[name]
    for s in ([strategy] if strategy else list(registry.STRATEGIES)):
        try:
            found = setting_parts(key, s)
        except UsageError:
            found = None
        if found is not None:
            return typing.get_type_hints(registry.STRATEGIES[found[0][0]].Settings)[found[1]]
    return None


def applies_to(key: str, strategy: str) -> bool:
    """Whether ``key`` can change the results of ``strategy``: a run key, or one of its settings."""
    if run_field(key) is not None:
        return True
    try:
        return setting_parts(key, strategy) is not None
    except UsageError:
        return True


def coerce_key(key: str, value: Any, where: str, strategy: str | None = None) -> Any:
    """A JSON value for ``key``, as its type, or a UsageError. Keys nothing knows pass through (the
    config reports them, listing the known ones)."""
    tp = key_type(key, strategy)
    if tp is None:
        return value
    try:
        return coerce(tp, value)
    except TypeError:
        raise UsageError(f"{where}: {key}={json.dumps(value)} must be {describe(tp)}") from None


def main_hyperparameter(strategy: str) -> str | None:
    """The first setting of ``strategy`` (e.g. EWC's λ), or None if it has none."""
    ps = registry.parts(strategy)
    first = next(((p, n) for p in ps for n in _fields_of(p)), None)
    if first is None:
        return None
    return first[1] if len(ps) == 1 else f"{first[0]}.{first[1]}"


def with_settings(settings, values: Mapping[tuple[str, str], Any]):
    """``settings`` (of a plain strategy or a composite) with ``{(part, field): value}`` replaced."""
    made = []
    for p in registry.part_settings(settings):
        own = {name: v for (part, name), v in values.items() if part == p.strategy}
        made.append(p.replace(**own) if own else p)
    return made[0] if len(made) == 1 else ComposeSettings(tuple(made))


def _from_legacy(d: dict[str, Any]) -> dict[str, Any]:
    """A version-1 flat config: settings spread as keys, and those of other strategies present too
    (reset to their defaults). Keep the ones the strategy has."""
    d = dict(d)
    legacy = {k: d.pop(k) for k in LEGACY_SETTINGS if k in d}
    strategy = registry.check_name(d.get("strategy", "naive"))
    own = {k: v for k, v in legacy.items() if any(k in _fields_of(p) for p in registry.parts(strategy))}
    settings = registry.default_settings(strategy)
    settings = with_settings(settings, {(p, k): v for k, v in own.items() for p in registry.parts(strategy)
                                        if k in _fields_of(p)})
    d["settings"] = settings.as_dict()
    return d


def flat_record(config: Mapping[str, Any]) -> dict[str, Any]:
    """A ``config.json`` of any version as one flat dict (settings spread as keys: ``lam``, ``ewc.lam``),
    leniently: what compare groups and labels runs by, even when a file is not a valid config."""
    c = dict(config)
    if isinstance(c.get("stream"), Mapping) or c.get("config_version") == CONFIG_VERSION:
        flat: dict[str, Any] = {k: c[k] for k in ("run_id", "config_version", "seed", "data") if k in c}
        for part in PARTS:
            for k, v in (c.get(part) or {}).items() if isinstance(c.get(part), Mapping) else ():
                flat[RENAMES.get((part, k), k)] = v
        s = c.get("strategy") if isinstance(c.get("strategy"), Mapping) else {}
        flat["strategy"] = s.get("name")
        c = {**flat, "settings": s.get("settings")}
    c = {**ADDED_IN_ID, **c}  # a field newer than the run's config has its default there
    settings = c.pop("settings", None)
    if isinstance(settings, Mapping):
        if "+" in str(c.get("strategy")):
            for part, values in settings.items():
                if isinstance(values, Mapping):
                    c.update({f"{part}.{k}": v for k, v in values.items()})
        else:
            c.update(settings)
    return {**_added_settings(c.get("strategy")), **c}  # a setting newer than the run has its default there


def _added_settings(strategy: Any) -> dict[str, Any]:
    """The defaults of the settings added to ``strategy``'s parts after runs were made (``setting(added=
    True)``), by the keys :func:`flat_record` spreads them under; nothing for an unknown strategy."""
    names = registry.parts(strategy) if isinstance(strategy, str) else ()
    out: dict[str, Any] = {}
    for p in names:
        cls = registry.STRATEGIES.get(p)
        for f in fields(cls.Settings) if cls is not None and dataclasses.is_dataclass(cls.Settings) else ():
            if meta(f)["added"]:
                out[f"{p}.{f.name}" if len(names) > 1 else f.name] = f.default
    return out


def not_method_keys() -> set[str]:
    """Config keys that do not define a method: the seed, the run id, and the keys left out of the run id
    because they do not change the numbers."""
    return set(NOT_IN_ID) | {"seed", "run_id", "config_version"}


def check_unambiguous(key: str, strategies) -> None:
    """A UsageError when a bare setting name means different things to the strategies of one grid
    (``alpha`` across rwalk, der and lwf): the grid must say which, ``der.alpha``."""
    if "." in key or run_field(key) is not None:
        return
    owners = list(dict.fromkeys(p for s in strategies for p in registry.parts(s) if key in _fields_of(p)))
    if owners and not registry.one_meaning(key, owners):
        raise UsageError(f"{key} is a setting of {' and '.join(owners)} with different meanings: vary them apart, as "
                         f"{' and '.join(f'{p}.{key}' for p in owners)}")
