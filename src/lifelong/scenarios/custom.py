"""Your own data as a task stream: from tensors or arrays, from an ``.npz`` / ``.safetensors`` file, or
from a Python function.

Inputs per task are either **uint8 images** ``(N, H, W)`` or ``(N, C, H, W)`` (scaled to [0, 1], then
``(x − mean) / std``, like the built-in benchmarks), **float features** of any shape ``(N, ...)``
(used as given, in float32) or **token ids** ``(N, L)`` of any other integer type (int64, for a text
model such as :class:`lifelong.integrations.hf.SequenceClassifier`). Targets are integer class labels ``(N,)``.

Output units (``units``):

- ``"shared"``: a label is an output unit (label 3 is unit 3 in every task): split-style data with
  global class ids, or a domain sequence over one label set.
- ``"per-task"``: task t's labels are shifted past the units of the tasks before it (two binary tasks
  get units 0-1 and 2-3), as the built-in permuted benchmarks do in the task and class scenarios.
- ``"auto"`` (default): shared in the domain scenario, and whenever the tasks' label sets are disjoint;
  per-task when tasks reuse labels in the task or class scenario.

The task scenario masks each task's softmax to the units its labels use (a head per task); the
domain scenario shares every unit; the class scenario has every unit live (or the seen ones).

File layout (``lifelong run --data tasks.npz``; the same keys in a ``.safetensors`` file), for tasks
t = 0 … T−1::

    train_x_<t>, train_y_<t>, test_x_<t>, test_y_<t>     required for every task
    val_x_<t>, val_y_<t>                                 optional (every task or none)
    task_names                                           optional: array of T strings (npz), or
                                                         the metadata key "task_names" (JSON list)
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from .. import _io
from ..errors import LifelongError, UsageError, UserCodeError
from .benchmarks import _holdout
from .task import SCENARIOS, AsIs, Preprocess, DataSplit, Task, TaskStream

UNITS = ("auto", "shared", "per-task")
SPLITS = ("train", "val", "test")
KEY = re.compile(r"^(train|val|test)_(x|y)_(\d+)$")


def from_tensors(
    train: Sequence[tuple[Any, Any]],
    test: Sequence[tuple[Any, Any]],
    *,
    scenario: str = "task",
    val: Sequence[tuple[Any, Any]] | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
    units: str = "auto",
    names: Sequence[str] | None = None,
    name: str = "custom",
    mean: float = 0.0,
    std: float = 1.0,
) -> TaskStream:
    """A stream with one task per ``(x, y)`` pair of ``train`` (and of ``test``, ``val`` when given),
    torch tensors or NumPy arrays. ``val_fraction`` holds out a seeded share of each task's training
    data instead of ``val``. See the module docstring for inputs and output units."""
    if scenario not in SCENARIOS:
        raise UsageError(f"unknown scenario {scenario!r}: choose one of {', '.join(SCENARIOS)}")
    if units not in UNITS:
        raise UsageError(f"unknown units {units!r}: choose one of {', '.join(UNITS)}")
    if isinstance(train, tuple) and len(train) == 2 and not isinstance(train[0], (tuple, list)):
        raise UsageError("train must be a list of (x, y) pairs, one per task: [(x0, y0), (x1, y1), ...]")
    T = len(train)
    if T == 0:
        raise UsageError("the stream needs at least one task: train is empty")
    for what, given in (("test", test), ("val", val)):
        if given is not None and len(given) != T:
            raise UsageError(f"{what} has {len(given)} tasks but train has {T}: give one (x, y) pair per task")
    if val is not None and val_fraction:
        raise UsageError("give val data or a val_fraction, not both")
    if names is not None and (len(names) != T or len(set(map(str, names))) != T):
        raise UsageError(f"names must be {T} distinct task names, got {list(names)}")
    data = {"train": [_pair(p, "train", t) for t, p in enumerate(train)],
            "test": [_pair(p, "test", t) for t, p in enumerate(test)]}
    if val is not None:
        data["val"] = [_pair(p, "val", t) for t, p in enumerate(val)]
    elif val_fraction:
        data["train"], data["val"] = zip(*[_hold_out(x, y, val_fraction, seed, t) for t, (x, y) in enumerate(data["train"])])
    _check_inputs(data)
    images = data["train"][0][0].dtype == torch.uint8
    if not images and (mean != 0.0 or std != 1.0):
        raise UsageError("mean and std normalize uint8 images; float inputs are used as given (normalize them yourself)")
    labels = [set().union(*(torch.unique(data[s][t][1]).tolist() for s in data)) for t in range(T)]
    disjoint = sum(len(c) for c in labels) == len(set().union(*labels))
    per_task = units == "per-task" or (units == "auto" and scenario != "domain" and not disjoint)
    if per_task and scenario == "domain":
        raise UsageError("units='per-task' gives each task its own output units, which the domain scenario shares: "
                         "use units='shared' or another scenario")
    offsets = [0] * T
    if per_task:
        for t in range(1, T):
            offsets[t] = offsets[t - 1] + max(labels[t - 1]) + 1
    n_outputs = max(offsets[t] + max(labels[t]) + 1 for t in range(T))
    pre = Preprocess(mean=mean, std=std) if images else AsIs()
    x0 = data["train"][0][0]
    input_shape = (1, *x0.shape[1:]) if images and x0.dim() == 3 else tuple(x0.shape[1:])
    tasks = []
    for t in range(T):
        splits = {s: DataSplit(data[s][t][0], data[s][t][1] + offsets[t]) for s in data}
        classes = tuple(sorted(c + offsets[t] for c in labels[t]))
        train_units = set(torch.unique(splits["train"].targets).tolist())
        unseen = sorted(set(classes) - train_units)
        if scenario == "task" and unseen:
            raise UsageError(f"task {t}'s test/val labels {[u - offsets[t] for u in unseen][:5]} never occur in its "
                             "training labels: in the task scenario its head could never predict them")
        mask = None
        if scenario == "task":
            mask = torch.zeros(n_outputs, dtype=torch.bool)
            mask[list(classes)] = True
        tname = str(names[t]) if names is not None else f"task{t + 1}"
        tasks.append(Task(t, tname, splits["train"], splits["test"], splits.get("val"), classes, pre, mask))
    kind = "uint8 images" if images else "float" if x0.dtype.is_floating_point else "token ids"
    info = {"units": "per-task" if per_task else "shared", "inputs": kind}
    return TaskStream(name, scenario, tuple(tasks), n_outputs, input_shape, info)


def _pair(p, split: str, t: int) -> tuple[Tensor, Tensor]:
    if not isinstance(p, (tuple, list)) or len(p) != 2:
        raise UsageError(f"{split} task {t}: expected an (x, y) pair, got {type(p).__name__}")
    x, y = (_tensor(v, f"{split} task {t} {w}") for v, w in zip(p, ("inputs", "labels")))
    if x.dim() < 2:
        raise UsageError(f"{split} task {t}: inputs must be (N, ...) with one row per sample, got shape {tuple(x.shape)}")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise UsageError(f"{split} task {t}: labels must be (N,) = ({x.shape[0]},) for {x.shape[0]} inputs, "
                         f"got shape {tuple(y.shape)}")
    if x.shape[0] == 0:
        raise UsageError(f"{split} task {t} has no samples")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.dtype.is_complex:
        raise UsageError(f"{split} task {t}: labels must be integers, got {y.dtype}")
    y = y.long()
    if int(y.min()) < 0:
        raise UsageError(f"{split} task {t}: labels must be >= 0, got {int(y.min())}")
    if int(y.max()) >= 100_000:
        raise UsageError(f"{split} task {t}: label {int(y.max())} is not a class index (at most 99,999 classes)")
    if x.dtype == torch.uint8:
        if x.dim() not in (3, 4):
            raise UsageError(f"{split} task {t}: uint8 images must be (N, H, W) or (N, C, H, W), got {tuple(x.shape)}")
    elif not x.dtype.is_floating_point and not x.dtype.is_complex and x.dtype != torch.bool and x.dim() == 2:
        x = x.long()  # token ids (N, L) for a text model: used as given
        if int(x.min()) < 0:
            raise UsageError(f"{split} task {t}: token ids must be >= 0, got {int(x.min())}")
    elif x.dtype.is_floating_point:
        x = x.float()
        if not bool(torch.isfinite(x).all()):
            raise UsageError(f"{split} task {t}: the inputs hold NaN or infinite values")
    else:
        raise UsageError(f"{split} task {t}: inputs must be uint8 images, float features or (N, L) integer token ids, "
                         f"got {x.dtype} {tuple(x.shape)} (convert 0-255 integer images with .astype('uint8'))")
    return x.contiguous(), y.contiguous()


def _tensor(v, what: str) -> Tensor:
    if isinstance(v, Tensor):
        return v.detach().cpu()
    try:
        arr = np.asarray(v)
        if arr.dtype == object:
            raise TypeError("object array")
        return torch.from_numpy(np.ascontiguousarray(arr))
    except (TypeError, ValueError) as e:
        raise UsageError(f"{what}: not a numeric array or tensor ({type(v).__name__}: {e})") from None


def _hold_out(x: Tensor, y: Tensor, fraction: float, seed: int, t: int):
    keep, held = _holdout(len(y), fraction, seed + t)
    if held is None:
        raise UsageError(f"val_fraction {fraction:g} holds out no sample of task {t}'s {len(y)}: raise it")
    return (x[keep], y[keep]), (x[held], y[held])


def _check_inputs(data: dict) -> None:
    x0 = data["train"][0][0]
    for s, pairs in data.items():
        for t, (x, _) in enumerate(pairs):
            if (x.dtype == torch.uint8) != (x0.dtype == torch.uint8) or x.shape[1:] != x0.shape[1:]:
                raise UsageError(f"{s} task {t}'s inputs are {x.dtype} {tuple(x.shape[1:])} per sample but train task "
                                 f"0's are {x0.dtype} {tuple(x0.shape[1:])}: every task needs the same input type and shape")


# ---- files ----------------------------------------------------------------------------------------

def load_tasks_file(path: str | Path, **kwargs: Any) -> TaskStream:
    """A stream from an ``.npz`` or ``.safetensors`` file in the layout of the module docstring;
    ``kwargs`` go to :func:`from_tensors` (scenario, units, val_fraction, ...)."""
    path = Path(path)
    arrays, names = read_tasks_file(path)
    T = _count_tasks(arrays, path)
    pairs = {s: [(arrays[f"{s}_x_{t}"], arrays[f"{s}_y_{t}"]) for t in range(T)] for s in SPLITS if f"{s}_x_0" in arrays}
    if "val" in pairs and kwargs.get("val_fraction"):
        raise UsageError(f"{path} holds validation data (val_x_*): drop `val_fraction`", params=("val_fraction",))
    stream = from_tensors(pairs["train"], pairs["test"], val=pairs.get("val"), names=names,
                          name=kwargs.pop("name", path.stem), **kwargs)
    return stream


def read_tasks_file(path: Path) -> tuple[dict[str, Any], list[str] | None]:
    if not path.is_file():
        raise UsageError(f"{path}: no such file (give an .npz or .safetensors file of tasks)")
    suffix = path.suffix.lower()
    names = None
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
            if "task_names" in arrays:
                names = [str(n) for n in arrays.pop("task_names").tolist()]
        elif suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                arrays = {k: f.get_tensor(k) for k in f.keys()}
                meta = f.metadata() or {}
            if "task_names" in meta:
                names = _io.loads(meta["task_names"])
                if not isinstance(names, list):
                    raise ValueError("metadata task_names is not a JSON list")
        else:
            raise UsageError(f"{path}: unknown file type {suffix or '(none)'}; give an .npz or .safetensors file")
    except UsageError:
        raise
    except ValueError as e:  # pickled object arrays, a broken zip, a bad header
        raise UsageError(f"{path}: cannot read it as {suffix[1:]} ({str(e).splitlines()[0][:120]}); "
                         "write numeric arrays only (np.savez(path, train_x_0=..., ...))") from None
    except Exception as e:  # zipfile / safetensors raise their own kinds for damaged files
        raise UsageError(f"{path}: damaged or not a {suffix[1:]} file ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:120] if str(e) else ''})") from None
    return arrays, names


def _count_tasks(arrays: dict, path: Path) -> int:
    found: dict[tuple[str, str], set[int]] = {}
    for k in arrays:
        m = KEY.match(k)
        if not m:
            raise UsageError(f"{path}: unknown key {k!r}; keys are train_x_<t>, train_y_<t>, test_x_<t>, "
                             "test_y_<t> (val_x_<t>, val_y_<t> optional) and task_names")
        found.setdefault((m[1], m[2]), set()).add(int(m[3]))
    train = found.get(("train", "x"), set())
    if not train:
        raise UsageError(f"{path}: no train_x_0: the file holds no tasks in lifelong's layout")
    T = max(train) + 1
    for s in SPLITS:
        for w in "xy":
            have = found.get((s, w), set())
            if s == "val" and not found.get(("val", "x")) and not found.get(("val", "y")):
                continue
            missing = sorted(set(range(T)) - have)
            extra = sorted(have - set(range(T)))
            if missing:
                raise UsageError(f"{path}: {s}_{w}_{missing[0]} is missing ({T} tasks from train_x_0 to "
                                 f"train_x_{T - 1}; every task needs train_x/y and test_x/y)")
            if extra:
                raise UsageError(f"{path}: {s}_{w}_{extra[0]} has no train_x_{extra[0]} (tasks must be numbered 0..T-1)")
    return T


def save_tasks_file(path: str | Path, train, test, val=None, names: Sequence[str] | None = None) -> Path:
    """Write tasks (lists of (x, y), as for :func:`from_tensors`) in the file layout, by suffix."""
    path = Path(path)
    arrays: dict[str, Any] = {}
    for s, pairs in (("train", train), ("test", test), ("val", val)):
        for t, (x, y) in enumerate(pairs or ()):
            arrays[f"{s}_x_{t}"], arrays[f"{s}_y_{t}"] = _tensor(x, s), _tensor(y, s)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in arrays.items()}, str(path),
                  metadata={"task_names": json.dumps(list(names))} if names else None)
    else:
        np.savez(path, **{k: v.numpy() for k, v in arrays.items()},
                 **({"task_names": np.array(list(names))} if names else {}))
    return path


def file_fingerprint(path: str | Path) -> dict[str, str]:
    """The file's name and sha256: what identifies a data file wherever it lies."""
    path = Path(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"file": path.name, "sha256": h.hexdigest()}


