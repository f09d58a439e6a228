"""Never lose a run: checkpoints, resume to the last bit, safe state files, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lifelong.cli import console_main, main
from lifelong.errors import TrainingDiverged
from lifelong.experiments.build import build_stream, seeded_model
from lifelong.experiments.config import RunConfig
from lifelong.train.checkpoint import (
    CHECKPOINT_FILE,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)

from tests.helpers import FIXTURES, ROOT, TINY
from tests.helpers_process import kill_mid_task, read_progress, stop_after_checkpoint

FAST = ["--data-dir", str(TINY), "--no-download", "--no-progress", "--hidden", "32", "--threads", "1"]


@pytest.mark.process
def test_sigkill_mid_task_then_resume_gives_the_same_matrix_to_the_last_bit(tmp_path):
    args = ["run", "--benchmark", "permuted-mnist", "--tasks", "3", "--strategy", "si", "--lambda", "10",
            "--iterations", "400", "--checkpoint-every", "7", *FAST]
    whole = main([*args, "--out", str(tmp_path / "whole")])

    out = tmp_path / "killed"
    kill_mid_task(args, out, task=1, min_step=50)
    assert not (out / "results.json").exists()
    resumed = main(["run", "--resume", str(out), "--no-progress", "--threads", "1"])
    assert resumed.accuracy_matrix == whole.accuracy_matrix  # exact equality of every float
    assert resumed.steps_per_task == whole.steps_per_task
    assert not (out / CHECKPOINT_FILE).exists()  # removed once results.json is written


def interrupted_then_resumed(tmp_path, monkeypatch, device: str):
    """A run stopped (KeyboardInterrupt) right after a mid-task checkpoint of its second task, then
    resumed with ``lifelong run --resume``; returns (uninterrupted results, resumed results)."""
    args = ["run", "--benchmark", "permuted-mnist", "--tasks", "2", "--strategy", "ewc+si", "--iterations", "30",
            "--checkpoint-every", "10", "--device", device, *FAST]
    whole = main([*args, "--out", str(tmp_path / "whole")])
    out = tmp_path / "cut"
    stop_after_checkpoint(monkeypatch, args, out, task=1, step=20)
    saves = [read_progress(out / CHECKPOINT_FILE)]
    assert not (out / "results.json").exists() and saves[-1]["step"] == 20
    return whole, main(["run", "--resume", str(out), "--no-progress", "--threads", "1"])


def test_an_interrupted_run_resumes_to_the_same_matrix_in_process(tmp_path, monkeypatch):
    whole, resumed = interrupted_then_resumed(tmp_path, monkeypatch, "cpu")
    assert resumed.accuracy_matrix == whole.accuracy_matrix
    assert resumed.steps_per_task == whole.steps_per_task == [30, 30]


def test_resume_refuses_a_different_config_and_names_the_keys(tmp_path, capsys):
    out = tmp_path / "r"
    main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--out", str(out), *FAST])
    code = console_main(["run", "--resume", str(out), "--lr", "0.5", "--epochs", "3"])
    err = capsys.readouterr().err
    assert code == 2 and "lr (saved 0.001, given 0.5)" in err and "epochs" in err and "--override-config" in err
    # options that do not change results (threads, progress) may differ freely
    assert main(["run", "--resume", str(out), "--threads", "2", "--no-progress"]).run_id


def test_resume_without_checkpoint_or_folder_is_a_clear_error(tmp_path, capsys):
    assert console_main(["run", "--resume", str(tmp_path / "nothing")]) == 2
    assert "no config.json" in capsys.readouterr().err
    out = tmp_path / "started"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"run_id": "x", **RunConfig.make(data_dir=str(TINY)).to_record()}))
    assert console_main(["run", "--resume", str(out)]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def tiny_checkpoint(path: Path, value: float = 1.0) -> None:
    save_checkpoint(path, {"model.w": torch.full((3, 2), value)}, {"progress": {"task": 1}})


def test_crash_during_save_leaves_the_previous_checkpoint_usable(tmp_path, monkeypatch):
    path = tmp_path / CHECKPOINT_FILE
    tiny_checkpoint(path, 1.0)
    import lifelong._io as io

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.os, "replace", crash)
    with pytest.raises(OSError):
        tiny_checkpoint(path, 2.0)
    monkeypatch.undo()
    tensors, meta = load_checkpoint(path)
    assert torch.equal(tensors["model.w"], torch.full((3, 2), 1.0)) and meta["progress"] == {"task": 1}
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]  # no temporary file left behind


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "not-lifelong"])
def test_corrupt_checkpoint_is_one_clear_line(tmp_path, damage):
    path = tmp_path / CHECKPOINT_FILE
    tiny_checkpoint(path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x80\x04\x95 pickle-looking bytes" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        from safetensors.torch import save

        path.write_bytes(save({"w": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match="corrupt or not a lifelong checkpoint") as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value) and e.value.exit_code == 2


def test_checkpoint_of_another_model_shape_names_the_parameter(tmp_path, capsys):
    out = tmp_path / "r"
    args = ["run", "--benchmark", "split-mnist", "--tasks", "2", "--checkpoint-every", "3", "--out", str(out), *FAST]
    main(args)
    cfg = RunConfig.make(benchmark="split-mnist", tasks=2, hidden=(32,), data_dir=str(TINY)).resolve()
    stream = build_stream(cfg)
    model = seeded_model(cfg, stream)
    from lifelong.train.checkpoint import load_model_state, with_prefix

    save_checkpoint(out / CHECKPOINT_FILE, with_prefix(seeded_model(RunConfig.make(benchmark="split-mnist", tasks=2, hidden=(16,), data_dir=str(TINY)).resolve(), stream).state_dict(), "model"), {})
    tensors, _ = load_checkpoint(out / CHECKPOINT_FILE)
    with pytest.raises(CheckpointError, match=r"'1.weight' has shape \(16, 784\) in the checkpoint, \(32, 784\) in the model"):
        load_model_state(model, {k[6:]: v for k, v in tensors.items()})


def test_diverging_run_keeps_its_last_good_checkpoint(tmp_path):
    out = tmp_path / "d"
    args = ["run", "--benchmark", "split-mnist", "--tasks", "2", "--strategy", "ewc", "--lambda", "1e9",
            "--optimizer", "sgd", "--lr", "0.1", "--epochs", "10", "--checkpoint-every", "2", "--out", str(out), *FAST]
    with pytest.raises(TrainingDiverged, match="lower --lambda or --lr"):
        main(args)
    tensors, meta = load_checkpoint(out / CHECKPOINT_FILE)
    assert meta["progress"]["task"] == 1  # saved during task 2, before the loss blew up
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith("model."))
    assert not (out / "results.json").exists()


def test_no_pickle_anywhere_in_the_library():
    src = ROOT / "src" / "lifelong"
    for f in src.rglob("*.py"):
        text = f.read_text()
        for bad in ("import pickle", "torch.load(", "torch.save(", "pickle.load"):
            assert bad not in text, f"{f.name} uses {bad}"


def test_same_config_same_results_json_timings_aside(tmp_path):
    args = ["run", "--benchmark", "split-mnist", "--tasks", "3", "--strategy", "rwalk", "--lambda", "1", *FAST]
    main([*args, "--out", str(tmp_path / "a")])
    main([*args, "--out", str(tmp_path / "b")])
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in "ab")
    for r in (a, b):
        r.pop("timings"), r.pop("peak_memory_bytes"), r["config"]["runtime"].pop("out")
    assert a == b


LEGACY = FIXTURES / "legacy-v1"


def test_folders_of_lifelong_0_1_are_read_finished_runs_return_their_results(tmp_path):
    """A 0.1 config is flat: every strategy's settings beside the run's. It reads as the nested form,
    keeping the settings of its own strategy; a finished run resumes to its results.json."""
    import shutil

    from lifelong.strategies.regularization import EWCSettings

    saved = json.loads((LEGACY / "config.json").read_text())
    assert "settings" not in saved and saved["lam"] == 50.0 and saved["xi"] == 0.1  # really the old layout
    saved.pop("run_id")
    cfg = RunConfig.from_record(saved).resolve()
    assert cfg.strategy == EWCSettings(lam=50.0, fisher="exact", mc_samples=1)
    run = tmp_path / "old"
    shutil.copytree(LEGACY, run)
    (run / "checkpoint.safetensors").unlink()
    res = main(["run", "--resume", str(run), "--no-progress"])
    assert res.accuracy_matrix == json.loads((LEGACY / "results.json").read_text())["accuracy_matrix"]


def test_folders_of_lifelong_0_1_with_a_checkpoint_say_they_cannot_continue(tmp_path, capsys):
    import shutil

    run = tmp_path / "old"
    shutil.copytree(LEGACY, run)
    (run / "results.json").unlink()
    assert console_main(["run", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "written by lifelong 0.1" in err and "--overwrite" in err and err.count("\n") == 1


@pytest.mark.parametrize("task, step", [(1, 0), (1, 10)])  # at a task boundary and in the middle of a task
def test_a_kept_optimizer_carries_over_between_tasks_and_resumes_exactly(tmp_path, monkeypatch, task, step):
    args = ["run", "--benchmark", "split-mnist", "--tasks", "3", "--strategy", "l2", "--optimizer-state", "keep",
            "--iterations", "20", "--checkpoint-every", "10", *FAST]
    whole = main([*args, "--out", str(tmp_path / "whole")])
    stop_after_checkpoint(monkeypatch, args, tmp_path / "cut", task=task, step=step)
    tensors, _ = load_checkpoint(tmp_path / "cut" / CHECKPOINT_FILE)
    steps = [v for k, v in tensors.items() if k.startswith("optim.") and k.endswith(".step")]
    assert steps and float(steps[0]) == 20 * task + step  # one Adam since the first step (reset: `step` steps)
    resumed = main(["run", "--resume", str(tmp_path / "cut"), "--no-progress", "--threads", "1"])
    assert resumed.accuracy_matrix == whole.accuracy_matrix


LEGACY_V2 = FIXTURES / "legacy-v2"


def test_folders_of_lifelong_0_2_keep_their_run_ids():
    from lifelong.experiments.runs import read_config

    for name in ("finished", "interrupted"):
        saved = json.loads((LEGACY_V2 / name / "config.json").read_text())
        assert saved["config_version"] == 2 and saved["benchmark"] == "split-mnist"  # really the flat layout of 0.2
        cfg = read_config(LEGACY_V2 / name)
        assert cfg.data == saved["data"] and not saved["data"]["canonical"]  # the fixture's tiny MNIST
        published = cfg.with_data({**saved["data"], "canonical": True})
        assert published.run_id == saved["run_id"]  # on the published files, the id of 0.2
        assert cfg.run_id != saved["run_id"] and cfg.run_id.startswith("split-mnist-ewc+er-")  # on other data it
        assert cfg.with_data({**saved["data"], "md5": {}}).run_id != cfg.run_id  # covers them, as 0.2's did not
        assert cfg.strategy_name == "ewc+er" and cfg.strategy.parts[1].memory == 20


def test_folders_of_lifelong_0_2_interrupted_mid_task_resume_to_the_matrix_0_2_reached(tmp_path):
    """The checkpoint 0.2 wrote at step 2 of task 2 (EWC's penalty, ER's memory, Adam's moments) is
    loaded by this version, which trains on to the accuracy matrix 0.2's uninterrupted run reached."""
    import shutil

    run = tmp_path / "old"
    shutil.copytree(LEGACY_V2 / "interrupted", run)
    finished = json.loads((LEGACY_V2 / "finished" / "results.json").read_text())
    res = main(["run", "--resume", str(run), "--no-progress", "--threads", "1", "--data-dir", str(TINY)])
    assert res.accuracy_matrix == finished["accuracy_matrix"]  # to the last bit
    # the run continues under an id that covers its (non-published) data, in every file of the folder
    from lifelong.experiments.runs import read_config

    assert res.run_id == read_config(LEGACY_V2 / "finished").run_id != finished["run_id"]
    assert json.loads((run / "results.json").read_text())["run_id"] == res.run_id
    assert json.loads((run / "config.json").read_text())["run_id"] == res.run_id


def test_folders_of_lifelong_0_2_compare_as_the_same_runs_as_new_ones(tmp_path):
    """A new run of a 0.2 run's config on the same data is the same experiment: compare counts one run."""
    import shutil

    from lifelong.experiments.collect import compare

    shutil.copytree(LEGACY_V2 / "finished", tmp_path / "old")
    new = main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--strategy", "ewc+er", "--lambda", "10",
                "--memory", "20", "--iterations", "6", "--hidden", "8", "--threads", "1", "--no-progress",
                "--data-dir", str(TINY), "--no-download", "--out", str(tmp_path / "new")])
    old = json.loads((tmp_path / "old" / "results.json").read_text())
    assert new.accuracy_matrix == old["accuracy_matrix"]  # (ids differ: 0.2's did not cover the data)
    table = compare([tmp_path], write=False, quiet=True)
    assert len(table["rows"]) == 1 and table["rows"][0]["values"]["average_accuracy"]["n"] == 1


