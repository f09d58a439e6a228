"""Your own data: TaskStream.from_tensors, task files (.npz / .safetensors, `lifelong run --data`) and
Python entry points (`--stream module:function`), with one-line errors for bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from lifelong import TaskStream
from lifelong.cli import console_main, main
from lifelong.data import load_dataset
from lifelong.errors import UsageError
from lifelong.models import Heads, mlp
from lifelong.scenarios import batches, save_tasks_file, split_classes as split
from lifelong.strategies import EWC
from lifelong.train import TrainSettings, run_stream
from tests.helpers import TINY

FAST = ["--hidden", "16", "--iterations", "6", "--threads", "1", "--no-progress"]
GROUPS = ((0, 1), (2, 3), (4, 5))


def mnist():
    d = load_dataset("mnist", TINY, download=False)
    return tuple(torch.as_tensor(a) for a in (d.train_images, d.train_labels, d.test_images, d.test_labels))


def by_groups(groups=GROUPS, local=False):
    xs, ys, xt, yt = mnist()

    def pick(x, y, g):
        m = (y[:, None] == torch.tensor(g)).any(1)
        return x[m], (y[m] - min(g)) if local else y[m]

    return [pick(xs, ys, g) for g in groups], [pick(xt, yt, g) for g in groups]


def test_from_tensors_of_split_groups_is_the_built_in_split_stream_to_the_last_bit():
    """Same images, targets, heads; so run_stream gives the same matrix for both."""
    train, test = by_groups()
    mine = TaskStream.from_tensors(train, test, scenario="task")
    d = load_dataset("mnist", TINY, download=False)
    theirs = split(d, GROUPS, "task")
    assert mine.n_outputs == theirs.n_outputs == 6 and mine.input_shape == theirs.input_shape == (1, 28, 28)
    assert mine.info["units"] == "shared"  # disjoint labels: a label is a unit
    for a, b in zip(mine, theirs):
        assert a.classes == b.classes and torch.equal(a.mask, b.mask)
        for s in ("train", "test"):
            xa, ya, ta, _ = next(batches([a], s, batch_size=10_000))
            xb, yb, tb, _ = next(batches([b], s, batch_size=10_000))
            assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ta, tb)
    results = []
    for stream in (mine, theirs):
        torch.manual_seed(0)
        results.append(run_stream(mlp(784, (16,), 6), stream, EWC(10.0), TrainSettings("sgd", 0.1, iterations=8),
                                  device="cpu").accuracy_matrix)
    assert results[0] == results[1]


def test_units_auto_shared_per_task_and_the_heads_they_make():
    train, test = by_groups(local=True)  # every task labels its classes 0 and 1
    task = TaskStream.from_tensors(train, test, scenario="task")
    assert task.info["units"] == "per-task" and task.n_outputs == 6
    assert [t.classes for t in task] == [(0, 1), (2, 3), (4, 5)]
    assert [t.mask.nonzero().flatten().tolist() for t in task] == [[0, 1], [2, 3], [4, 5]]
    assert torch.equal(task[2].train.targets, train[2][1] + 4)
    cls = TaskStream.from_tensors(train, test, scenario="class")
    assert cls.n_outputs == 6 and all(t.mask is None for t in cls) and not Heads.of(cls).per_task
    dom = TaskStream.from_tensors(train, test, scenario="domain")
    assert dom.n_outputs == 2 and dom.info["units"] == "shared" and all(t.classes == (0, 1) for t in dom)
    shared = TaskStream.from_tensors(train, test, scenario="task", units="shared")
    assert shared.n_outputs == 2 and all(t.mask.tolist() == [True, True] for t in shared)
    seen = TaskStream.from_tensors(train, test, scenario="class").with_class_units("seen")
    assert Heads.of(seen).live(0, 0).nonzero().flatten().tolist() == [0, 1]


def test_float_features_numpy_arrays_names_and_validation_splits():
    g = np.random.default_rng(0)
    train = [(g.normal(size=(40, 5)).astype(np.float64), g.integers(0, 3, 40)) for _ in range(2)]
    test = [(g.normal(size=(10, 5)), g.integers(0, 3, 10)) for _ in range(2)]
    s = TaskStream.from_tensors(train, test, scenario="domain", names=["winter", "summer"], val_fraction=0.25)
    assert s.input_shape == (5,) and s.task_names == ["winter", "summer"] and s.n_outputs == 3
    assert len(s[0].train) == 30 and len(s[0].val) == 10
    x, y, _, _ = next(batches([s[1]], "test", batch_size=100))
    assert x.dtype == torch.float32 and torch.equal(x, torch.as_tensor(test[1][0]).float())  # used as given
    torch.manual_seed(0)
    r = run_stream(torch.nn.Sequential(torch.nn.Linear(5, 3)), s, EWC(1.0), TrainSettings("sgd", 0.1, iterations=3))
    assert len(r.val_accuracy_matrix) == 3
    s2 = TaskStream.from_tensors(train, test, scenario="domain", val=test)
    assert torch.equal(s2[0].val.targets, torch.as_tensor(test[0][1]))


X, Y = torch.zeros(4, 28, 28, dtype=torch.uint8), torch.tensor([0, 1, 0, 1])


@pytest.mark.parametrize("train, test, kwargs, message", [
    ([], [], {}, "at least one task"),
    ((X, Y), [(X, Y)], {}, "list of \\(x, y\\) pairs"),
    ([(X, Y)], [], {}, "test has 0 tasks but train has 1"),
    ([(X, Y)], [(X, Y)], {"scenario": "tasks"}, "unknown scenario 'tasks'"),
    ([(X, Y)], [(X, Y)], {"units": "own"}, "unknown units"),
    ([(X, Y[:3])], [(X, Y)], {}, "labels must be \\(N,\\) = \\(4,\\)"),
    ([(X, Y.float())], [(X, Y)], {}, "labels must be integers"),
    ([(X, Y - 1)], [(X, Y)], {}, "labels must be >= 0"),
    ([(X.int(), Y)], [(X, Y)], {}, "uint8 images, float features or \\(N, L\\) integer token ids"),
    ([(X.float().fill_(float("nan")), Y)], [(X.float(), Y)], {}, "NaN or infinite"),
    ([(X, Y)], [(X[:, :20], Y)], {}, "same input type and shape"),
    ([(X, Y)], [(X.float(), Y)], {}, "same input type and shape"),
    ([(X[:0], Y[:0])], [(X, Y)], {}, "no samples"),
    ([(X, Y)], [(X, Y + 2)], {"scenario": "task", "units": "shared"}, "never occur in its training labels"),
    ([(X, Y), (X, Y)], [(X, Y), (X, Y)], {"scenario": "domain", "units": "per-task"}, "domain scenario shares"),
    ([(X.float(), Y)], [(X.float(), Y)], {"mean": 0.5}, "normalize them yourself"),
    ([(X, Y)], [(X, Y)], {"names": ["a", "b"]}, "names must be 1 distinct"),
    ([(X, Y)], [(X, Y)], {"val_fraction": 0.01}, "holds out no sample"),
    ([("abc", Y)], [(X, Y)], {}, "inputs must be|not a numeric"),
])
def test_bad_tensors_are_one_line_usage_errors(train, test, kwargs, message):
    with pytest.raises(UsageError, match=message) as e:
        TaskStream.from_tensors(train, test, **kwargs)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_a_task_file_round_trips_to_the_same_stream(tmp_path, suffix):
    train, test = by_groups()
    path = save_tasks_file(tmp_path / f"tasks{suffix}", train, test, names=["zero-one", "two-three", "four-five"])
    a, b = TaskStream.from_file(path, scenario="task"), TaskStream.from_tensors(train, test, scenario="task")
    assert a.task_names == ["zero-one", "two-three", "four-five"] and a.name == "tasks"
    for ta, tb in zip(a, b):
        assert torch.equal(ta.train.images, tb.train.images) and torch.equal(ta.test.targets, tb.test.targets)


def bad_files(tmp):
    train, test = by_groups(GROUPS[:2])
    good = {"train_x_0": train[0][0].numpy(), "train_y_0": train[0][1].numpy(), "test_x_0": test[0][0].numpy(),
            "test_y_0": test[0][1].numpy()}
    cases = []

    def npz(name, arrays, message):
        p = tmp / f"{name}.npz"
        np.savez(p, **arrays)
        cases.append((p, message))

    npz("missing", {k: v for k, v in good.items() if k != "test_y_0"}, "test_y_0 is missing")
    npz("unknown", {**good, "labels": good["train_y_0"]}, "unknown key 'labels'")
    npz("gap", {**good, "train_x_2": good["train_x_0"], "train_y_2": good["train_y_0"]}, "train_x_1 is missing|_1 is missing")
    npz("none", {"other_x": good["train_x_0"]}, "unknown key")
    npz("objects", {**good, "task_names": np.array([{"a": 1}], dtype=object)}, "numeric arrays only")
    npz("floats", {**good, "train_y_0": good["train_y_0"].astype(np.float32)}, "labels must be integers")
    damaged = tmp / "damaged.npz"
    damaged.write_bytes(b"PK\x03\x04 not a zip at all")
    cases.append((damaged, "damaged|cannot read"))
    wrong = tmp / "tasks.csv"
    wrong.write_text("1,2\n")
    cases.append((wrong, "--data must be an .npz or .safetensors file"))
    cases.append((tmp / "absent.npz", "no such file"))
    st = tmp / "bad.safetensors"
    st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    cases.append((st, "damaged|cannot read"))
    return cases


def test_bad_task_files_are_one_line_errors_with_exit_code_2(tmp_path, capsys):
    for path, message in bad_files(tmp_path):
        code = console_main(["run", "--data", str(path), "--out", str(tmp_path / "run"), *FAST])
        err = capsys.readouterr().err.strip()
        assert code == 2, (path.name, err)
        assert len(err.splitlines()) == 1 and __import__("re").search(message, err), (path.name, err)
        assert not (tmp_path / "run").exists()  # checked before the run folder is made


def test_lifelong_run_on_a_file_matches_the_python_api_and_ids_hash_content_not_path(tmp_path):
    train, test = by_groups()
    path = save_tasks_file(tmp_path / "tasks.npz", train, test)
    r = main(["run", "--data", str(path), "--strategy", "ewc", "--out", str(tmp_path / "a"), *FAST])
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["stream"]["benchmark"] == "custom" and cfg["stream"]["data_file"] == str(path.resolve())
    assert cfg["data"]["sha256"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    assert r.task_names == ["task1", "task2", "task3"] and len(r.accuracy_matrix) == 4
    moved = tmp_path / "elsewhere" / "copy.npz"
    moved.parent.mkdir()
    shutil.copy(path, moved)
    r2 = main(["run", "--data", str(moved), "--strategy", "ewc", "--out", str(tmp_path / "b"), *FAST])
    assert r2.run_id == r.run_id and r2.accuracy_matrix == r.accuracy_matrix
    other = save_tasks_file(tmp_path / "two.npz", train[:2], test[:2])
    r3 = main(["run", "--data", str(other), "--strategy", "ewc", "--out", str(tmp_path / "c"), *FAST])
    assert r3.run_id != r.run_id
    r4 = main(["run", "--data", str(path), "--tasks", "2", "--strategy", "ewc", "--out", str(tmp_path / "d"), *FAST])
    # --tasks 2 keeps the first two tasks, and the file's output units (6, as split-mnist --tasks 2 keeps 10)
    assert r4.task_names == ["task1", "task2"] and r4.n_parameters == r.n_parameters


def test_a_sweep_and_compare_run_on_custom_data(tmp_path):
    train, test = by_groups(local=True)
    path = save_tasks_file(tmp_path / "tasks.safetensors", train, test)
    res = main(["sweep", "--data", str(path), "--scenario", "class", "--strategies", "naive,er", "--seeds", "0,1",
                "--out", str(tmp_path / "s"), *FAST])
    assert [r["status"] for r in res["runs"]] == ["done"] * 4
    assert all(r["id"].startswith("custom-") for r in res["runs"])
    out = main(["compare", str(tmp_path / "s"), "--out", str(tmp_path / "cmp")])
    assert out is not None and any((tmp_path / "cmp").iterdir())


def test_a_stream_from_a_python_function(tmp_path, monkeypatch):
    train, test = by_groups()
    torch.save({"train": train, "test": test}, tmp_path / "tensors.pt")
    (tmp_path / "mytasks.py").write_text(
        "import torch\nfrom lifelong import TaskStream\n"
        f"D = torch.load({str(tmp_path / 'tensors.pt')!r})\n"
        "def make(seed, scenario='task'):\n    return TaskStream.from_tensors(D['train'], D['test'], scenario=scenario)\n"
        "def domain_only():\n    return TaskStream.from_tensors(D['train'], D['test'], scenario='domain', units='shared')\n"
        "def not_a_stream():\n    return [1, 2]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    r = main(["run", "--stream", "mytasks:make", "--strategy", "si", "--out", str(tmp_path / "a"), *FAST])
    path = save_tasks_file(tmp_path / "same.npz", train, test)
    r2 = main(["run", "--data", str(path), "--strategy", "si", "--out", str(tmp_path / "b"), *FAST])
    assert r.accuracy_matrix == r2.accuracy_matrix
    assert json.loads((tmp_path / "a" / "config.json").read_text())["data"]["stream"] == "mytasks:make"
    for spec, message in [("mytasks:domain_only", "give --scenario domain"), ("mytasks:not_a_stream", "not a TaskStream"),
                          ("mytasks:absent", "has no function absent"), ("nomodule:f", "cannot import nomodule"),
                          ("mytasks", "package.module:function")]:
        with pytest.raises(UsageError, match=message):
            main(["run", "--stream", spec, "--out", str(tmp_path / "x"), *FAST])
    with pytest.raises(UsageError, match="--data and --stream both give your own tasks"):
        main(["run", "--stream", "mytasks:make", "--data", str(path), "--out", str(tmp_path / "x"), *FAST])
    with pytest.raises(UsageError, match="--benchmark .split-mnist. has its own data.*drop --benchmark"):
        main(["run", "--data", str(path), "--benchmark", "split-mnist", "--out", str(tmp_path / "x"), *FAST])


def test_resume_refuses_a_data_file_whose_content_changed(tmp_path, monkeypatch):
    from tests.helpers_process import stop_after_checkpoint

    train, test = by_groups()
    path = save_tasks_file(tmp_path / "tasks.npz", train, test)
    args = ["run", "--data", str(path), "--strategy", "ewc", "--iterations", "20", "--checkpoint-every", "10",
            "--hidden", "16", "--threads", "1", "--no-progress"]
    whole = main([*args, "--out", str(tmp_path / "whole")])
    stop_after_checkpoint(monkeypatch, args, tmp_path / "cut", task=1, step=10)
    resumed = main(["run", "--resume", str(tmp_path / "cut"), "--no-progress", "--threads", "1"])
    assert resumed.accuracy_matrix == whole.accuracy_matrix
    stop_after_checkpoint(monkeypatch, args, tmp_path / "cut2", task=1, step=10)
    save_tasks_file(path, train[::-1], test[::-1])  # the same name, other content
    with pytest.raises(UsageError, match="data|sha256|changed"):
        main(["run", "--resume", str(tmp_path / "cut2"), "--no-progress", "--threads", "1"])


def test_a_stream_function_that_fails_is_reported_as_yours(tmp_path, monkeypatch, capsys):
    """--stream: an exception in your function is one line saying it is yours (its traceback under
    --debug); an empty stream or targets beyond the output units are the library's one line."""
    from lifelong.cli import console_main
    from lifelong.errors import UserCodeError

    (tmp_path / "hostile.py").write_text(
        "import dataclasses, torch\nfrom lifelong import TaskStream\n"
        "def boom(seed):\n    raise KeyError('the data went missing')\n"
        "def empty():\n    return TaskStream('x', 'task', (), 2, (3,))\n"
        "def beyond():\n    x = torch.rand(10, 3); y = torch.arange(10) % 2\n"
        "    return dataclasses.replace(TaskStream.from_tensors([(x, y)], [(x, y)]), n_outputs=1)\n"
        "def zero():\n    x = torch.rand(10, 0); y = torch.arange(10) % 2\n"
        "    return TaskStream.from_tensors([(x, y)], [(x, y)])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for fn, code, words in [("boom", 1, "hostile:boom raised KeyError: 'the data went missing' (in your function: "
                                         "--debug shows its traceback)"),
                            ("empty", 1, "no tasks"), ("beyond", 1, "output units 0..0"), ("zero", 1, "0 features")]:
        assert console_main(["run", "--stream", f"hostile:{fn}", "--out", str(tmp_path / fn), *FAST]) == code
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err
        assert not (tmp_path / fn).exists()  # nothing written
    with pytest.raises(UserCodeError) as e:
        main(["run", "--stream", "hostile:boom", "--out", str(tmp_path / "y"), *FAST])
    assert isinstance(e.value.__cause__, KeyError)  # their traceback, kept


