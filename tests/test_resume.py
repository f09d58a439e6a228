"""Never lose a run: checkpoints, resume to the last bit, safe state files, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lifelong.cli import console_main, main
from lifelong.errors import TrainingDiverged
from lifelong.experiments.build import build_strategy, build_stream, seeded_model
from lifelong.experiments.config import RunConfig
from lifelong.models import Heads
from lifelong.scenarios import batches
from lifelong.strategies import STRATEGIES, Context, registry
from lifelong.train import TrainSettings, train_task
from lifelong.train.checkpoint import (
    CHECKPOINT_FILE,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)

from interrupt import kill_mid_task, read_progress, stop_after_checkpoint

TINY = str(Path(__file__).parent / "data" / "mnist-tiny")
FAST = ["--data-dir", TINY, "--no-download", "--no-progress", "--hidden", "32", "--threads", "1"]


def test_sigkill_mid_task_then_resume_gives_the_same_matrix_to_the_last_bit(tmp_path):
    args = ["run", "--benchmark", "permuted-mnist", "--tasks", "3", "--strategy", "si", "--lambda", "10",
            "--iterations", "400", "--checkpoint-every", "7", *FAST]
    whole = main([*args, "--out", str(tmp_path / "whole")])

    out = tmp_path / "killed"
    kill_mid_task(args, out, task=1, min_step=50)
    assert not (out / "results.json").exists()
    resumed = main(["run", "--resume", str(out), "--no-progress", "--threads", "1"])
    assert resumed["accuracy_matrix"] == whole["accuracy_matrix"]  # exact equality of every float
    assert resumed["steps_per_task"] == whole["steps_per_task"]
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
    assert resumed["accuracy_matrix"] == whole["accuracy_matrix"]
    assert resumed["steps_per_task"] == whole["steps_per_task"] == [30, 30]


def test_resume_refuses_a_different_config_and_names_the_keys(tmp_path, capsys):
    out = tmp_path / "r"
    main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--out", str(out), *FAST])
    code = console_main(["run", "--resume", str(out), "--lr", "0.5", "--epochs", "3"])
    err = capsys.readouterr().err
    assert code == 2 and "lr (saved 0.001, given 0.5)" in err and "epochs" in err and "--override-config" in err
    # options that do not change results (threads, progress) may differ freely
    assert main(["run", "--resume", str(out), "--threads", "2", "--no-progress"])["run_id"]


def test_resume_without_checkpoint_or_folder_is_a_clear_error(tmp_path, capsys):
    assert console_main(["run", "--resume", str(tmp_path / "nothing")]) == 2
    assert "no config.json" in capsys.readouterr().err
    out = tmp_path / "started"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"run_id": "x", **RunConfig(data_dir=TINY).to_dict()}))
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
    cfg = RunConfig(benchmark="split-mnist", tasks=2, hidden=(32,), data_dir=TINY).resolved()
    stream = build_stream(cfg)
    model = seeded_model(cfg, stream)
    from lifelong.train.checkpoint import load_model_state, with_prefix

    save_checkpoint(out / CHECKPOINT_FILE, with_prefix(seeded_model(RunConfig(benchmark="split-mnist", tasks=2, hidden=(16,), data_dir=TINY).resolved(), stream).state_dict(), "model"), {})
    tensors, _ = load_checkpoint(out / CHECKPOINT_FILE)
    with pytest.raises(CheckpointError, match=r"'1.weight' has shape \(16, 784\) in the checkpoint, \(32, 784\) in the model"):
        load_model_state(model, {k[6:]: v for k, v in tensors.items()})


def _cfg(name: str, **settings) -> RunConfig:
    """A tiny permuted-MNIST config for ``name`` with those of ``settings`` that it has."""
    own = {k: v for k, v in settings.items() if k in registry.setting_keys(name)}
    return RunConfig.make(benchmark="permuted-mnist", tasks=2, hidden=(16,), data_dir=TINY, strategy=name, **own).resolved()


def _trained_strategy(name: str, stream, cfg):
    """A strategy after one consolidated task and a few steps into the next (mid-task state), trained
    by the library's loop."""
    strategy = build_strategy(cfg)
    model = seeded_model(cfg, stream)
    ctx = Context(model, Heads.of(stream), stream=stream, generator=torch.Generator().manual_seed(0))
    settings, order = TrainSettings("adam", 1e-2, batch_size=64, iterations=3), torch.Generator().manual_seed(0)
    for i in range(2):
        ctx.task, ctx.task_index, ctx.optimizer = stream[i], i, None
        train_task(ctx, strategy, settings, order)
        if i == 0:
            strategy.after_task(ctx)
    return strategy, model, ctx


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_state_round_trips_exactly_through_a_checkpoint(name, tmp_path):
    cfg = _cfg(name, fisher="mc", lam=3.0)
    stream = build_stream(cfg)
    strategy, model, ctx = _trained_strategy(name, stream, cfg)
    path = tmp_path / "s.safetensors"
    save_checkpoint(path, {f"strategy.{k}": v for k, v in strategy.state_dict().items()}, {})
    tensors, _ = load_checkpoint(path)
    fresh = build_strategy(cfg)
    fresh.load_state_dict({k[len("strategy."):]: v for k, v in tensors.items()})
    fresh.check_state(model)
    sa, sb = strategy.state_dict(), fresh.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) and sa[k].dtype == sb[k].dtype for k in sa)
    x, _, t = next(batches([stream[0]], "test", batch_size=32))
    assert torch.equal(strategy.predict(ctx, x, t), fresh.predict(ctx, x, t))  # iCaRL's nearest means too
    a, b = strategy.penalty(model), fresh.penalty(model)
    if a is None:  # no penalty: the next consolidation (memory selection, herding) continues identically
        assert b is None
        rng = ctx.generator.get_state()
        strategy.after_task(ctx)
        ctx.generator.set_state(rng)
        fresh.after_task(ctx)
        sa, sb = strategy.state_dict(), fresh.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
        return
    ga = torch.autograd.grad(a, list(model.parameters()), allow_unused=True)
    gb = torch.autograd.grad(b, list(model.parameters()), allow_unused=True)
    assert a.item() == b.item()
    assert all((x is None and y is None) or torch.equal(x, y) for x, y in zip(ga, gb))
    # and the next consolidation continues identically (the same generator state for MC labels)
    rng = ctx.generator.get_state()
    strategy.after_task(ctx)
    ctx.generator.set_state(rng)
    fresh.after_task(ctx)
    assert strategy.penalty(model).item() == fresh.penalty(model).item()


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
    src = Path(__file__).parents[1] / "src" / "lifelong"
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
        r.pop("timings"), r.pop("peak_memory_bytes"), r["config"].pop("out")
    assert a == b


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_loop_fast_penalty_gradient_equals_autograd_of_the_penalty(name):
    """The loop adds λΩ(θ − θ̄) to p.grad directly; it must equal backpropagating penalty()."""
    cfg = _cfg(name, lam=3.0)
    stream = build_stream(cfg)
    strategy, model, _ = _trained_strategy(name, stream, cfg)
    x, y, _ = next(batches([stream[1]], "train", batch_size=32))
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    strategy.add_penalty_grad(model)
    fast = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    penalty = strategy.penalty(model)
    loss = torch.nn.functional.cross_entropy(model(x), y) + (0 if penalty is None else penalty)
    loss.backward()
    for a, p in zip(fast, model.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-7)  # float32: summation order differs


LEGACY = Path(__file__).parent / "data" / "legacy-v1"


def test_folders_of_lifelong_0_1_are_read_finished_runs_return_their_results(tmp_path):
    """A 0.1 config is flat: every strategy's settings beside the run's. It reads as the nested form,
    keeping the settings of its own strategy; a finished run resumes to its results.json."""
    import shutil

    from lifelong.strategies.regularization import EWCSettings

    saved = json.loads((LEGACY / "config.json").read_text())
    assert "settings" not in saved and saved["lam"] == 50.0 and saved["xi"] == 0.1  # really the old layout
    saved.pop("run_id")
    cfg = RunConfig.from_dict(saved).resolved()
    assert cfg.strategy == "ewc" and cfg.settings == EWCSettings(lam=50.0, fisher="exact", mc_samples=1)
    run = tmp_path / "old"
    shutil.copytree(LEGACY, run)
    (run / "checkpoint.safetensors").unlink()
    res = main(["run", "--resume", str(run), "--no-progress"])
    assert res["accuracy_matrix"] == json.loads((LEGACY / "results.json").read_text())["accuracy_matrix"]


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
    assert resumed["accuracy_matrix"] == whole["accuracy_matrix"]
