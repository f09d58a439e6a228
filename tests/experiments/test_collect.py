"""`lifelong compare`: hand-made run folders with known accuracy matrices -> exact table, files and labels."""

from __future__ import annotations

import csv
import importlib
import json
import statistics
from pathlib import Path

import numpy as np
import pytest

from lifelong.cli import console_main, main
from lifelong.errors import UsageError
from lifelong.eval import summarize
from lifelong.experiments.collect import compare, find_runs
from tests.helpers import FIXTURES, TINY

collect_module = importlib.import_module("lifelong.experiments.collect")
table_module = importlib.import_module("lifelong.report.table")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def matrix(a: float, b: float) -> list[list[float]]:
    """A 2-task matrix: task 1 learned to ``a`` and kept at ``a - 0.1``; task 2 learned to ``b``."""
    return [[0.5, 0.5], [a, 0.5], [a - 0.1, b]]


def make_run(root: Path, name: str, R, *, strategy="naive", seed=0, benchmark="split-mnist", scenario="task",
             val=None, **config) -> Path:
    d = root / name
    d.mkdir(parents=True)
    cfg = {"run_id": f"{benchmark}-{strategy}-{name}", "benchmark": benchmark, "scenario": scenario, "tasks": 2,
           "strategy": strategy, "lam": 100.0, "lr": 0.001, "seed": seed, "threads": 1, "data_dir": "/data",
           "out": str(d), "progress": False, **config}
    results = {"run_id": cfg["run_id"], "task_names": [f"t{j + 1}" for j in range(len(R[0]))], "accuracy_matrix": R,
               "metrics": {k: (None if v != v else v) for k, v in summarize(R).items()},
               "timings": {"train_seconds": [1.0] * len(R[0]), "total_seconds": 2.5}, "peak_memory_bytes": 1000 + seed}
    if val is not None:
        results["val_metrics"] = {"average_accuracy": val}
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "results.json").write_text(json.dumps(results))
    return d


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for seed, (a, b) in enumerate([(0.9, 0.8), (0.8, 0.6), (0.7, 0.7)]):
        make_run(root, f"naive-{seed}", matrix(a, b), seed=seed, data_dir=f"/machine{seed}")
    for seed, (a, b) in enumerate([(0.9, 0.9), (0.95, 0.85)]):
        make_run(root, f"ewc100-{seed}", matrix(a, b), strategy="ewc", seed=seed)
    make_run(root, "ewc10-0", matrix(0.9, 0.7), strategy="ewc", lam=10.0)
    return root


def test_means_stds_and_counts_are_exact(runs):
    table = compare([runs], write=False, quiet=True)
    rows = {r["label"]: r for r in table["rows"]}
    assert list(rows) == ["ewc (lam=10)", "ewc (lam=100)", "naive"]
    naive = rows["naive"]
    acc = [(0.8 + 0.8) / 2, (0.7 + 0.6) / 2, (0.6 + 0.7) / 2]  # final-row means of the three matrices: 0.7 on average
    assert naive["n"] == 3 and naive["seeds"] == [0, 1, 2]
    assert naive["values"]["average_accuracy"]["mean"] == pytest.approx(statistics.mean(acc), abs=1e-12)
    assert naive["values"]["average_accuracy"]["std"] == pytest.approx(np.std(acc, ddof=1), abs=1e-12)
    assert naive["values"]["backward_transfer"] == pytest.approx({"mean": -0.1, "std": 0.0, "n": 3}, abs=1e-12)
    assert rows["ewc (lam=100)"]["values"]["average_accuracy"] == pytest.approx({"mean": 0.85, "std": 0.0, "n": 2})
    one = rows["ewc (lam=10)"]
    assert one["n"] == 1 and one["values"]["average_accuracy"] == {"mean": pytest.approx(0.75), "std": None, "n": 1}