# ---- the --stream fuzzer: whatever your function returns, a result or one line ------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_DTYPES = {"uint8": torch.uint8, "float32": torch.float32, "float64": torch.float64, "int64": torch.int64,
           "bool": torch.bool, "float16": torch.float16}


@st.composite
def hostile_streams(draw):
    """What a --stream function might return: tensors of any shape and dtype, labels of any dtype and range,
    tasks of any size, built with from_tensors or by hand (another n_outputs, input shape, no tasks)."""
    tasks = draw(st.integers(0, 3))
    features = draw(st.sampled_from([(0,), (1,), (5,), (2, 3), (4, 4), (1, 0)]))
    xdt, ydt = draw(st.sampled_from(sorted(_DTYPES))), draw(st.sampled_from(sorted(_DTYPES)))
    spec = []
    for _ in range(tasks):
        n_train, n_test = draw(st.integers(0, 12)), draw(st.integers(0, 6))
        lo, hi = draw(st.sampled_from([(0, 2), (0, 1), (-1, 2), (0, 10**6), (2, 4)]))
        spec.append((n_train, n_test, lo, hi))
    how = draw(st.sampled_from(["from_tensors", "by_hand", "not_a_stream"]))
    n_outputs = draw(st.sampled_from([0, 1, 2, 5]))
    scenario = draw(st.sampled_from(["task", "domain", "class"]))
    strategy = draw(st.sampled_from(["naive", "ewc", "er", "lwf", "derpp", "hat"]))
    if draw(st.booleans()):  # half of them sound in all but one respect, so that results are checked too
        sound = {"features": (5,), "x": "float32", "y": "int64", "how": "from_tensors",
                 "tasks": [(8, 4, 2 * t, 2 * t + 2) for t in range(max(tasks, 1))]}
        keep = draw(st.sampled_from(["features", "x", "y", "how", "tasks", None]))
        features, xdt, ydt, how, spec = (sound[k] if k != keep else v for k, v in
                                         zip(("features", "x", "y", "how", "tasks"), (features, xdt, ydt, how, spec)))
    return {"features": features, "x": xdt, "y": ydt, "tasks": spec, "how": how, "n_outputs": n_outputs,
            "scenario": scenario, "strategy": strategy, "seed": draw(st.integers(0, 3))}


