"""Task-free streams from the command line: a run's results.json holds the accuracy curve and its metrics,
the run folder its picture, compare shows the curve's metrics, and the settings that cannot apply are
one line and exit code 2 with nothing written."""

from __future__ import annotations

import json

import pytest
import torch

from lifelong.cli import console_main, main
from lifelong.experiments.collect import compare
from lifelong.train import Learner, TrainSettings, fit_task
from tests.helpers import FAST, tiny_model, tiny_stream, user_step

RUN = ["run", "--benchmark", "split-mnist", "--tasks", "2", "--schedule", "gradual", "--train-samples", "60",
       "--eval-per-group", "10", "--batch-size", "10", "--eval-every", "30", "--hidden", "8", *FAST]


def test_a_task_free_run_records_its_curve_and_draws_it(tmp_path, capsys):
    res = main([*RUN, "--strategy", "er", "--memory", "20", "--out", str(tmp_path / "er")])
    d = json.loads((tmp_path / "er" / "results.json").read_text())
    a = d["anytime"]
    assert [p["samples"] for p in a["points"]] == [30, 60, 90, 120]
    assert a["schedule"] == "gradual" and a["unit"] == "class" and len(a["groups"]) == 4 and a["every"] == 30
    assert d["metrics"]["auc_accuracy"] == a["metrics"]["auc_accuracy"] is not None
    assert d["metrics"]["final_accuracy"] == a["points"][-1]["accuracy"]
    assert (tmp_path / "er" / "anytime.png").exists()
    assert "AUC" in capsys.readouterr().out and res.anytime == a


def test_compare_shows_the_curves_metrics_for_task_free_runs(tmp_path):
    for seed in ("0", "1"):
        main([*RUN, "--strategy", "naive", "--seed", seed, "--out", str(tmp_path / f"n{seed}")])
    table = compare([tmp_path], quiet=True, out=tmp_path / "cmp")
    assert table["metrics"] == ["final_accuracy", "auc_accuracy", "curve_forgetting"]
    assert table["rows"][0]["n"] == 2
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:4] == b"\x89PNG"  # the curves against samples seen
    from lifelong.experiments.collect import methods_of
    from lifelong.report.table import _anytime_curves

    groups = methods_of([{"results": json.loads((tmp_path / f"n{s}" / "results.json").read_text()),
                          "config": {"seed": int(s)}, "dir": tmp_path / f"n{s}"} for s in "01"])
    n, acc = next(iter(_anytime_curves(groups, [{"label": "naive"}]).values()))
    want = [(a["accuracy"] + b["accuracy"]) / 2 for a, b in zip(*(json.loads((tmp_path / f"n{s}" / "results.json")
                                                                   .read_text())["anytime"]["points"] for s in "01"))]
    assert n.tolist() == [30, 60, 90, 120] and acc.tolist() == pytest.approx(want)  # the mean over seeds


def test_task_free_and_task_runs_of_one_benchmark_are_compared_in_separate_groups_with_both_metric_sets(tmp_path):
    """The same data as tasks and as a task-free stream are two protocols: two groups, and each row has the
    metrics its run defines (n/a for the others), never one set read as the other."""
    main([*RUN, "--strategy", "naive", "--out", str(tmp_path / "free")])
    drop = {RUN.index(f) for f in ("--schedule", "--eval-every", "--eval-per-group")}
    tasks = [a for i, a in enumerate(RUN) if i not in drop and i - 1 not in drop]  # the flags and their values
    main([*tasks, "--scenario", "class", "--strategy", "naive", "--out", str(tmp_path / "tasks")])
    table = compare([tmp_path], quiet=True, write=False)
    rows = {r["label"]: r for r in table["rows"]}
    assert set(rows) == {"split-mnist/class: naive", "split-mnist/class gradual: naive"}
    assert {"average_accuracy", "backward_transfer", "final_accuracy", "auc_accuracy"} <= set(table["metrics"])
    free, tasked = rows["split-mnist/class gradual: naive"]["values"], rows["split-mnist/class: naive"]["values"]
    assert free["auc_accuracy"]["mean"] is not None and tasked["auc_accuracy"]["mean"] is None
    assert tasked["backward_transfer"]["mean"] is not None and free["backward_transfer"]["mean"] is None
    assert any("schedules" in n for n in table["notes"])