def test_text_markdown_and_csv(runs, tmp_path):
    out = tmp_path / "report"
    table = compare([runs], out=out, metrics=["average_accuracy", "backward_transfer"], quiet=True)
    text = table["text"].splitlines()
    assert text[0].split() == ["method", "ACC", "(%)", "BWT", "(%)", "n"]  # short names, with a key below
    assert "ACC = average_accuracy; BWT = backward_transfer" in table["text"]
    assert text[2].split() == ["ewc", "(lam=10)", "75.00", "-10.00", "1"]  # one seed: the mean alone
    assert text[4].split() == ["naive", "70.00", "±", "8.66", "-10.00", "±", "0.00", "3"]
    assert len({len(line) for line in text[:2]}) == 1  # aligned columns
    md = (out / "compare.md").read_text()
    assert md.splitlines()[:2] == ["| method | average_accuracy (%) | backward_transfer (%) | n |", "|:---|---:|---:|---:|"]
    assert "| naive | 70.00 ± 8.66 | -10.00 ± 0.00 | 3 |" in md and "ddof=1" in md
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [r["method"] for r in rows] == ["ewc (lam=10)", "ewc (lam=100)", "naive"]
    assert float(rows[2]["average_accuracy_mean"]) == pytest.approx(0.7) and rows[2]["average_accuracy_n"] == "3"
    assert float(rows[2]["average_accuracy_std"]) == pytest.approx(np.std([0.8, 0.65, 0.65], ddof=1))
    assert rows[0]["average_accuracy_std"] == "" and rows[0]["seeds"] == "0"
    assert json.loads(rows[1]["params"]) == {"lam": 100.0}
    assert (out / "compare.png").read_bytes()[:8] == PNG_MAGIC
    assert set(table["files"]) == {"md", "csv", "png"}


def test_labels_show_only_values_that_differ_and_matter(tmp_path):
    root = tmp_path / "r"
    make_run(root, "a", matrix(0.9, 0.8), strategy="naive", lam=1.0, lr=0.01)
    make_run(root, "b", matrix(0.9, 0.8), strategy="ewc", lam=1.0, lr=0.01)
    make_run(root, "c", matrix(0.9, 0.8), strategy="ewc", lam=5.0, lr=0.001)
    labels = [r["label"] for r in compare([root], write=False, quiet=True)["rows"]]
    # EWC's strength is not shown for naive (it does not read it); lr is a training option for all
    assert labels == ["ewc (lam=1, lr=0.01)", "ewc (lam=5, lr=0.001)", "naive (lr=0.01)"]
    # two naive runs that differ only in a value naive ignores stay apart: then the value is shown
    make_run(root, "d", matrix(0.9, 0.8), strategy="naive", lam=5.0, lr=0.01)
    labels = [r["label"] for r in compare([root], write=False, quiet=True)["rows"]]
    assert labels[2:] == ["naive (lam=1, lr=0.01)", "naive (lam=5, lr=0.01)"]


def test_mixed_benchmarks_are_grouped_and_labelled(tmp_path, capsys):
    root = tmp_path / "r"
    make_run(root, "s0", matrix(0.9, 0.8), seed=0)
    make_run(root, "s1", matrix(0.8, 0.8), seed=1)
    make_run(root, "p0", [[0.1, 0.1, 0.1], [0.9, 0.1, 0.1], [0.8, 0.9, 0.1], [0.7, 0.8, 0.9]],
             benchmark="permuted-mnist", scenario="domain", tasks=3)
    table = compare([root], write=False)
    assert [(r["label"], r["n"]) for r in table["rows"]] == [
        ("permuted-mnist/domain: naive", 1), ("split-mnist/task: naive", 2)]  # tasks differ, but only across streams
    assert any("several benchmarks, scenarios or schedules" in n for n in table["notes"])
    assert "note: the runs span several benchmarks, scenarios or schedules" in capsys.readouterr().out


def test_the_same_run_found_twice_counts_once_and_missing_values_get_their_own_n(tmp_path):
    root = tmp_path / "r"
    make_run(root, "a", matrix(0.9, 0.8), seed=0)
    make_run(root, "b", [[0.5], [0.7]], seed=1, tasks=1)  # T = 1: BWT undefined (null)
    make_run(root, "b2", [[0.5], [0.7]], seed=1, tasks=1)
    cfg = json.loads((root / "b" / "config.json").read_text())
    (root / "b2" / "config.json").write_text(json.dumps(cfg))  # a copy of run b: same run id
    table = compare([root, root / "a"], write=False, quiet=True, metrics=["backward_transfer"])
    rows = {r["label"]: r for r in table["rows"]}
    assert rows["naive (tasks=1)"]["n"] == 1 and rows["naive (tasks=1)"]["values"]["backward_transfer"]["n"] == 0
    assert "n/a" in table["text"]