MAKE = '''
import dataclasses, json, pathlib, torch
from lifelong import TaskStream
D = {"uint8": torch.uint8, "float32": torch.float32, "float64": torch.float64, "int64": torch.int64,
     "bool": torch.bool, "float16": torch.float16}
def make(scenario):
    s = json.loads(pathlib.Path(__file__).with_name("spec.json").read_text())
    g = torch.Generator().manual_seed(s["seed"])
    def pair(n, lo, hi):
        x = (torch.rand(n, *s["features"], generator=g) * 255).to(D[s["x"]])
        y = torch.randint(lo, max(hi, lo + 1), (n,), generator=g).to(D[s["y"]])
        return x, y
    train = [pair(a, lo, hi) for a, b, lo, hi in s["tasks"]]
    test = [pair(b, lo, hi) for a, b, lo, hi in s["tasks"]]
    if s["how"] == "not_a_stream":
        return train
    if s["how"] == "from_tensors":
        return TaskStream.from_tensors(train, test, scenario=scenario)
    from lifelong.scenarios.task import DataSplit, Task
    tasks = tuple(Task(i, f"t{i}", DataSplit(x, y), DataSplit(xt, yt), None, (0, 1), None)
                  for i, ((x, y), (xt, yt)) in enumerate(zip(train, test)))
    return TaskStream("hand", scenario, tasks, s["n_outputs"], tuple(s["features"]))
'''


