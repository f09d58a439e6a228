"""Checkpoints without pickle: one safetensors file, JSON metadata in its header, written atomically.

A checkpoint holds everything a :class:`~lifelong.train.Learner` needs to continue exactly where it
stopped; the Learner writes and reads it (``Learner.state_dict``, ``load_state_dict``), for its own
``save`` / ``load`` and for ``lifelong run`` alike:

    model.<name>            model parameters and buffers
    optim.<i>.<key>         optimizer state tensors (Adam's step, exp_avg, exp_avg_sq, ...)
    strategy.<key>          the strategy's state_dict (Fisher sums and anchors, SI accumulators, ...)
    rng.order, rng.strategy torch.Generator states (data order at the start of the current epoch; the
                            strategy's generator: MC Fisher labels, replay sampling)

and, as JSON under the header key ``lifelong``: the format version, the sha256 of every tensor and of
the metadata itself (checked on load), ``progress`` (the task under way or next, its step, the steps of
the tasks done, the accuracy matrices so far, timings: :func:`check_progress` checks it), the
strategy's name, the optimizer's non-tensor state (param groups), and what the caller adds (a run
folder's id, config and data fingerprint). Loading parses no code: safetensors is a flat header + raw bytes, so
opening a checkpoint from someone else can't execute anything. The file is replaced atomically
(temporary file, fsync, rename), so a crash during a save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .. import _io
from .._io import atomic_write_bytes
from ..errors import UsageError

FORMAT = 2  # 2: lifelong 0.2 (rng.strategy; strategy state of the new hooks). 1: lifelong 0.1
HEADER_KEY = "lifelong"
CHECKPOINT_FILE = "checkpoint.safetensors"


class CheckpointError(UsageError):
    """A checkpoint that is missing, corrupt, or does not fit the model."""


def tensor_digest(t: Tensor) -> str:
    """sha256 of a tensor's bytes (with its dtype and shape): what a checkpoint stores to prove it intact."""
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _meta_digest(meta: Mapping[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=True).encode()).hexdigest()