def test_validation_runs_of_a_sweep_are_left_out(tmp_path):
    root = tmp_path / "sweep"
    make_run(root / "runs", "final", matrix(0.9, 0.8))
    make_run(root / "validation", "val", matrix(0.5, 0.5), val_fraction=0.1)
    (root / "sweep.json").write_text(json.dumps({"runs": [{"run_dir": "validation/val", "phase": "validation"},
                                                          {"run_dir": "runs/final", "phase": "final"}]}))
    found, notes = find_runs([root])
    assert [p.name for p in found] == ["final"] and "validation runs" in notes[0]
    assert [p.name for p in find_runs([root, root / "validation" / "val"])[0]] == ["final", "val"]


def test_other_metrics_are_shown_as_they_are(runs):
    table = compare([runs], write=False, quiet=True, metrics=["timings.total_seconds", "peak_memory_bytes"])
    assert table["percent"] == {"timings.total_seconds": False, "peak_memory_bytes": False}
    assert table["text"].splitlines()[0].split() == ["method", "timings.total_seconds", "peak_memory_bytes", "n"]
    assert table["text"].splitlines()[4].split() == ["naive", "2.50", "±", "0.00", "1001.00", "±", "1.00", "3"]


@pytest.mark.parametrize("setup, args, message", [
    (lambda p: p.mkdir(), [], "no run folders"),
    (lambda p: None, [], "does not exist"),
    (lambda p: make_run(p, "a", matrix(0.9, 0.8)), ["--metrics", "accuracy"], "no run has the metric 'accuracy'"),
    (lambda p: make_run(p, "a", matrix(0.9, 0.8)), ["--metrics", "timings.train_seconds"], "not a number"),
])
def test_bad_input_is_a_usage_error(setup, args, message, tmp_path, capsys):
    path = tmp_path / "empty"
    setup(path)
    with pytest.raises(UsageError, match=message):
        main(["compare", str(path), *args])
    assert console_main(["compare", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_compare_writes_into_the_first_path_by_default(runs, capsys):
    table = main(["compare", str(runs), "--metrics", "average_accuracy"])
    assert {p.name for p in runs.iterdir()} >= {"compare.md", "compare.csv", "compare.png"}
    assert table["metrics"] == ["average_accuracy"] and "naive" in capsys.readouterr().out
    assert table_module.DEFAULT_METRICS[0] == "average_accuracy"


def test_docstring_examples():
    import doctest

    results = [doctest.testmod(m) for m in (collect_module, table_module)]
    assert sum(r.attempted for r in results) > 0 and all(r.failed == 0 for r in results)


def test_compare_reads_folders_of_lifelong_0_1_beside_new_ones(tmp_path):
    import shutil

    shutil.copytree(FIXTURES / "legacy-v1", tmp_path / "old")
    main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--strategy", "ewc", "--lambda", "10", "--iterations", "3",
          "--hidden", "8", "--threads", "1", "--no-progress", "--data-dir", str(TINY),
          "--no-download", "--out", str(tmp_path / "new")])
    table = compare([tmp_path], write=False, quiet=True)
    labels = sorted(r["label"] for r in table["rows"])
    assert len(labels) == 2 and all(label.startswith("ewc") for label in labels)
    assert any("lam=50" in label for label in labels) and any("lam=10" in label for label in labels)


def test_compare_leaves_forward_transfer_out_of_class_incremental_runs(tmp_path):
    for seed in (0, 1):
        main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--scenario", "class", "--iterations", "2",
              "--seed", str(seed), "--hidden", "8", "--threads", "1", "--no-progress", "--data-dir", str(TINY),
              "--no-download", "--out", str(tmp_path / f"c{seed}")])
    table = compare([tmp_path], write=False, quiet=True)
    assert "forward_transfer" not in table["metrics"] and any("undefined" in n for n in table["notes"])
    chosen = compare([tmp_path], write=False, quiet=True, metrics=["average_accuracy", "forward_transfer"])
    assert chosen["rows"][0]["values"]["forward_transfer"]["n"] == 0  # asked for: shown as n/a


