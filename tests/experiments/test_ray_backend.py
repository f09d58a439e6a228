"""`lifelong sweep --backend ray`: on a local Ray with 2 CPUs, exactly the runs and results of the local
backend (ids, folders, accuracy matrices, selection), finished runs skipped, an interrupted run resumed
from its checkpoint inside a Ray task, and one-line errors for options that do not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lifelong.experiments.runs as runs_module
import lifelong.report.files as files_module
from lifelong.cli import console_main
from lifelong.experiments.config import RunConfig, main_hyperparameter
from lifelong.experiments.sweep import sweep
from tests.helpers import TINY

ray = pytest.importorskip("ray", reason="the Ray backend's extra (lifelong[ray]) is not installed")
pytestmark = pytest.mark.process  # Ray starts its own processes

BASE = {"benchmark": "split-mnist", "tasks": 2, "iterations": 6, "data_dir": str(TINY), "download": False,
        "hidden": [32], "threads": 1, "checkpoint_every": 2}
LAM = main_hyperparameter("ewc")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for the module; the backend joins it (and leaves it running)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch):
    # in this process only (the local backend); plots are tested in test_report
    def no_plot(R, names, path, **kw):
        Path(path).write_bytes(b"")
        return Path(path)

    monkeypatch.setattr(files_module, "plot_accuracy_curves", no_plot)
    monkeypatch.setattr(files_module, "plot_accuracy_matrix", no_plot)


def spec(grid, seeds=(0, 1), **base):
    return {"base": {**BASE, **base}, "grid": grid, "seeds": list(seeds)}


def results(root: Path, index: dict) -> dict:
    out = {}
    for r in index["runs"]:
        res = json.loads((root / r["run_dir"] / "results.json").read_text())
        out[r["id"]] = {k: res.get(k) for k in ("run_id", "accuracy_matrix", "val_accuracy_matrix", "metrics",
                                               "val_metrics", "selection")}
    return out


def same_runs(a: dict, b: dict) -> None:
    keep = ("id", "phase", "method", "strategy", "params", "seed", "run_dir", "status", "metrics", "val_metrics")
    assert [{k: r.get(k) for k in keep} for r in a["runs"]] == [{k: r.get(k) for k in keep} for r in b["runs"]]


def test_ray_backend_runs_exactly_the_local_backends_runs(tmp_path, local_ray):
    s = spec([{"strategy": "naive"}, {"strategy": "ewc", LAM: 100.0}])
    local = sweep(s, tmp_path / "local", quiet=True)
    on_ray = sweep(s, tmp_path / "ray", backend="ray", cpus_per_run=1, quiet=True)
    assert on_ray["counts"] == {"done": 4, "skipped": 0, "failed": 0, "pending": 0}
    same_runs(local, on_ray)
    assert results(tmp_path / "local", local) == results(tmp_path / "ray", on_ray)  # every float
    assert on_ray["backend"] == {"name": "ray", "address": None, "cpus_per_run": 1.0, "gpus_per_run": 0.0}
    assert local["backend"] == {"name": "local", "workers": 1}
    assert ray.is_initialized()  # a Ray the backend joined is left running

    again = sweep(s, tmp_path / "ray", backend="ray", quiet=True)  # finished runs: nothing goes to Ray
    assert again["counts"]["skipped"] == 4 and again["counts"]["done"] == 0


def test_selection_on_ray_chooses_what_the_local_backend_chooses(tmp_path, local_ray):
    s = {**spec([{"strategy": "ewc", LAM: [1.0, 1000.0]}], seeds=[0]), "select": True}
    local = sweep(s, tmp_path / "local", quiet=True)
    on_ray = sweep(s, tmp_path / "ray", backend="ray", quiet=True)
    same_runs(local, on_ray)
    assert local["selection"] == on_ray["selection"]
    assert results(tmp_path / "local", local) == results(tmp_path / "ray", on_ray)


def test_an_interrupted_run_resumes_from_its_checkpoint_in_a_ray_task(tmp_path, local_ray, monkeypatch):
    s = spec([{"strategy": "ewc", LAM: 100.0}], seeds=[0])
    local = sweep(s, tmp_path / "local", quiet=True)
    record = local["runs"][0]
    # the same run, stopped right after its checkpoint at step 4 of task 2, in the Ray sweep's folder
    cfg = RunConfig.from_record(record["config"]).replace(out=str(tmp_path / "ray" / record["run_dir"]))
    real = runs_module.save_checkpoint

    def save_then_stop(path, tensors, meta):
        real(path, tensors, meta)
        if meta["progress"]["task"] == 1 and meta["progress"]["step"] == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(runs_module, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        runs_module.run(cfg)
    monkeypatch.setattr(runs_module, "save_checkpoint", real)
    assert runs_module.interrupted(cfg)

    on_ray = sweep(s, tmp_path / "ray", backend="ray", quiet=True)
    assert on_ray["counts"]["done"] == 1
    folder = tmp_path / "ray" / record["run_dir"]
    starts = [e for e in map(json.loads, (folder / "events.jsonl").read_text().splitlines()) if e["event"] == "start"]
    assert [e["resumed_at"] for e in starts] == [None, {"task": 1, "step": 4}]  # resumed, not started again
    assert results(tmp_path / "local", local) == results(tmp_path / "ray", on_ray)  # and bit-identical


@pytest.mark.parametrize("args, message", [
    (["--address", "auto"], "--address: only with --backend ray"),
    (["--cpus-per-run", "2"], "--cpus-per-run: only with --backend ray"),
    (["--backend", "ray", "--workers", "2"], "--workers is the local pool's"),
    (["--backend", "ray", "--cpus-per-run", "-1"], "--cpus-per-run must be a number >= 0"),
    (["--backend", "ray", "--gpus-per-run", "1.5"], "--gpus-per-run 1.5: above 1 it must be a whole number"),
    (["--backend", "ray", "--gpus-per-run", "0.5"], "--gpus-per-run 0.5: the Ray cluster has 0 GPUs"),
    (["--backend", "ray", "--cpus-per-run", "3"], "--cpus-per-run 3: the Ray cluster has 2 CPUs"),
])
def test_options_that_do_not_fit_are_one_line_errors(args, message, tmp_path, capsys, local_ray):
    code = console_main(["sweep", "--strategy", "naive", "--benchmark", "split-mnist", "--tasks", "1",
                         "--iterations", "2", "--data-dir", str(TINY), "--no-download", "--hidden", "8",
                         "--out", str(tmp_path / "s"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "s" / "runs").exists()  # refused before any run


def test_without_ray_installed_the_error_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *a, **kw):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    code = console_main(["sweep", "--strategy", "naive", "--benchmark", "split-mnist", "--tasks", "1",
                         "--iterations", "2", "--data-dir", str(TINY), "--no-download", "--backend", "ray",
                         "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'lifelong[ray]'" in err, err


def test_the_command_line_starts_its_own_ray_and_matches_the_local_sweep(tmp_path):
    """`lifelong sweep --backend ray` in a fresh process: it starts a local Ray, runs, and shuts it down."""
    import os
    import subprocess
    import sys

    args = ["sweep", "--strategies", "naive,ewc", "--seeds", "0", "--benchmark", "split-mnist", "--tasks", "2",
            "--iterations", "4", "--data-dir", str(TINY), "--no-download", "--hidden", "16", "--threads", "1"]
    assert console_main([*args, "--out", str(tmp_path / "local")]) == 0  # here, in this process
    proc = subprocess.run([sys.executable, "-m", "lifelong", *args, "--backend", "ray", "--cpus-per-run", "1",
                           "--out", str(tmp_path / "ray")], capture_output=True, text=True, env=os.environ, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    local, on_ray = (json.loads((tmp_path / n / "sweep.json").read_text()) for n in ("local", "ray"))
    same_runs(local, on_ray)
    assert results(tmp_path / "local", local) == results(tmp_path / "ray", on_ray)


def test_tune_on_ray_chooses_and_reports_what_local_tune_does(tmp_path, local_ray):
    from lifelong.experiments.tune import tune

    def cfg(where):
        return RunConfig.from_flat({**BASE, "strategy": "ewc", "val_fraction": 0.2, "out": str(tmp_path / where)})

    local = tune(cfg("local"), LAM, [1.0, 1000.0], quiet=True)
    on_ray = tune(cfg("ray"), LAM, [1.0, 1000.0], quiet=True, backend="ray")
    keep = lambda s: {"chosen": s["chosen"], "final": {k: s["final"][k] for k in ("run_id", "metrics")},  # noqa: E731
                      "trials": [{k: t[k] for k in ("value", "status", "val_average_accuracy", "run_id")}
                                 for t in s["trials"]]}
    assert keep(local) == keep(on_ray)


def test_reproduce_and_tune_take_the_backend_options(tmp_path, capsys):
    for args in (["reproduce", "hsu2018-split-mnist", "--backend", "ray", "--workers", "2", "--out", str(tmp_path / "r")],
                 ["tune", "--strategy", "ewc", "--grid", "1,10", "--address", "auto", "--data-dir", str(TINY),
                  "--no-download", "--out", str(tmp_path / "t")]):
        code = console_main(args)
        err = capsys.readouterr().err
        assert code == 2 and ("--workers is the local pool's" in err or "--address: only with --backend ray" in err), err


def _ray_run_tasks(prefix: bytes = b"ray::lifelong-run") -> list[int]:
    """Pids of processes running a Ray task of a sweep (Ray names them ray::lifelong-run)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().startswith(prefix):
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow  # about 30 s here (two Ray starts): python -m pytest -m slow tests/experiments/test_ray_backend.py
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find Ray's task processes")
def test_a_killed_ray_sweep_stops_its_runs_and_the_next_one_resumes_them(tmp_path):
    """SIGKILL the driver of a Ray sweep (it started the local Ray): Ray ends the runs' tasks with it
    (no orphan goes on writing into the folders), and the next sweep resumes each run from its checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"base": {**BASE, "iterations": 1500, "checkpoint_every": 50},
                                "grid": [{"strategy": "naive"}], "seeds": [0, 1]}))
    cmd = [sys.executable, "-m", "lifelong", "sweep", str(spec), "--backend", "ray", "--out", str(tmp_path / "s")]
    agents_before = set(_ray_run_tasks(b"ray::")) - set(_ray_run_tasks())
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and len(list((tmp_path / "s" / "runs").glob("*/checkpoint.safetensors"))) < 2:
            time.sleep(0.1)
        assert len(_ray_run_tasks()) == 2, "the two runs were not running as Ray tasks"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and _ray_run_tasks():
        time.sleep(0.2)
    left = _ray_run_tasks()
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    # Ray's dashboard and runtime-env agents of a killed driver's Ray stay behind, idle (Ray's own
    # behaviour; `ray stop` ends them): not the sweep's, but the test cleans up after itself
    for pid in set(_ray_run_tasks(b"ray::")) - agents_before - set(left):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, "Ray tasks outlived the sweep that started them"
    assert not list((tmp_path / "s" / "runs").glob("*/results.json"))

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    index = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert [r["status"] for r in index["runs"]] == ["done", "done"]
    for r in index["runs"]:
        events = (tmp_path / "s" / r["run_dir"] / "events.jsonl").read_text().splitlines()
        starts = [e["resumed_at"] for e in map(json.loads, events) if e["event"] == "start"]
        assert starts[0] is None and starts[-1] is not None  # resumed from a checkpoint, not started again


def test_an_address_nothing_answers_on_is_a_one_line_error_at_once(tmp_path):
    """Not minutes of Ray's retries: the port is tried first (in a fresh process: no Ray started)."""
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free again once closed: nothing listens there
    proc = subprocess.run([sys.executable, "-m", "lifelong", "sweep", "--strategy", "naive", "--benchmark", "split-mnist",
                           "--tasks", "1", "--iterations", "2", "--data-dir", str(TINY), "--no-download", "--backend", "ray",
                           "--address", f"127.0.0.1:{port}", "--out", str(tmp_path / "s")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and f"--address 127.0.0.1:{port}: nothing answers there" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "s").exists()


@pytest.mark.parametrize("args, words", [
    (["--address", "garbage"], "--address garbage is not a Ray address"),
    (["--address", "http://x"], "is not a Ray address"),
    (["--cpus-per-run", "0.00001"], "steps of 0.0001"),
    (["--gpus-per-run", "0.123456"], "steps of 0.0001"),
])
def test_ray_options_ray_itself_would_refuse_are_one_line_before_ray_starts(tmp_path, capsys, args, words):
    code = console_main(["sweep", "--strategies", "naive", "--backend", "ray", *args, "--data-dir", str(TINY),
                         "--no-download", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "s").exists()


def test_tune_refuses_zero_workers_like_sweep(tmp_path, capsys):
    for cmd in (["tune", "--strategy", "ewc", "--grid", "1,10"], ["sweep", "--strategies", "naive"]):
        assert console_main([*cmd, "--workers", "0", "--data-dir", str(TINY), "--no-download",
                             "--out", str(tmp_path / cmd[0])]) == 2
        assert "--workers must be >= 1" in capsys.readouterr().err
