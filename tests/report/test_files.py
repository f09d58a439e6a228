"""Tests of run outputs: JSON conversion, the matrix CSV, plots, and atomic writes."""

from __future__ import annotations

import dataclasses
import doctest
import enum
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import lifelong._io
import lifelong.report.files as files_module
import lifelong.report.plots as plots_module
from lifelong.errors import DataError, UsageError
from lifelong.eval import average_accuracy_curve, summarize
from lifelong.report import (
    RUN_OUTPUT_FILES,
    plot_accuracy_curves,
    plot_accuracy_matrix,
    plot_comparison,
    read_matrix_csv,
    to_jsonable,
    write_json,
    write_matrix_csv,
    write_run_outputs,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def stream_matrix(T: int, seed: int = 0) -> np.ndarray:
    """A realistic (T+1, T) matrix: chance before training, ~0.97 when trained, decaying after."""
    rng = np.random.default_rng(seed)
    R = 0.1 + rng.uniform(0.0, 0.05, size=(T + 1, T))
    for i in range(1, T + 1):
        for j in range(i):
            R[i, j] = max(0.1, 0.97 - 0.05 * (i - 1 - j))
    return R


def assert_real_png(path: Path, min_size: tuple[int, int] = (100, 100)) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = matplotlib.image.imread(path)  # (H, W, 4) floats
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert img.shape[0] >= min_size[0] and img.shape[1] >= min_size[1]
    assert img[..., :3].std() > 0.01, "image is blank"


def assert_no_temp_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


# ---- to_jsonable -------------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Inner:
    path: Path
    values: tuple


@dataclasses.dataclass
class Outer:
    name: str
    inner: Inner
    weight: torch.Tensor


def test_to_jsonable_numpy_torch_nan():
    obj = {
        "arr": np.array([[0.5, np.nan], [np.inf, -np.inf]]),
        "f32": np.float32(0.25),
        "i64": np.int64(7),
        "b": np.bool_(True),
        "nan": float("nan"),
        "t": torch.tensor([1.5, float("nan")], requires_grad=True),
        "t0": torch.tensor(3),
        "tb": torch.tensor([0.5], dtype=torch.bfloat16),
        "path": Path("runs") / "x",
        "tuple": (1, 2.0, "a"),
        "set": {3, 1, 2},
        "enum": Color.RED,
        "dc": Outer("m", Inner(Path("a"), (np.float64(0.5),)), torch.zeros(2)),
        5: None,
    }
    out = to_jsonable(obj)
    assert out == {
        "arr": [[0.5, None], [None, None]],
        "f32": 0.25,
        "i64": 7,
        "b": True,
        "nan": None,
        "t": [1.5, None],
        "t0": 3,
        "tb": [0.5],
        "path": str(Path("runs") / "x"),
        "tuple": [1, 2.0, "a"],
        "set": [1, 2, 3],
        "enum": "red",
        "dc": {"name": "m", "inner": {"path": "a", "values": [0.5]}, "weight": [0.0, 0.0]},
        "5": None,
    }
    assert type(out["i64"]) is int and type(out["f32"]) is float and type(out["b"]) is bool
    json.dumps(out, allow_nan=False)  # strictly valid JSON


def test_to_jsonable_rejects_unknown_types():
    with pytest.raises(TypeError, match="object"):
        to_jsonable({"x": object()})


def test_write_json_nan_becomes_null(tmp_path):
    p = write_json(tmp_path / "m.json", {"bwt": float("nan"), "acc": np.float64(0.5)})
    assert json.loads(p.read_text()) == {"bwt": None, "acc": 0.5}


# ---- CSV -----------------------------------------------------------------------------------------


def test_matrix_csv_layout_and_round_trip(tmp_path):
    R = np.random.default_rng(1).uniform(size=(4, 3))
    names = ["perm-1", "rot, 45°", 'quote"d']  # commas and quotes survive CSV quoting
    p = write_matrix_csv(tmp_path / "R.csv", R, names)
    lines = p.read_text(encoding="utf-8").splitlines()
    assert lines[0] == 'after,perm-1,"rot, 45°","quote""d"'
    assert lines[1].startswith("init,") and lines[2].startswith("perm-1,")
    assert lines[1].split(",")[1] == f"{R[0, 0]:.6f}"

    R2, names2 = read_matrix_csv(p)
    assert names2 == names
    expected = np.array([[float(f"{x:.6f}") for x in row] for row in R])
    np.testing.assert_array_equal(R2, expected)  # exact to the 6 written decimals
    assert np.abs(R2 - R).max() <= 5e-7
    # a second round trip is byte-identical
    p2 = write_matrix_csv(tmp_path / "R2.csv", R2, names2)
    assert p2.read_bytes() == p.read_bytes()


def test_matrix_csv_rejects_bad_input(tmp_path):
    with pytest.raises(UsageError, match="task_names"):
        write_matrix_csv(tmp_path / "R.csv", np.zeros((3, 2)), ["only-one"])
    with pytest.raises(UsageError):
        write_matrix_csv(tmp_path / "R.csv", np.zeros((2, 2)), ["a", "b"])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "task,a\ninit,0.1\na,0.9\n",  # header must start with 'after'
        "after,a\ninit,0.1\nb,0.9\n",  # row labels must be init, then the task names
        "after,a,b\ninit,0.1,0.1\na,0.9\nb,0.5,0.5\n",  # ragged row
        "after,a\ninit,0.1\na,x\n",  # not a number
        "after,a\ninit,0.1\na,97\n",  # percentage
    ],
)
def test_read_matrix_csv_rejects_malformed_files(tmp_path, text):
    p = tmp_path / "R.csv"
    p.write_text(text)
    with pytest.raises(DataError):
        read_matrix_csv(p)