_SHA_CACHE: dict[tuple, dict[str, str]] = {}


def data_file_fingerprint(path: str | Path) -> dict[str, str]:
    """:func:`file_fingerprint`, cached by path, size and modification time (a run id and a config record
    read the file once)."""
    import os

    try:
        st = os.stat(path)
    except OSError:
        raise UsageError(f"data_file={path}: no such file (give an .npz or .safetensors file of tasks)",
                         params=("data_file",)) from None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_fingerprint(path)
    return dict(_SHA_CACHE[key])


def stream_fingerprint(stream: TaskStream) -> str:
    """sha256 over every task's tensors and the stream's shape (a stream from a Python function)."""
    h = hashlib.sha256(json.dumps([stream.scenario, stream.n_outputs, list(stream.input_shape),
                                   [list(t.classes) for t in stream]]).encode())
    for t in stream:
        for s in (t.train, t.val, t.test):
            if s is not None:
                for a in (s.images, s.targets):
                    h.update(a.cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ---- Python entry points --------------------------------------------------------------------------

def entry_point(spec: str) -> Callable[..., Any]:
    """``package.module:function`` -> the function (imported)."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise UsageError(f"{spec!r}: give package.module:function (a function returning a TaskStream)")
    mod, fn = spec.split(":")
    try:
        module = importlib.import_module(mod)
    except ImportError as e:
        raise UsageError(f"{spec}: cannot import {mod} ({e}); is it on PYTHONPATH or installed?") from None
    f = getattr(module, fn, None)
    if not callable(f):
        raise UsageError(f"{spec}: {mod} has no function {fn}")
    return f


def stream_from_entry_point(spec: str, **offered: Any) -> TaskStream:
    """Call ``package.module:function`` with those of ``offered`` (seed, scenario, val_fraction) its
    signature names (all of them with ``**kwargs``) and check that it returns a TaskStream."""
    f = entry_point(spec)
    try:
        params = inspect.signature(f).parameters
        takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
        kwargs = {k: v for k, v in offered.items() if takes_all or k in params}
    except (TypeError, ValueError):
        kwargs = {}
    try:
        stream = f(**kwargs)
    except LifelongError as e:  # the library's own one-line error, raised inside their function
        raise UserCodeError(f"{spec}: {e}") from e
    except Exception as e:  # noqa: BLE001 - their code: say it is theirs, keep its traceback as the cause
        text = str(e).splitlines()[0][:200] if str(e) else ""
        raise UserCodeError(f"{spec} raised {type(e).__name__}{': ' + text if text else ''} (in your function: "
                            "the error's cause holds its traceback)") from e
    if not isinstance(stream, TaskStream):
        raise UsageError(f"{spec} returned {type(stream).__name__}, not a TaskStream "
                         "(build one with lifelong.TaskStream.from_tensors)")
    return stream
