"""From a run config to the objects the library trains: the task stream, the seeded model, the strategy."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import UsageError
from ..models import build_model as _build_model
from ..scenarios import TaskStream, derived_generator, permuted, rotated, split, subsample_train
from ..strategies import Strategy, registry
from .config import RunConfig, data_file_fingerprint


def build_stream(cfg: RunConfig) -> TaskStream:
    """The task stream a (resolved) config describes; loads the data set (see lifelong.data). Its
    ``info["data"]`` is the data's fingerprint (the md5s of the files' content)."""
    if cfg.kind == "custom":
        return custom_stream(cfg)
    from ..data import load_dataset

    data = load_dataset(cfg.dataset, cfg.data_dir, download=cfg.download)
    common = dict(seed=cfg.seed, val_fraction=cfg.val_fraction, name=cfg.benchmark, pad=cfg.pad, mean=cfg.mean,
                  std=cfg.std, seen_classes_only=cfg.class_units == "seen")
    if cfg.kind == "permuted":
        stream = permuted(data, cfg.tasks, cfg.scenario, **common)
    elif cfg.kind == "rotated":
        stream = rotated(data, cfg.angles, cfg.scenario, **common)
    else:
        stream = split(data, shuffled_groups(cfg.split_groups, cfg.seed) if cfg.shuffle_classes else cfg.split_groups,
                       cfg.scenario, **common)
    if cfg.train_samples is not None:
        stream = subsample_train(stream, cfg.train_samples, cfg.seed)
    return dataclasses.replace(stream, info={**stream.info, "data": data.fingerprint()})


def custom_stream(cfg: RunConfig) -> TaskStream:
    """Your own tasks: ``cfg.data`` (a file in the layout of :mod:`lifelong.scenarios.custom`) or
    ``cfg.stream`` (``package.module:function``); ``--tasks N`` keeps the first N."""
    from ..scenarios import custom

    opts = dict(scenario=cfg.scenario, val_fraction=cfg.val_fraction, seed=cfg.seed, mean=cfg.mean, std=cfg.std,
                seen_classes_only=cfg.class_units == "seen")
    if cfg.data_file is not None:
        stream = custom.load_tasks_file(cfg.data_file, units=cfg.units, **opts)
        fingerprint = data_file_fingerprint(cfg.data_file)
    else:
        stream = custom.stream_from_entry_point(cfg.stream, seed=cfg.seed, scenario=cfg.scenario,
                                                val_fraction=cfg.val_fraction)
        if stream.scenario != cfg.scenario:
            raise UsageError(f"--stream {cfg.stream} returned a {stream.scenario}-incremental stream: pass "
                             f"--scenario {stream.scenario} (or let the function take a scenario argument)")
        if cfg.val_fraction and stream.tasks[0].val is None:
            raise UsageError(f"--stream {cfg.stream} returned no validation split: let the function take val_fraction, "
                             "or drop --val-fraction")
        fingerprint = {"stream": cfg.stream, "sha256": custom.stream_fingerprint(stream)}
    if cfg.tasks is not None:
        if cfg.tasks > len(stream):
            raise UsageError(f"--tasks {cfg.tasks}: the data holds {len(stream)} tasks")
        stream = dataclasses.replace(stream, tasks=stream.tasks[: cfg.tasks])
    if cfg.model in ("cnn", "resnet18") and len(stream.input_shape) != 3:
        raise UsageError(f"--model {cfg.model} takes images (C, H, W); the data's inputs are {stream.input_shape}: "
                         "use --model mlp")
    if cfg.train_samples is not None:
        stream = subsample_train(stream, cfg.train_samples, cfg.seed)
    return dataclasses.replace(stream, name="custom", info={**stream.info, "data": fingerprint})


def shuffled_groups(groups, seed: int) -> tuple[tuple[int, ...], ...]:
    """``groups`` with their classes assigned in a seeded random order (same group sizes): van de Ven et
    al.'s split MNIST draws which digits form each task anew for every seed."""
    flat = sorted(c for g in groups for c in g)
    perm = torch.randperm(len(flat), generator=derived_generator(seed, "classes")).tolist()
    mapping = {c: flat[p] for c, p in zip(flat, perm)}
    return tuple(tuple(mapping[c] for c in g) for g in groups)


def build_strategy(cfg: RunConfig) -> Strategy:
    """The strategy ``cfg.strategy`` with ``cfg.settings`` (a composite for ``a+b``)."""
    cfg = cfg.resolved()
    return registry.build_strategy(cfg.strategy, cfg.settings)


def parameter_count(cfg: RunConfig, input_shape: tuple[int, ...], n_outputs: int) -> int:
    """How many parameters the model of ``cfg`` has, computed without building it (an absurd --hidden
    would take the machine's memory before an error could say so)."""
    if cfg.model != "mlp":
        return sum(p.numel() for p in _build_model(cfg.model, input_shape, n_outputs, cfg.hidden).parameters())
    widths = [int(torch.tensor(input_shape).prod()), *cfg.hidden, n_outputs]
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def seeded_model(cfg: RunConfig, stream: TaskStream) -> nn.Module:
    """The model, initialized from the run's seed without touching global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_generator(cfg.seed, "model").initial_seed())
        return _build_model(cfg.model, stream.input_shape, stream.n_outputs, cfg.hidden)