def test_read_matrix_csv_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_matrix_csv(tmp_path / "nope.csv")


# ---- run outputs ---------------------------------------------------------------------------------


def test_write_run_outputs_writes_four_files(tmp_path):
    R = stream_matrix(4)
    results = {
        "task_names": [f"task-{k}" for k in range(1, 5)],
        "accuracy_matrix": R,  # a NumPy array is fine too; it is written as a list of lists
        "metrics": summarize(R),
        "config": {"seed": np.int64(3), "out": tmp_path},
        "title": "naive on a 4-task stream",
    }
    run_dir = tmp_path / "runs" / "abc"  # created, parents included
    paths = write_run_outputs(run_dir, results)
    assert set(paths) == set(RUN_OUTPUT_FILES)
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(RUN_OUTPUT_FILES.values())
    assert all(p.parent == run_dir for p in paths.values())

    loaded = json.loads(paths["results_json"].read_text())
    assert loaded == to_jsonable(results)
    assert loaded["accuracy_matrix"] == R.tolist()
    R_csv, names = read_matrix_csv(paths["accuracy_matrix_csv"])
    assert names == results["task_names"]
    np.testing.assert_allclose(R_csv, R, atol=5e-7)
    assert_real_png(paths["accuracy_curves_png"])
    assert_real_png(paths["accuracy_matrix_png"])


def test_write_run_outputs_one_task_nan_metrics_become_null(tmp_path):
    R = [[0.1], [0.9]]
    results = {"task_names": ["only"], "accuracy_matrix": R, "metrics": summarize(R)}
    paths = write_run_outputs(tmp_path, results)
    metrics = json.loads(paths["results_json"].read_text())["metrics"]
    assert metrics == {
        "average_accuracy": 0.9,
        "backward_transfer": None,
        "forward_transfer": None,
        "forgetting": None,
    }


def test_write_run_outputs_requires_keys_and_consistent_names(tmp_path):
    with pytest.raises(UsageError, match="metrics"):
        write_run_outputs(tmp_path, {"task_names": ["a"], "accuracy_matrix": [[0.1], [0.9]]})
    with pytest.raises(UsageError, match="task_names"):
        write_run_outputs(
            tmp_path, {"task_names": ["a", "b"], "accuracy_matrix": [[0.1], [0.9]], "metrics": {}}
        )
    assert list(tmp_path.iterdir()) == []  # nothing written on bad input