def test_a_strategy_that_needs_boundaries_and_eval_every_on_tasks_are_one_line_and_exit_2(tmp_path, capsys):
    code = console_main([*RUN, "--strategy", "ewc", "--out", str(tmp_path / "ewc")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "task-free" in err and "consolidate='plateau'" in err
    assert not (tmp_path / "ewc").exists()
    code = console_main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--eval-every", "30", *FAST,
                         "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "eval_every" in err.replace("-", "_")
    assert not (tmp_path / "t").exists()
    code = console_main([*RUN, "--strategy", "ewc", "--consolidate", "plateau", "--out", str(tmp_path / "ok")])
    assert code == 0 and (tmp_path / "ok" / "results.json").exists()


def test_a_task_free_training_step_reads_nothing_back_from_the_device(monkeypatch):
    """Replay included: the loss check every check_every steps and the curve's points are the only reads of
    floating-point values (integer bookkeeping on the CPU, the rows' sources, is not the device's)."""
    s = tiny_stream("split-mnist", "class", 2, schedule="gradual", eval_per_group=5)
    reads = []
    for name in ("item", "__bool__", "__int__", "__float__", "tolist"):
        original = getattr(torch.Tensor, name)

        def counting(self, *a, _original=original, _name=name, **k):
            if self.is_floating_point():
                reads.append(_name)
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counting)
    from lifelong.strategies import STRATEGIES

    for name, settings in (("naive", {}), ("er", {"memory": 50}), ("derpp", {"memory": 50})):
        cl = Learner(tiny_model(s), STRATEGIES[name](**settings), s, seed=0,
                     settings=TrainSettings("sgd", 0.1, batch_size=10, iterations=40, check_every=20, eval_every=10**6))
        cl.rows = [[0.0]]
        cl.start_task(0)
        reads.clear()
        fit_task(cl)
        assert len(reads) <= 2 + 1, (name, reads)  # two loss checks and the parameters' check


def test_your_own_tasks_in_a_file_become_a_task_free_stream(tmp_path):
    from lifelong.scenarios import save_tasks_file

    g = torch.Generator().manual_seed(0)
    pairs = [(torch.randint(0, 256, (40, 6, 6), dtype=torch.uint8, generator=g), torch.tensor([2 * t, 2 * t + 1] * 20))
             for t in range(2)]
    path = save_tasks_file(tmp_path / "mine.npz", pairs, pairs)
    res = main(["run", "--data", str(path), "--schedule", "ordered", "--units", "shared", "--batch-size", "10",
                "--eval-every", "20", "--strategy", "er", "--memory", "10", "--no-progress", "--threads", "1",
                "--hidden", "8", "--out", str(tmp_path / "r")])
    a = res.anytime
    assert res.scenario == "class" and a["schedule"] == "ordered" and a["groups"] == [f"class {c}" for c in range(4)]
    assert a["entries"] == [0, 1, 40, 41]  # in the file's order: task 1's samples, then task 2's
    assert [p["samples"] for p in a["points"]] == [20, 40, 60, 80]


def test_a_task_free_run_stopped_mid_stream_resumes_to_the_same_curve(tmp_path, monkeypatch):
    from lifelong.train.checkpoint import CHECKPOINT_FILE
    from tests.helpers_process import read_progress, stop_after_checkpoint

    args = [*RUN, "--strategy", "online-ewc", "--consolidate", "plateau", "--importance-every", "2",
            "--plateau-window", "2", "--plateau-mean", "5", "--plateau-var", "5", "--checkpoint-every", "5"]
    whole = main([*args, "--out", str(tmp_path / "whole")])
    out = tmp_path / "cut"
    stop_after_checkpoint(monkeypatch, args, out, task=0, step=5)  # between the first two curve points
    progress = read_progress(out / CHECKPOINT_FILE)
    assert progress["step"] == 5 and progress["anytime"]["samples"] == 50 and len(progress["anytime"]["points"]) == 1
    resumed = main(["run", "--resume", str(out), "--no-progress", "--threads", "1"])
    assert resumed.anytime["points"] == whole.anytime["points"] and resumed.consolidations == whole.consolidations
    assert resumed.consolidations and resumed.metrics == whole.metrics


def test_the_event_log_holds_each_point_of_the_curve_once_after_a_resume(tmp_path, monkeypatch):
    from lifelong.train.events import read_events
    from tests.helpers_process import stop_after_checkpoint

    args = [*RUN, "--strategy", "naive", "--checkpoint-every", "4"]
    out = tmp_path / "cut"
    stop_after_checkpoint(monkeypatch, args, out, task=0, step=8)
    res = main(["run", "--resume", str(out), "--no-progress", "--threads", "1"])
    points = [e for e in read_events(out / "events.jsonl") if e["event"] == "point"]
    assert [p["samples"] for p in points] == [p["samples"] for p in res.anytime["points"]] == [30, 60, 90, 120]
    assert [p["accuracy"] for p in points] == [p["accuracy"] for p in res.anytime["points"]]


def test_bad_task_free_settings_are_one_line_and_exit_2(tmp_path, capsys):
    cases = [(["--schedule-width", "-1"], "--schedule-width must be in (0, 1000]"),
             (["--eval-per-group", "0"], "--eval-per-group must be in 1..10000000"),
             (["--eval-every", "0"], "--eval-every must be a count of samples >= 1"),
             (["--blurry-share", "0.2"], "--blurry-share applies to --schedule blurry"),
             (["--scenario", "task"], "no task identity")]
    for extra, message in cases:
        code = console_main([*RUN, *extra, "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, (extra, err)
        assert not (tmp_path / "x").exists()


def test_fashion_mnist_streams_without_boundaries(tmp_path):
    from tests.helpers import FASHION

    for bench, extra in (("rotating-fashion", ["--tasks", "9"]), ("split-fashion", ["--schedule", "blurry"])):
        res = main(["run", "--benchmark", bench, *extra, "--batch-size", "20", "--eval-per-group", "5", "--hidden", "8",
                    "--data-dir", str(FASHION), "--no-download", "--no-progress", "--threads", "1",
                    "--out", str(tmp_path / bench)])
        assert res.scenario == "class" and res.anytime["points"] and res.metrics["auc_accuracy"] is not None


def test_the_curves_points_count_as_evaluation_time_not_training(monkeypatch):
    """A point measured while the stream trains is moved from train_seconds to eval_seconds: with a clock
    that moves one second per prediction of a point (the accuracy rows are measured without Learner.predict)
    and never otherwise, training takes 0 s and evaluation one second per point."""
    from lifelong.strategies import STRATEGIES
    from lifelong.train import learner as L

    s = tiny_stream("split-mnist", "class", 2, schedule="flat", eval_per_group=5)
    cl = L.Learner(tiny_model(s), STRATEGIES["naive"](), s, settings=TrainSettings(batch_size=10, eval_every=50), seed=0)
    clock = [0.0]
    real = L.Learner.predict

    def predict(self, *a, **k):
        clock[0] += 1.0
        return real(self, *a, **k)

    monkeypatch.setattr(L.Learner, "predict", predict)
    monkeypatch.setattr(L.time, "perf_counter", lambda: clock[0])
    for _ in cl.tasks():
        opt = cl.optimizer = torch.optim.SGD(cl.parameters(), lr=0.1)
        for batch in cl.batches():
            user_step(cl, opt, batch)
    assert len(cl.curve) >= 3
    assert cl.timings["train_seconds"] == [0.0]
    assert cl.timings["eval_seconds"] == [float(len(cl.curve))]  # every point, the one at the stream's end too