@pytest.mark.parametrize("edit, words", [
    (lambda r: r["metrics"].update(average_accuracy=5.0), "not a rate"),  # shown as 284 % before
    (lambda r: r["metrics"].update(average_accuracy=0.99), "the accuracy matrix gives"),  # possible, but not this run's
    (lambda r: r["metrics"].update(backward_transfer=-3.0), "not a rate"),
    (lambda r: r["metrics"].update(forgetting=float("nan")), "not a rate"),
])
def test_compare_leaves_out_results_whose_numbers_cannot_be_this_runs(tmp_path, edit, words):
    """A results.json edited (or mixed up) so that its metrics are impossible, or are not what its own
    accuracy matrix gives, is left out with a note; the table averages only the sound runs."""
    from lifelong.report.files import results_problem

    good = make_run(tmp_path, "good", matrix(0.9, 0.8))
    bad = make_run(tmp_path, "bad", matrix(0.7, 0.6), seed=1)
    results = json.loads((bad / "results.json").read_text())
    edit(results)
    (bad / "results.json").write_text(json.dumps(results))
    assert words in results_problem(json.loads((bad / "results.json").read_text()))
    table = compare([tmp_path], write=False, quiet=True)
    row = table["rows"][0]["values"]["average_accuracy"]
    assert row["n"] == 1 and row["mean"] == pytest.approx(summarize(matrix(0.9, 0.8))["average_accuracy"])
    assert any("left out 1 unreadable" in n for n in table["notes"]) and good.exists()


@pytest.mark.parametrize("name", ["results.json", "config.json"])
def test_compare_survives_json_nested_deeper_than_python_reads(tmp_path, capsys, name):
    make_run(tmp_path, "good", matrix(0.9, 0.8))
    bad = make_run(tmp_path, "bad", matrix(0.7, 0.6), seed=1)
    (bad / name).write_text("[" * 100_000 + "]" * 100_000)
    assert console_main(["compare", str(tmp_path), "--out", str(tmp_path / "cmp")]) == 0
    assert "left out 1 unreadable" in capsys.readouterr().out
    (bad / name).write_text('{"a": ' * 500 + "1" + "}" * 500)  # within the parser's reach, past any reader's
    assert console_main(["compare", str(tmp_path), "--out", str(tmp_path / "cmp")]) == 0


def test_labels_name_what_varies_and_the_terminal_table_fits_120_columns(tmp_path):
    """Composites are labelled by their parts' settings that differ (never "memory=none" for a setting
    they do not have), one method of a strategy by its name alone, data files by file name; labels too
    long for 120 columns are numbered with a legend below."""
    from lifelong.report.table import format_text

    fp = lambda name: {"file": name, "sha256": name * 8}  # noqa: E731
    make_run(tmp_path, "a", matrix(0.9, 0.8), strategy="ewc+er", **{"ewc.lam": 100.0, "er.memory": 500,
                                                                     "lam": None, "memory": None})
    make_run(tmp_path, "b", matrix(0.9, 0.7), strategy="ewc+er", **{"ewc.lam": 10.0, "er.memory": 500,
                                                                     "lam": None, "memory": None})
    make_run(tmp_path, "c", matrix(0.8, 0.8), strategy="er", memory=500, lam=None)
    make_run(tmp_path, "d", matrix(0.8, 0.8), strategy="naive", lam=None, data=fp("tasks-a.npz"))
    table = compare([tmp_path], write=False, quiet=True)
    labels = sorted(r["label"] for r in table["rows"])
    assert "ewc+er (ewc.lam=10)" in labels and "ewc+er (ewc.lam=100)" in labels and "er" in labels
    assert not any("=none" in lab or "sha256" in lab for lab in labels), labels
    assert all(len(line) <= 120 for line in table["text"].splitlines())
    rows = [dict(r, label="x" * 200 + str(k)) for k, r in enumerate(table["rows"])]
    text = format_text({**table, "rows": rows})
    assert all(len(line) <= 120 for line in text.splitlines()) and "[1] " + "x" * 20 in text


def test_data_fingerprints_are_labelled_by_file_name():
    from lifelong.experiments.collect import _fmt

    assert _fmt({"file": "tasks-a.npz", "sha256": "f" * 64}) == "tasks-a.npz"
    assert _fmt({"stream": "mymod:make", "sha256": "f" * 64}) == "mymod:make"
    assert _fmt({"dataset": "mnist", "md5": {"a": "1234567890"}, "canonical": True}) == "mnist"
    assert _fmt({"dataset": "mnist", "md5": {"a": "1234567890"}, "canonical": False}) == "mnist (files 12345678)"