# ---- plots ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 20])
def test_plots_small_and_large_streams(tmp_path, T):
    R = stream_matrix(T)
    names = [f"permuted-mnist-{k}" for k in range(1, T + 1)]  # long names get shortened
    assert_real_png(plot_accuracy_curves(R, names, tmp_path / "c.png", title=f"{T} tasks"))
    assert_real_png(plot_accuracy_matrix(R, names, tmp_path / "m.png"))
    assert_no_temp_files(tmp_path)


def test_plot_comparison(tmp_path):
    curves = {
        "naive": average_accuracy_curve(stream_matrix(5, seed=1)),
        "ewc": np.array([0.97, 0.96, 0.95, 0.95, 0.94]),
        "short run": [0.9, 0.8],  # runs may differ in length
    }
    assert_real_png(plot_comparison(curves, tmp_path / "cmp.png", title="methods"))
    with pytest.raises(UsageError, match="at least one"):
        plot_comparison({}, tmp_path / "x.png")
    with pytest.raises(UsageError, match="'bad'"):
        plot_comparison({"bad": [50.0, 60.0]}, tmp_path / "x.png")


def test_plots_do_not_import_pyplot(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from lifelong.report import plot_accuracy_matrix\n"
        f"plot_accuracy_matrix(np.array([[0.1], [0.9]]), ['a'], {str(tmp_path / 'm.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- atomic writes -------------------------------------------------------------------------------


def test_plot_failing_half_way_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "accuracy_curves.png"
    path.write_bytes(b"previous content")

    def half_written_savefig(self, f, **kwargs):
        f.write(PNG_MAGIC + b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", half_written_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_accuracy_curves(stream_matrix(3), ["a", "b", "c"], path)
    assert path.read_bytes() == b"previous content"
    assert_no_temp_files(tmp_path)


@pytest.mark.parametrize("writer", ["json", "csv"])
def test_text_writes_failing_half_way_keep_previous_file(tmp_path, monkeypatch, writer):
    path = tmp_path / "out"
    path.write_text("previous content")
    written = {}

    def failing_fsync(fd):  # the bytes are in the temporary file; the flush to disk fails
        written["size"] = os.fstat(fd).st_size
        raise OSError("disk full")

    monkeypatch.setattr(lifelong._io.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        if writer == "json":
            write_json(path, {"a": list(range(100))})
        else:
            write_matrix_csv(path, stream_matrix(3), ["a", "b", "c"])
    assert written["size"] > 0
    assert path.read_text() == "previous content"
    assert_no_temp_files(tmp_path)


def test_run_outputs_failing_half_way_keep_previous_results(tmp_path, monkeypatch):
    R = [[0.1, 0.1], [0.9, 0.1], [0.8, 0.9]]
    results = {"task_names": ["a", "b"], "accuracy_matrix": R, "metrics": summarize(R)}
    paths = write_run_outputs(tmp_path, results)
    before = {k: p.read_bytes() for k, p in paths.items()}

    def broken_savefig(self, f, **kwargs):
        f.write(b"\x89PNG")
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    changed = dict(results, metrics={"average_accuracy": 0.0})
    with pytest.raises(RuntimeError, match="renderer crashed"):
        write_run_outputs(tmp_path, changed)
    # results.json is written last, so it still describes the previous complete set
    assert {k: p.read_bytes() for k, p in paths.items()} == before
    assert_no_temp_files(tmp_path)


def test_docstring_examples():
    for module in (files_module, plots_module):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_nan_conversion_is_total():
    # every non-finite float anywhere in a nested structure becomes None
    out = to_jsonable([1.0, [math.inf, (np.float16("nan"),)], {"x": -math.inf}])
    assert out == [1.0, [None, [None]], {"x": None}]
