"""`lifelong sweep`: spec expansion, validation before running, resumable runs, parallel workers, failures,
and hyperparameter selection on a validation split (never the test set)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import lifelong.cli.sweep as cli_sweep_module
import lifelong.experiments.executor as executor_module
import lifelong.experiments.grid as grid_module
import lifelong.experiments.runs as run_module
import lifelong.experiments.sweep as sweep_module
import lifelong.report.files as files_module
from lifelong.cli import console_main, main
from lifelong.cli.sweep import parse_set
from lifelong.errors import UsageError
from lifelong.experiments.config import RunConfig, main_hyperparameter
from lifelong.experiments.grid import expand, normalize_spec
from lifelong.experiments.sweep import sweep
from lifelong.train import RunResult
from tests.helpers import FASHION, TINY

FAST = ["--data-dir", str(TINY), "--no-download", "--no-progress", "--hidden", "32", "--threads", "1"]
BASE = {"benchmark": "split-mnist", "tasks": 2, "iterations": 3, "data_dir": str(TINY), "download": False,
        "hidden": [32], "threads": 1}
# EWC's strength, by whatever name its settings give it (found, not assumed: it may be renamed).
LAM = main_hyperparameter("ewc")


@pytest.fixture(autouse=True)
def _isolated_and_fast(tmp_path, monkeypatch):
    monkeypatch.delenv("LIFELONG_DATA_DIR", raising=False)
    monkeypatch.setenv("LIFELONG_CACHE_DIR", str(tmp_path / "cache"))

    def no_plot(R, names, path, **kw):  # plots are tested in test_report; here they only cost time
        Path(path).write_bytes(b"")
        return Path(path)

    monkeypatch.setattr(files_module, "plot_accuracy_curves", no_plot)
    monkeypatch.setattr(files_module, "plot_accuracy_matrix", no_plot)


def spec(grid, seeds=(0,), **base):
    return {"base": {**BASE, **base}, "grid": grid, "seeds": list(seeds)}


def statuses(index):
    return [r["status"] for r in index["runs"]]


# ---- expansion and validation (nothing runs) ----------------------------------------------------------------------


def test_expansion_is_a_cross_product_per_entry_with_seeds_innermost():
    cfgs = expand(spec([{"strategy": "ewc", LAM: [1, 10], "lr": [0.1, 0.01], "fisher": "empirical"},
                        {"strategy": "naive"}], seeds=[0, 1, 2]))
    ewc = [(c.flat()[LAM], c.train.lr, c.seed) for c in cfgs if c.strategy_name == "ewc"]
    assert ewc == [(lam, lr, s) for lam in (1.0, 10.0) for lr in (0.1, 0.01) for s in (0, 1, 2)]
    assert all(c.strategy.fisher == "empirical" for c in cfgs if c.strategy_name == "ewc")
    assert [c.seed for c in cfgs if c.strategy_name == "naive"] == [0, 1, 2]
    assert len(cfgs) == 15 and all(c.stream.tasks == 2 and c.model.hidden == (32,) for c in cfgs)


def test_list_valued_fields_take_a_list_of_lists_as_alternatives():
    assert [c.model.hidden for c in expand(spec([{"hidden": [[16], [8, 8]]}]))] == [(16,), (8, 8)]
    assert [c.model.hidden for c in expand(spec([{"hidden": [8, 8]}]))] == [(8, 8)]  # a flat list is one value
    groups = expand(spec([{"split_groups": [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]}]))
    assert [c.stream.split_groups for c in groups] == [((0, 1), (2, 3)), ((4, 5), (6, 7))]


def test_duplicate_points_run_once_and_seed_defaults_to_base():
    cfgs = expand({"base": {**BASE, "seed": 3}, "grid": [{"lr": [0.1, 0.1]}, {"lr": 0.1}]})
    assert len(cfgs) == 1 and cfgs[0].seed == 3


def test_run_ids_are_deterministic_and_independent_of_spelling():
    a = expand(spec([{"strategy": "ewc", LAM: [10, 100]}], seeds=[0, 1]))
    b = expand({"seeds": [0, 1], "grid": [{LAM: [10.0, 100.0], "strategy": "ewc"}], "base": dict(reversed(BASE.items()))})
    assert [c.run_id for c in a] == [c.run_id for c in b]
    assert len({c.run_id for c in a}) == 4
    by_hand = RunConfig.from_flat({**BASE, "strategy": "ewc", LAM: 100.0, "seed": 1}).resolve()
    assert a[3].run_id == by_hand.run_id


@pytest.mark.parametrize("bad, message", [
    ({"grid": [{"lr": [0.1, 0.01, -1.0]}]}, "sweep run 3 of 3"),
    ({"grid": [{"lr": [0.1, 0.01, -1.0]}]}, "lr must be > 0"),
    ({"grid": [{"learning_rate": 0.1}]}, "unknown key 'learning_rate'"),
    ({"grid": [{"strategy": "naive", "fisher": "mc"}]}, "fisher is not a setting of naive"),
    ({"grid": [{"strategy": "ewc+l2", "l2.lam": [1, -1]}]}, "l2: lam must be >= 0"),
    ({"grid": [{"lr": ["fast"]}]}, "lr=\"fast\" must be a number"),
    ({"grid": [{"epochs": 1.5}]}, "must be an integer"),
    ({"grid": [{"strategy": ["naive", "magic"]}]}, "unknown strategy 'magic'"),
    ({"grid": [{"lr": []}]}, "empty list"),
    ({"grid": [{"seed": [1, 2]}]}, "list the seeds in `seeds`"),
    ({"grid": [{}], "seeds": []}, "'seeds' must be a non-empty list"),
    ({"grid": [{}], "trials": 3}, "unknown keys trials"),
])
def test_every_config_is_validated_before_any_run(bad, message, tmp_path):
    out = tmp_path / "sweep"
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("[", r"\[")):
        sweep({"base": BASE, **bad}, out, quiet=True)
    assert not out.exists()  # not even the sweep folder: nothing ran


def test_select_validates_the_final_variant_too(tmp_path):
    with pytest.raises(UsageError, match="val_fraction cannot be varied"):
        sweep(spec([{"strategy": "naive", "val_fraction": [0.1, 0.2]}]), tmp_path / "s", select=True, quiet=True)
    assert not (tmp_path / "s").exists()


def test_parse_set_reads_values_by_field_type():
    assert parse_set("lr=0.1,0.01") == (None, "lr", [0.1, 0.01])
    assert parse_set("ewc:batch-size=32,64") == ("ewc", "batch_size", [32, 64])
    assert parse_set("der.alpha=0.1,1") == (None, "der.alpha", [0.1, 1.0])
    assert parse_set("hidden=16;8,8") == (None, "hidden", [(16,), (8, 8)])
    assert parse_set("split_groups=0,1/2,3;4,5/6,7")[2] == [((0, 1), (2, 3)), ((4, 5), (6, 7))]
    for text, message in [("lr", "KEY=V1,V2"), ("lr=abc", "not a number"), ("magic:lr=1", "unknown strategy"),
                          ("seed=1,2", "`seeds`"), ("strategy=ewc", "--strategies"), ("lr=", "at least one value")]:
        with pytest.raises(UsageError, match=message):
            parse_set(text)


# ---- the CLI builds the same spec (runs faked: expansion only) -----------------------------------------------------


@pytest.fixture
def fake_runs(monkeypatch):
    ran = []

    def fake(cfg, threads):
        ran.append(cfg)
        return {"status": "done", "metrics": {"average_accuracy": 0.5}, "val_metrics": None}

    monkeypatch.setattr(executor_module, "run_job", fake)
    return ran


def test_cli_varies_a_strategy_hyperparameter_only_for_strategies_that_read_it(tmp_path, fake_runs):
    res = main(["sweep", "--strategies", "naive,ewc", "--set", f"{LAM}=10,100", "--set", "lr=0.01,0.001",
                "--seeds", "0,1", "--benchmark", "split-mnist", "--tasks", "2", "--out", str(tmp_path / "s"), *FAST])
    got = sorted((c.strategy_name, c.flat()[LAM] if c.strategy_name == "ewc" else None, c.train.lr, c.seed)
                 for c in fake_runs)
    want = sorted([("naive", None, lr, s) for lr in (0.01, 0.001) for s in (0, 1)]
                  + [("ewc", lam, lr, s) for lam in (10.0, 100.0) for lr in (0.01, 0.001) for s in (0, 1)])
    assert got == want and statuses(res) == ["done"] * 12
    assert {r["id"] for r in res["runs"]} == {c.run_id for c in fake_runs}
    saved = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert saved["spec"]["seeds"] == [0, 1] and [e["strategy"] for e in saved["spec"]["grid"]] == ["naive", "ewc"]
    assert all(Path(tmp_path / "s" / r["run_dir"]).parent.name == "runs" for r in saved["runs"])


def test_cli_spec_file_matches_flags_and_command_line_overrides_its_base(tmp_path, fake_runs):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"base": {**BASE, "data_dir": "/nowhere"}, "grid": [{"strategy": "ewc", LAM: [10, 100]}],
                                "seeds": [0, 1]}))
    a = main(["sweep", str(path), "--data-dir", str(TINY), "--out", str(tmp_path / "a")])
    assert {c.runtime.data_dir for c in fake_runs} == {str(TINY)}
    b = main(["sweep", "--strategies", "ewc", "--set", f"{LAM}=10,100", "--seeds", "0,1", "--benchmark", "split-mnist",
              "--tasks", "2", "--iterations", "3", "--out", str(tmp_path / "b"), *FAST])
    assert [r["id"] for r in a["runs"]] == [r["id"] for r in b["runs"]]


@pytest.mark.parametrize("args, message", [
    (["--strategies", "naive", "--set", f"{LAM}=1,2"], "none of the strategies naive use it"),
    (["--strategies", "naive", "--set", "ewc:lr=1"], "ewc is not among the strategies"),
    (["--strategies", "naive,magic"], "unknown strategy 'magic'"),
    (["--strategies", "naive,ewc", "--xi", "0.5"], "--xi: xi is a setting of si"),
    (["--set", "lr=0.1", "--set", "lr=0.2"], "given twice"),
    (["--seed", "1", "--seeds", "1,2"], "either --seed or --seeds"),
    (["--set", "lr=0,1"], "--lr must be > 0"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--set", "seed=1,2"], "list the seeds in --seeds"),  # the library's `seeds`, written as the flag
])
def test_cli_sweep_bad_input_is_one_line_exit_2(args, message, tmp_path, capsys, fake_runs):
    code = console_main(["sweep", *args, "--out", str(tmp_path / "s"), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not fake_runs and not (tmp_path / "s").exists()


# ---- real runs on tiny data ---------------------------------------------------------------------------------------


def test_finished_runs_are_skipped_and_unfinished_ones_rerun(tmp_path):
    s = spec([{"strategy": "naive"}], seeds=[0, 1])
    first = sweep(s, tmp_path, quiet=True)
    assert statuses(first) == ["done", "done"]
    results = [tmp_path / r["run_dir"] / "results.json" for r in first["runs"]]
    stamps = [p.stat().st_mtime_ns for p in results]
    second = sweep(s, tmp_path, quiet=True)
    assert statuses(second) == ["skipped", "skipped"] and second["counts"]["done"] == 0
    assert [p.stat().st_mtime_ns for p in results] == stamps  # nothing was rewritten
    assert second["runs"][0]["metrics"] == first["runs"][0]["metrics"]
    results[1].unlink()  # as if interrupted mid-run: config.json written, results.json not yet
    assert (results[1].parent / "config.json").exists()
    third = sweep(s, tmp_path, quiet=True)
    assert statuses(third) == ["skipped", "done"] and results[1].exists()
    assert results[0].stat().st_mtime_ns == stamps[0]
    assert json.loads((tmp_path / "sweep.json").read_text())["counts"] == {"done": 1, "skipped": 1, "failed": 0, "pending": 0}


@pytest.mark.process
def test_two_workers_give_the_same_results_as_one(tmp_path):
    s = spec([{"strategy": "ewc"}], seeds=[0, 1])
    one = sweep(s, tmp_path / "one", quiet=True)
    two = sweep(s, tmp_path / "two", workers=2, quiet=True)
    assert statuses(two) == ["done", "done"] and [r["id"] for r in one["runs"]] == [r["id"] for r in two["runs"]]
    for a, b in zip(one["runs"], two["runs"]):
        ra = json.loads((tmp_path / "one" / a["run_dir"] / "results.json").read_text())
        rb = json.loads((tmp_path / "two" / b["run_dir"] / "results.json").read_text())
        assert ra["accuracy_matrix"] == rb["accuracy_matrix"]
        assert rb["threads"] == 1  # the config's --threads wins over cpu_count // workers


def test_a_failing_run_is_recorded_and_the_others_finish(tmp_path, capsys):
    args = ["sweep", "--strategies", "naive", "--set", "lr=1e12,0.01", "--optimizer", "sgd", "--benchmark", "split-mnist",
            "--tasks", "1", "--iterations", "3", "--out", str(tmp_path / "s"), *FAST]
    res = main(args)
    assert statuses(res) == ["failed", "done"] and res["failed"] == [res["runs"][0]["id"]]
    assert "lower `lr`" in res["runs"][0]["message"] and "\n" not in res["runs"][0]["message"]
    assert (tmp_path / "s" / res["runs"][1]["run_dir"] / "results.json").exists()
    assert json.loads((tmp_path / "s" / "sweep.json").read_text())["runs"][0]["status"] == "failed"
    capsys.readouterr()
    assert console_main(args) == 1  # the failed run is tried again; the finished one is skipped
    out, err = capsys.readouterr()
    assert "skipped" in out and err.startswith("lifelong: error: 1 of 2 runs failed") and err.count("\n") == 1


def test_select_chooses_on_validation_then_runs_the_choice_on_every_seed(tmp_path):
    # SGD with a huge EWC strength blows the network up on task 2: those validation runs fail (divergence
    # is an error, not a low score) and the candidate is out; the other is chosen and run on every seed.
    s = spec([{"strategy": "ewc", LAM: [1e12, 0.0]}, {"strategy": "naive"}], seeds=[0, 1],
             optimizer="sgd", lr=0.1)
    res = sweep(s, tmp_path, select=True, quiet=True)
    failed = [r for r in res["runs"] if r["status"] == "failed"]
    assert len(failed) == 2 and all(r["phase"] == "validation" and "exploded" in r["message"] for r in failed)
    phases = [(r["phase"], r["strategy"]) for r in res["runs"]]
    assert phases == [("validation", "ewc")] * 4 + [("final", "ewc")] * 2 + [("final", "naive")] * 2
    ewc = res["selection"][0]
    scores = {c["params"][LAM]: c["val_average_accuracy"] for c in ewc["candidates"]}
    assert ewc["params"] == {LAM: 0.0} and scores[1e12] is None and scores[0.0] > 0.5
    assert ewc["scored_on"] == "validation" and ewc["val_fraction"] == 0.1
    for r in res["runs"]:
        if r["status"] == "failed":
            continue
        saved = json.loads((tmp_path / r["run_dir"] / "results.json").read_text())
        assert saved["config"]["stream"]["val_fraction"] == (0.1 if r["phase"] == "validation" else 0.0)
        if r["phase"] == "final" and r["strategy"] == "ewc":
            assert saved["config"]["strategy"]["settings"][LAM] == 0.0 and saved["selection"]["params"] == {LAM: 0.0}
            assert saved["selection"]["candidates"] == ewc["candidates"]
        if r["phase"] == "validation":
            assert "metrics" not in r  # the index keeps only validation numbers of validation runs
    assert res["selection"][1]["scored_on"] is None  # naive: one candidate, no validation runs
    assert json.loads((tmp_path / "selection.json").read_text())["methods"] == res["selection"]


def test_selection_follows_validation_even_when_test_accuracy_ranks_the_other_way(tmp_path, monkeypatch):
    val_acc = {1.0: 0.9, 1000.0: 0.6, 10.0: 0.3}  # validation prefers 1
    test_acc = {1.0: 0.2, 1000.0: 0.5, 10.0: 0.95}  # the test set would prefer 10

    def fake_train_stream(cl, **kw):
        def matrix(acc):
            return [[0.5, 0.5], [acc, 0.5], [acc, acc]]

        lam = getattr(cl.strategy.settings, LAM)
        out = RunResult(benchmark=cl.stream.name, scenario=cl.stream.scenario, strategy=cl.strategy.name,
                        task_names=cl.stream.task_names, accuracy_matrix=matrix(test_acc[lam]),
                        metrics={"average_accuracy": test_acc[lam]}, seed=cl.seed)
        if cl.stream[0].val is not None:
            out.val_accuracy_matrix = matrix(val_acc[lam])
            out.val_metrics = {"average_accuracy": val_acc[lam] + cl.seed / 100}
        return out

    monkeypatch.setattr(run_module, "train_stream", fake_train_stream)
    res = sweep(spec([{"strategy": "ewc", LAM: [10, 1000, 1]}], seeds=[0, 1]), tmp_path, select=True, quiet=True)
    choice = res["selection"][0]
    assert choice["params"] == {LAM: 1.0}
    assert [c["val_average_accuracy"] for c in choice["candidates"]] == pytest.approx([0.305, 0.605, 0.905])
    assert [c["per_seed"] for c in choice["candidates"]][2] == pytest.approx({"0": 0.9, "1": 0.91})
    finals = [r for r in res["runs"] if r["phase"] == "final"]
    assert [r["config"]["strategy"]["settings"][LAM] for r in finals] == [1.0, 1.0] and [r["seed"] for r in finals] == [0, 1]


def test_tune_is_a_thin_wrapper_that_skips_finished_trials(tmp_path):
    cfg = RunConfig.from_flat({**BASE, "strategy": "ewc", "val_fraction": 0.2, "out": str(tmp_path / "t")})
    first = sweep_module_tune(cfg)
    trial = tmp_path / "t" / f"trial-{LAM}-0" / "results.json"
    stamp = trial.stat().st_mtime_ns
    again = sweep_module_tune(cfg)
    assert trial.stat().st_mtime_ns == stamp and again["chosen"] == first["chosen"]
    final = json.loads((tmp_path / "t" / "final" / "results.json").read_text())
    assert final["selection"]["params"] == {LAM: first["chosen"]} and final["config"]["stream"]["val_fraction"] == 0.0
    index = json.loads((tmp_path / "t" / "sweep.json").read_text())
    assert [r["phase"] for r in index["runs"]] == ["validation", "validation", "final"]


def sweep_module_tune(cfg):
    from lifelong.experiments.tune import tune

    return tune(cfg, LAM, [0, 1e12], quiet=True)


def test_normalized_spec_is_plain_json():
    s = normalize_spec(spec([{"strategy": "ewc", LAM: [1, 2]}]))
    assert json.loads(json.dumps(s)) == s and s["select"] is False
    assert s["grid"][0][LAM] == [1.0, 2.0]


def test_docstring_examples():
    import doctest

    for module in (grid_module, sweep_module, cli_sweep_module):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
@pytest.mark.process
def test_a_killed_sweep_leaves_no_worker_running(tmp_path):
    """SIGKILL the sweep's process: its worker processes notice and exit (else they go on training and
    writing into the sweep's folders, unseen), and the next sweep resumes their runs."""
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"base": {**BASE, "iterations": 100000, "checkpoint_every": 50},
                                "grid": [{"strategy": "naive"}], "seeds": [0, 1]}))
    proc = subprocess.Popen([sys.executable, "-m", "lifelong", "sweep", str(spec), "--workers", "2",
                             "--out", str(tmp_path / "s")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        workers: list[int] = []
        while time.time() < deadline and len(list((tmp_path / "s" / "runs").glob("*/checkpoint.safetensors"))) < 2:
            time.sleep(0.1)
        workers = [c for c in _children(proc.pid) if b"spawn" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(workers) == 2, workers
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.1)
    alive = [w for w in workers if Path(f"/proc/{w}").exists()]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive, "worker processes outlived the sweep"


# ---- a run's identity covers its data ----------------------------------------------------------------------


def test_a_sweep_on_other_data_never_reports_the_runs_made_on_the_first(tmp_path):
    """The run id covers the IDX data behind data_dir: the same spec on Fashion-MNIST's files (put where
    MNIST's were expected) trains new runs in new folders instead of skipping to the MNIST numbers."""
    s = spec([{"strategy": "naive"}])
    first = sweep(s, tmp_path / "sw", quiet=True)
    other = tmp_path / "other"
    shutil.copytree(FASHION, other)
    for p in other.iterdir():  # Fashion-MNIST under MNIST's file names: only the content tells them apart
        p.rename(other / p.name.replace("fashion-", ""))
    second = sweep(spec([{"strategy": "naive"}], data_dir=str(other)), tmp_path / "sw", quiet=True)
    assert statuses(second) == ["done"] and second["runs"][0]["id"] != first["runs"][0]["id"]
    assert second["runs"][0]["metrics"] != first["runs"][0]["metrics"]
    again = sweep(s, tmp_path / "sw", quiet=True)  # and the first data again: its run, skipped
    assert statuses(again) == ["skipped"] and again["runs"][0]["metrics"] == first["runs"][0]["metrics"]


def test_run_on_other_data_into_a_finished_runs_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "r"
    args = ["run", "--benchmark", "split-mnist", "--tasks", "2", "--iterations", "2", "--out", str(out), *FAST]
    main(args)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"}
    other = tmp_path / "other"
    shutil.copytree(TINY, other)
    (other / "t10k-labels-idx1-ubyte.gz").unlink()  # other test labels: other data under the same name
    import gzip

    labels = bytearray(gzip.decompress((TINY / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    labels[8] = (labels[8] + 1) % 10  # the first test label (after the 8-byte IDX header) changed
    (other / "t10k-labels-idx1-ubyte").write_bytes(bytes(labels))
    assert console_main([*args, "--data-dir", str(other)]) == 2
    assert "holds another run" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"} == before


def test_a_stream_function_whose_data_changed_is_a_new_run(tmp_path, monkeypatch):
    """--stream: the id covers the tensors the function returns, so a sweep reruns a run whose
    function now returns other data instead of skipping to the old number."""
    (tmp_path / "moving.py").write_text(
        "import torch\nfrom lifelong import TaskStream\nimport pathlib\n"
        "def make(seed):\n"
        "    k = int(pathlib.Path(__file__).with_name('k.txt').read_text())\n"
        "    g = torch.Generator().manual_seed(k)\n"
        "    x = [torch.rand(40, 6, generator=g) for _ in range(2)]\n"
        "    y = [torch.arange(40) % 2 + 2 * t for t in range(2)]\n"
        "    return TaskStream.from_tensors(list(zip(x, y)), list(zip(x, y)), scenario='task')\n")
    (tmp_path / "k.txt").write_text("1")
    monkeypatch.syspath_prepend(str(tmp_path))
    s = {"base": {"stream": "moving:make", "iterations": 3, "hidden": [8], "threads": 1}, "grid": [{"strategy": "naive"}],
         "seeds": [0]}
    first = sweep(s, tmp_path / "sw", quiet=True)
    assert statuses(sweep(s, tmp_path / "sw", quiet=True)) == ["skipped"]
    (tmp_path / "k.txt").write_text("2")
    second = sweep(s, tmp_path / "sw", quiet=True)
    assert statuses(second) == ["done"] and second["runs"][0]["id"] != first["runs"][0]["id"]