def save_checkpoint(path: str | Path, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> Path:
    """Write ``tensors`` (flat, prefixed names) and JSON ``meta`` to ``path`` atomically, with the sha256
    of every tensor and of the metadata in the header (checked by :func:`load_checkpoint`)."""
    from safetensors.torch import save

    # safetensors stores each tensor's own bytes: no shared storage, contiguous layout.
    flat = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    body = {"format": FORMAT, **meta, "tensor_sha256": {k: tensor_digest(v) for k, v in flat.items()}}
    body["meta_sha256"] = _meta_digest(body)
    header = json.dumps(body, allow_nan=True)
    return atomic_write_bytes(path, save(flat, metadata={HEADER_KEY: header}))


def read_header(path: str | Path) -> dict[str, Any]:
    """A checkpoint's metadata alone (the header, not the tensors); FileNotFoundError if absent,
    CheckpointError if it is not a readable lifelong checkpoint."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or n > 100_000_000:
                raise ValueError("bad header length")
            meta = _io.loads(_io.loads(f.read(n))["__metadata__"][HEADER_KEY])
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a lifelong checkpoint ({_first_line(e)})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path} is corrupt: its metadata is not an object")
    return meta


def load_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint; raise CheckpointError with a one-line reason if it is missing or corrupt."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}: nothing was saved there yet") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror}") from None
    try:
        tensors = load(data)
        header = _header(data)
        meta = _io.loads(header[HEADER_KEY])
    except (SafetensorError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a lifelong checkpoint ({_first_line(e)}); "
            "delete it to start the run again"
        ) from None
    if meta.get("format") == 1:
        raise CheckpointError(
            f"checkpoint {path} was written by lifelong 0.1, whose strategy state this version does not read; "
            "start the run again (`overwrite=True`)"
        )
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {meta.get('format')!r}, this version reads {FORMAT}")
    _verify(path, tensors, meta)
    return tensors, meta


def _verify(path: Path, tensors: Mapping[str, Tensor], meta: dict) -> None:
    """Every tensor and the metadata must hash to what the header recorded when the file was written."""
    damaged = f"checkpoint {path} is damaged"
    digests = meta.get("tensor_sha256")
    if not isinstance(digests, dict) or meta.get("meta_sha256") != _meta_digest(meta):
        raise CheckpointError(f"{damaged}: its metadata does not match its checksum; delete it (the run restarts "
                              "from the beginning) or restore it from a backup")
    missing, extra = sorted(set(digests) - set(tensors)), sorted(set(tensors) - set(digests))
    if missing or extra:
        what = f"tensor {missing[0]!r} is missing" if missing else f"tensor {extra[0]!r} was added"
        raise CheckpointError(f"{damaged}: {what}; delete it (the run restarts from the beginning)")
    for k, t in tensors.items():
        if tensor_digest(t) != digests[k]:
            raise CheckpointError(f"{damaged}: tensor {k!r} does not match its checksum; delete it (the run restarts "
                                  "from the beginning) or restore it from a backup")


def _header(data: bytes) -> dict:
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or n > len(data) - 8:
        raise ValueError("bad header length")
    return _io.loads(data[8 : 8 + n])["__metadata__"]


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200]


def split_prefix(tensors: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors under ``prefix.``, with the prefix removed."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def with_prefix(tensors: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def load_model_state(model: nn.Module, state: Mapping[str, Tensor], source: str = "checkpoint") -> None:
    """Copy ``state`` into ``model`` after checking names and shapes; name the first mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise CheckpointError(f"{source} does not fit this model: {what} ({len(missing)} missing, {len(extra)} unexpected)")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{source} does not fit this model: {k!r} has shape {tuple(state[k].shape)} in the checkpoint, "
                f"{tuple(v.shape)} in the model (another `hidden`, `model` or `benchmark`?)", params=("hidden", "model", "benchmark")
            )
        if state[k].dtype != v.dtype:
            raise CheckpointError(f"{source} does not fit this model: {k!r} is {state[k].dtype} in the checkpoint, "
                                  f"{v.dtype} in the model")
    model.load_state_dict(dict(state))


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (``<param index>.<key>``) and JSON metadata."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, entry in sd["state"].items():
        for key, val in entry.items():
            if isinstance(val, Tensor):
                tensors[f"{idx}.{key}"] = val
            else:
                scalars[f"{idx}.{key}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer_state(opt: torch.optim.Optimizer, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    """Load what :func:`optimizer_tensors` split, after checking it fits ``opt``: every parameter index
    in range, every per-parameter tensor shaped like its parameter, the param groups' structure."""
    bad = "checkpoint optimizer state does not fit"
    if not isinstance(meta, Mapping) or not isinstance(meta.get("scalars"), dict) or not isinstance(meta.get("param_groups"), list):
        raise CheckpointError(f"{bad}: its metadata lacks scalars or param_groups")
    groups = meta["param_groups"]
    if len(groups) != len(opt.param_groups) or any(
            not isinstance(g, dict) or set(g) != set(h) for g, h in zip(groups, opt.param_groups)):
        raise CheckpointError(f"{bad}: it is the state of another optimizer (its settings "
                              f"{sorted(groups[0]) if groups and isinstance(groups[0], dict) else groups!r})")
    params = [p for g in opt.param_groups for p in g["params"]]
    state: dict[int, dict[str, Any]] = {}
    for name, val in list(tensors.items()) + list(meta["scalars"].items()):
        idx, _, key = name.partition(".")
        if not idx.isdigit() or int(idx) >= len(params) or not key:
            raise CheckpointError(f"{bad}: entry {name!r} names no parameter of this model ({len(params)} parameters)")
        if isinstance(val, Tensor) and val.dim() > 0 and tuple(val.shape) != tuple(params[int(idx)].shape):
            raise CheckpointError(f"{bad}: {name!r} has shape {tuple(val.shape)}, its parameter "
                                  f"{tuple(params[int(idx)].shape)}")
        state.setdefault(int(idx), {})[key] = val
    try:
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:
        raise CheckpointError(f"{bad}: {_first_line(e)}") from None


def upgrade(meta: Mapping[str, Any], tasks: int) -> dict[str, Any]:
    """The metadata of a checkpoint in today's layout: a ``Learner.save`` file of lifelong 0.2 kept its
    position under ``learner`` (rows, step, task index), which becomes ``progress``."""
    meta = dict(meta)
    old = meta.get("learner")
    if "progress" not in meta and isinstance(old, dict):
        try:
            rows = [list(r) for r in old["rows"]]
            done = int(old["task_index"]) + 1
            full = rows + [[0.0] * tasks] * (tasks + 1 - len(rows))
            meta["progress"] = {"task": done, "step": 0, "steps_per_task": [1] * done, "R": full, "R_val": None,
                                "timings": {k: [0.0] * done for k in ("train_seconds", "after_task_seconds", "eval_seconds")},
                                "partial_train_seconds": 0.0, "elapsed_seconds": 0.0}
            meta["strategy"] = old.get("strategy")
        except (KeyError, TypeError, ValueError):
            raise CheckpointError("checkpoint holds a damaged Learner position (rows, task_index)") from None
    if not isinstance(meta.get("progress"), dict):
        raise CheckpointError("checkpoint holds no progress record: it is not a lifelong checkpoint of a stream")
    return meta


def check_progress(where: str, P: Any, stream, strategy, settings) -> None:
    """The progress record of a checkpoint: required keys, types and ranges for ``stream``; a step within
    the task's steps (for a strategy whose training data do not depend on its state)."""
    from ..strategies import Context
    from .loop import steps_per_task

    T, has_val = len(stream), stream[0].val is not None
    bad = f"{where} has an invalid progress record"

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise CheckpointError(f"{bad}: {what}; delete it (the run restarts from the beginning)")

    need(isinstance(P, dict), "it is not an object")
    for key in ("task", "step", "steps_per_task", "R", "R_val", "timings", "partial_train_seconds", "elapsed_seconds"):
        need(key in P, f"{key!r} is missing")
    task, step = P["task"], P["step"]
    # task T, step 0: every task trained (the checkpoint after the last one), the results not written yet
    need(type(task) is int and 0 <= task <= T, f"task {task!r} is not in 0..{T}")
    need(type(step) is int and step >= 0, f"step {step!r} is not a count of steps")
    if task < T and step and not strategy.data_from_state:  # else: the task checks it with the state loaded
        ctx = Context(None, None, stream=stream, task_index=task, settings=settings)  # type: ignore[arg-type]
        steps = steps_per_task(strategy.training_tasks(ctx), settings)[1]
        # step == steps: saved after the task's last step, before its end (after_task, the row) was reached
        need(step <= steps, f"step {step} is past the {steps} steps of task {task + 1}")
    elif task == T:
        need(step == 0, f"step {step} after the last task")
    spt = P["steps_per_task"]
    need(isinstance(spt, list) and len(spt) == task and all(type(n) is int and n >= 0 for n in spt),
         f"steps_per_task must list {task} counts of steps")  # 0: a task the strategy trains nothing on

    def matrix(R, name: str) -> None:
        need(isinstance(R, list) and len(R) == T + 1 and all(isinstance(r, list) and len(r) == T for r in R),
             f"{name} must be {T + 1} rows of {T} accuracies")
        need(all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for r in R for v in r),
             f"{name} holds values outside [0, 1]")

    matrix(P["R"], "R")
    if getattr(stream, "task_free", False):
        from ..eval.anytime import check_point

        A = P.get("anytime")
        need(isinstance(A, dict) and {"samples", "next", "points"} <= set(A) and isinstance(A["points"], list),
             "a task-free run's anytime record (samples, next, points) is missing")
        need(type(A["samples"]) is int and A["samples"] >= 0 and type(A["next"]) is int and A["next"] > 0,
             "anytime samples and next must be counts")
        seconds = A.get("seconds", 0.0)
        need(isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and 0 <= seconds < float("inf"),
             "anytime seconds must be a number of seconds")
        problems = [check_point(p) for p in A["points"]]
        need(not any(problems), f"an anytime point is invalid: {next((p for p in problems if p), '')}")
        need(all(len(p["groups"]) == stream.timeline.n_groups for p in A["points"]),
             f"anytime points must hold {stream.timeline.n_groups} group accuracies")
    else:
        need(P.get("anytime") is None, "an anytime record is set for a stream with tasks")
    evals = tuple(getattr(stream, "eval_scenarios", ()))
    if evals:
        need(isinstance(P.get("R_eval"), dict) and set(P["R_eval"]) == set(evals),
             f"R_eval must hold one matrix per evaluation scenario ({', '.join(evals)})")
        for e in evals:
            matrix(P["R_eval"][e], f"R_eval[{e}]")
    else:
        need(P.get("R_eval") is None, "R_eval is set for a run evaluated in its own scenario only")
    if has_val:
        matrix(P["R_val"], "R_val")
    else:
        need(P["R_val"] is None, "R_val is set for a run without a validation split")
    timings = P["timings"]
    need(isinstance(timings, dict) and set(timings) == {"train_seconds", "after_task_seconds", "eval_seconds"}
         and all(isinstance(v, list) and len(v) == task and all(isinstance(x, (int, float)) and x >= 0 for x in v)
                 for v in timings.values()), f"timings must hold {task} non-negative times each")
    for key in ("partial_train_seconds", "elapsed_seconds"):
        need(isinstance(P[key], (int, float)) and not isinstance(P[key], bool) and 0 <= P[key] < float("inf"),
             f"{key} is not a duration")
