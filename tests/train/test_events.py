"""The event log (events.jsonl, always) and TensorBoard scalars (--log tensorboard): what they hold, that
logging changes no number, and that a resumed run's log reads as one run."""

from __future__ import annotations

import json

import pytest

from lifelong.cli import console_main, main
from lifelong.train.events import read_events

from tests.helpers_process import stop_after_checkpoint
from tests.helpers import TINY

ARGS = ["run", "--benchmark", "split-mnist", "--tasks", "2", "--strategy", "ewc", "--iterations", "70", "--hidden", "16",
        "--data-dir", str(TINY), "--no-download", "--no-progress", "--threads", "1"]


def test_the_event_log_has_every_step_every_task_and_changes_no_number(tmp_path):
    r = main([*ARGS, "--out", str(tmp_path / "a")])
    quiet = main([*ARGS, "--log", "none", "--out", str(tmp_path / "b")])
    assert r.accuracy_matrix == quiet.accuracy_matrix
    assert not (tmp_path / "b" / "events.jsonl").exists()
    events = [json.loads(x) for x in (tmp_path / "a" / "events.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "start" and events[0]["accuracy"] == r.accuracy_matrix[0]
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(140))  # one record per optimizer step, in order
    assert [e["task_step"] for e in steps] == [*range(70), *range(70)] and [e["task"] for e in steps] == [0] * 70 + [1] * 70
    with_penalty = [e["step"] for e in steps if "penalty" in e]
    assert with_penalty == [49, 69, 119, 139]  # every check_every (50) steps of a task, and its last step
    pen = {e["step"]: e["penalty"] for e in steps if "penalty" in e}
    assert pen[49] == pen[69] == 0.0 and pen[119] > 0 and pen[139] > 0  # EWC's penalty starts with task 2
    assert all(isinstance(e["loss"], float) and e["loss"] > 0 for e in steps)
    assert events[0]["loss_terms"] == ["task"] and all(e["losses"] == {"task": e["loss"]} for e in steps)
    tasks = [e for e in events if e["event"] == "task"]
    assert [e["accuracy"] for e in tasks] == r.accuracy_matrix[1:]
    assert [e["train_seconds"] for e in tasks] == r.timings["train_seconds"]
    assert [e["steps"] for e in tasks] == [70, 70]
    assert events[-1]["event"] == "end" and events[-1]["metrics"] == r.metrics


def test_a_resumed_runs_log_reads_as_one_run(tmp_path, monkeypatch):
    whole = main([*ARGS, "--checkpoint-every", "30", "--out", str(tmp_path / "whole")])
    args = [*ARGS, "--checkpoint-every", "30"]
    stop_after_checkpoint(monkeypatch, args, tmp_path / "cut", task=1, step=30)
    resumed = main(["run", "--resume", str(tmp_path / "cut"), "--no-progress", "--threads", "1"])
    assert resumed.accuracy_matrix == whole.accuracy_matrix
    raw = [json.loads(x) for x in (tmp_path / "cut" / "events.jsonl").read_text().splitlines()]
    starts = [e for e in raw if e["event"] == "start"]
    assert [s["resumed_at"] for s in starts] == [None, {"task": 1, "step": 30}]
    events, reference = read_events(tmp_path / "cut" / "events.jsonl"), read_events(tmp_path / "whole" / "events.jsonl")
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(140))
    ref = {e["step"]: e["loss"] for e in reference if e["event"] == "step"}
    assert {e["step"]: e["loss"] for e in steps} == ref  # the resumed steps' losses are the same to the bit


def test_tensorboard_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = main([*ARGS, "--log", "tensorboard", "--out", str(tmp_path / "a")])
    acc = EventAccumulator(str(tmp_path / "a" / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/penalty", "accuracy/average", "accuracy/classes 0-1", "metrics/average_accuracy"} <= tags
    assert [s.step for s in acc.Scalars("train/loss")] == list(range(140))
    avg = [s.value for s in acc.Scalars("accuracy/average")]
    R = r.accuracy_matrix
    assert avg == pytest.approx([R[1][0], (R[2][0] + R[2][1]) / 2])
    assert acc.Scalars("metrics/average_accuracy")[0].value == pytest.approx(r.metrics["average_accuracy"])


def test_log_tensorboard_without_the_package_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    import builtins

    real = builtins.__import__

    def no_tensorboard(name, *a, **k):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    assert console_main([*ARGS, "--log", "tensorboard", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert 'pip install "lifelong[tensorboard]"' in err and len(err.splitlines()) == 1
    assert not (tmp_path / "a").exists()  # refused before the run folder is made


def test_each_named_loss_term_is_logged_and_they_sum_to_the_loss(tmp_path):
    """DER++ in the second task: task, replay and logits terms every step; their sum is the loss."""
    args = ["run", "--benchmark", "split-mnist", "--tasks", "2", "--scenario", "class", "--strategy", "derpp",
            "--memory", "50", "--iterations", "20", "--hidden", "16", "--data-dir", str(TINY), "--no-download",
            "--no-progress", "--threads", "1", "--out", str(tmp_path / "d")]
    main(args)
    events = read_events(tmp_path / "d" / "events.jsonl")
    assert events[0]["loss_terms"] == ["task", "replay", "logits"]
    steps = [e for e in events if e["event"] == "step"]
    assert set(steps[0]["losses"]) == {"task"}  # an empty memory: the task term alone
    second = [e for e in steps if e["task"] == 1]
    assert all(set(e["losses"]) == {"task", "replay", "logits"} for e in second)
    assert all(abs(sum(e["losses"].values()) - e["loss"]) <= 1e-5 * e["loss"] for e in second)