@settings(max_examples=int(__import__("os").environ.get("FUZZ_EXAMPLES", 60)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile_streams())
def test_fuzz_hostile_stream_functions_give_a_result_or_one_line(tmp_path_factory, monkeypatch, capsys, spec):
    d = tmp_path_factory.mktemp("fuzzstream")
    (d / "fuzzstream_mod.py").write_text(MAKE)
    (d / "spec.json").write_text(json.dumps(spec))
    monkeypatch.syspath_prepend(str(d))
    import importlib
    import sys

    sys.modules.pop("fuzzstream_mod", None)
    importlib.invalidate_caches()
    code = console_main(["run", "--stream", "fuzzstream_mod:make", "--scenario", spec["scenario"], "--strategy",
                         spec["strategy"], "--out", str(d / "run"), "--iterations", "2", "--hidden", "4", "--threads",
                         "1", "--no-progress"])
    out, err = capsys.readouterr()
    from hypothesis import event

    event(f"exit {code}")
    if code == 0:
        results = json.loads((d / "run" / "results.json").read_text())
        assert all(0.0 <= a <= 1.0 for row in results["accuracy_matrix"] for a in row)
    else:
        assert code in (1, 2) and err.count("\n") == 1 and err.startswith("lifelong: error: "), err
        assert not (d / "run" / "results.json").exists()


@st.composite
def hostile_files(draw):
    """An .npz of tasks as someone else might have written it: keys missing, extra or misnumbered, arrays
    of any dtype and shape (0-d, empty, object, strings), labels out of any range."""
    arrays = {}
    T = draw(st.integers(0, 3))
    for t in range(T):
        for part in ("train", "test", "val"):
            if part == "val" and not draw(st.booleans()):
                continue
            for kind in ("x", "y"):
                if draw(st.integers(0, 9)) == 0:
                    continue  # a key missing
                n = draw(st.integers(0, 10))
                shape = (n, *draw(st.sampled_from([(), (3,), (2, 2), (0,), (28, 28)]))) if kind == "x" else (n,)
                dtype = draw(st.sampled_from(["uint8", "float32", "float64", "int64", "bool", "U3", "float16"]))
                if kind == "y" and draw(st.booleans()):
                    dtype = "int64"
                a = np.arange(int(np.prod(shape))).reshape(shape) % draw(st.sampled_from([2, 3, 300]))
                arrays[f"{part}_{kind}_{t}"] = a.astype(dtype)
    if draw(st.booleans()):
        arrays[draw(st.sampled_from(["train_x_7", "extra", "task_names", "train_x_-1"]))] = np.zeros(
            draw(st.sampled_from([(), (2,), (T,)])))
    return arrays


@settings(max_examples=int(__import__("os").environ.get("FUZZ_EXAMPLES", 60)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile_files(), st.sampled_from(["task", "domain", "class"]), st.sampled_from(["naive", "er", "ewc"]))
def test_fuzz_hostile_data_files_give_a_result_or_one_line(tmp_path_factory, capsys, arrays, scenario, strategy):
    d = tmp_path_factory.mktemp("fuzzdata")
    np.savez(d / "tasks.npz", **arrays)
    code = console_main(["run", "--data", str(d / "tasks.npz"), "--scenario", scenario, "--strategy", strategy,
                         "--out", str(d / "run"), "--iterations", "2", "--hidden", "4", "--threads", "1", "--no-progress"])
    out, err = capsys.readouterr()
    if code == 0:
        results = json.loads((d / "run" / "results.json").read_text())
        assert all(0.0 <= a <= 1.0 for row in results["accuracy_matrix"] for a in row)
    else:
        assert code in (1, 2) and err.count("\n") == 1 and err.startswith("lifelong: error: "), err