def test_without_a_terminal_a_run_prints_a_line_per_task_and_checkpoint_and_quiet_silences_it(tmp_path, capsys):
    """Output to a log file or a batch job: one line per task (steps, seconds, the accuracy row so far)
    and one per checkpoint; --quiet prints only the result."""
    args = ["run", "--benchmark", "split-mnist", "--tasks", "2", "--iterations", "4", "--checkpoint-every", "3",
            "--data-dir", str(TINY), "--no-download", "--hidden", "8", "--threads", "1"]
    res = main([*args, "--out", str(tmp_path / "a")])  # capsys: stderr is not a terminal
    err = capsys.readouterr().err.splitlines()
    tasks = [x for x in err if x.startswith("task ")]
    assert [x.split(":")[0] for x in tasks] == ["task 1/2 classes 0-1", "task 2/2 classes 2-3"]
    R = res.accuracy_matrix
    assert tasks[1].endswith(f"accuracy % [{100 * R[2][0]:.1f} {100 * R[2][1]:.1f}]") and "4 steps" in tasks[1]
    assert tasks[0].endswith(f"[{100 * R[1][0]:.1f} -]")
    checkpoints = [x for x in err if x.startswith("checkpoint ")]
    assert checkpoints == [f"checkpoint ({w}) -> {tmp_path / 'a' / 'checkpoint.safetensors'}"
                           for w in ("task 1, step 3", "after task 1", "task 2, step 3", "after task 2")]
    main([*args, "--quiet", "--out", str(tmp_path / "b")])
    assert capsys.readouterr().err == ""
