"""Never lose a run, never report a wrong one: run folders, checkpoints, silent wrong results, and
fuzzing that only a correct result or the library's own one-line error may come out of.

Each class of the hostile-user review has tests of its mechanism here: a lock per folder, leftovers,
run ids in every file, --overwrite, overrides that are all-or-nothing; checksums, run id, config and
data fingerprint in checkpoints and their structure; failed reproductions, wrapped models, exploding
parameters; and hypothesis over configs, checkpoint corruptions, config/results contents and kill
points.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lifelong.experiments.folder as folder_module
from lifelong.cli import console_main, main
from lifelong.errors import LifelongError
from lifelong.experiments import folder
from lifelong.train.checkpoint import CHECKPOINT_FILE, CheckpointError, load_checkpoint, save_checkpoint

from tests.helpers_process import stop_after_checkpoint
from tests.helpers import FASHION, TINY

FAST = ["--data-dir", str(TINY), "--no-download", "--no-progress", "--hidden", "16", "--threads", "1"]
RUN = ["run", "--benchmark", "permuted-mnist", "--tasks", "3", "--strategy", "ewc+si", "--iterations", "12",
       "--checkpoint-every", "4", *FAST]


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.name != ".lock"}


@pytest.fixture
def interrupted(tmp_path, monkeypatch):
    """A run stopped right after its mid-task checkpoint at task 2, step 8 (as a kill would leave it),
    and the uninterrupted run's results to compare with."""
    whole = main([*RUN, "--out", str(tmp_path / "whole")])
    out = tmp_path / "cut"
    stop_after_checkpoint(monkeypatch, RUN, out, task=1, step=8)
    return out, whole


def resumes_exactly(out: Path, whole) -> None:
    resumed = main(["run", "--resume", str(out), "--no-progress"])
    assert resumed.accuracy_matrix == whole.accuracy_matrix


# ---- 1. a run folder is never lost or mixed -------------------------------------------------------------------


def test_a_resume_that_would_change_the_stream_is_refused_and_the_folder_is_untouched(interrupted, capsys):
    out, whole = interrupted
    before = snapshot(out)
    for change in (["--tasks", "5"], ["--strategy", "ewc"], ["--hidden", "32"], ["--seed", "3"],
                   ["--optimizer", "sgd"], ["--val-fraction", "0.1"], ["--benchmark", "rotated-mnist"]):
        code = console_main(["run", "--resume", str(out), "--override-config", *change])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (change, err)
        assert snapshot(out) == before, change
    resumes_exactly(out, whole)


def test_an_override_of_a_hyperparameter_continues_under_a_new_run_id(interrupted):
    out, _ = interrupted
    old = json.loads((out / "config.json").read_text())["run_id"]
    res = main(["run", "--resume", str(out), "--override-config", "--lr", "0.002", "--no-progress"])
    new = json.loads((out / "config.json").read_text())
    assert res.run_id == new["run_id"] != old and new["train"]["lr"] == 0.002
    assert json.loads((out / "results.json").read_text())["run_id"] == new["run_id"]
    assert not (out / folder.JOURNAL).exists()


@pytest.mark.parametrize("crash_at", ["after the journal", "after the checkpoint"])
def test_an_override_interrupted_between_its_writes_is_rolled_back_or_completed(interrupted, monkeypatch, crash_at):
    """The journal makes an override all-or-nothing: the next command finds the folder consistent."""
    import lifelong.experiments.runs as runs_module

    out, whole = interrupted
    old_id = json.loads((out / "config.json").read_text())["run_id"]

    def crash(*a, **k):
        raise KeyboardInterrupt

    target = "save_checkpoint" if crash_at == "after the journal" else "finish_override"
    monkeypatch.setattr(runs_module if target == "save_checkpoint" else folder_module, target, crash)
    with pytest.raises(KeyboardInterrupt):
        main(["run", "--resume", str(out), "--override-config", "--epochs", "1", "--iterations", "16", "--no-progress"])
    monkeypatch.undo()
    assert (out / folder.JOURNAL).exists()
    folder.recover(out)
    ids = folder.identity(out)
    assert ids["config.json"] == ids[CHECKPOINT_FILE]  # consistent again
    assert (ids["config.json"] == old_id) == (crash_at == "after the journal")
    if crash_at == "after the journal":
        resumes_exactly(out, whole)  # rolled back: the original run, intact
    else:
        assert main(["run", "--resume", str(out), "--no-progress"]).steps_per_task == [12, 16, 16]


def test_overwrite_removes_the_old_runs_files_before_the_new_config(tmp_path, monkeypatch):
    import lifelong.experiments.runs as runs_module

    out = tmp_path / "r"
    main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--iterations", "3", "--out", str(out), *FAST])
    real = runs_module.save_checkpoint

    def stop(path, tensors, meta):
        real(path, tensors, meta)
        raise KeyboardInterrupt

    monkeypatch.setattr(runs_module, "save_checkpoint", stop)
    with pytest.raises(KeyboardInterrupt):
        main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--strategy", "ewc", "--iterations", "3",
              "--checkpoint-every", "1", "--overwrite", "--out", str(out), *FAST])
    monkeypatch.undo()
    names = {p.name for p in out.iterdir()}
    assert "results.json" not in names and "accuracy_matrix.csv" not in names  # the naive run's are gone
    ids = folder.identity(out)
    assert ids["config.json"] == ids[CHECKPOINT_FILE] and ids["config.json"].startswith("split-mnist-ewc-")
    res = main(["run", "--resume", str(out), "--no-progress"])
    assert res.strategy == "ewc" and res.run_id == ids["config.json"]


SMALL = ["run", "--benchmark", "split-mnist", "--tasks", "2", "--iterations", "2", *FAST]


def test_the_same_command_again_never_touches_a_finished_run(tmp_path, capsys):
    """A finished run is modified only by --overwrite; --resume reports it as it is."""
    out = tmp_path / "r"
    first = main([*SMALL, "--out", str(out)])
    before = snapshot(out)
    capsys.readouterr()
    assert console_main([*SMALL, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "finished" in err and "--resume" in err and "--overwrite" in err and err.count("\n") == 1
    assert snapshot(out) == before
    assert main(["run", "--resume", str(out), "--no-progress"]).accuracy_matrix == first.accuracy_matrix
    assert snapshot(out) == before
    again = main([*SMALL, "--out", str(out), "--overwrite"])
    assert again.accuracy_matrix == first.accuracy_matrix


@pytest.mark.parametrize("name", [folder.LOCK_FILE, "events.jsonl", "results.json", "config.json", "tensorboard"])
@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_nothing_is_written_through_a_link_in_the_run_folder(tmp_path, capsys, name, link):
    """A folder unpacked from someone else's archive: a name the run writes that is a link to a file
    outside is refused in one line, and the file outside keeps its bytes."""
    if link == "hard" and name == "tensorboard":
        pytest.skip("folders have no hard links")
    outside = tmp_path / "precious"
    if name == "tensorboard":
        outside.mkdir()
    else:
        outside.write_text("keep me\n")
    out = tmp_path / "r"
    out.mkdir()
    (out / name).symlink_to(outside) if link == "symbolic" else os.link(outside, out / name)
    assert console_main([*SMALL, "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("symbolic link" in err or "hard link" in err) and name in err
    if name != "tensorboard":
        assert outside.read_text() == "keep me\n"
    assert not (out / "results.json").exists() or (out / "results.json").is_symlink() or name == "results.json"


def test_a_resume_never_appends_to_an_event_log_that_became_a_link(interrupted, tmp_path, capsys):
    out, _ = interrupted
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    (out / "events.jsonl").unlink()
    (out / "events.jsonl").symlink_to(outside)
    before = snapshot(out)
    assert console_main(["run", "--resume", str(out)]) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert outside.read_text() == "keep me\n" and snapshot(out) == before


def test_the_event_log_opener_itself_refuses_links(tmp_path):
    """The check before training and the open that follows are two moments: the open refuses too."""
    from lifelong._io import NotOwnFile
    from lifelong.train.events import JsonLines

    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    (tmp_path / "events.jsonl").symlink_to(outside)
    with pytest.raises(NotOwnFile, match="symbolic link"):
        JsonLines(tmp_path / "events.jsonl")
    os.link(outside, tmp_path / "hard.jsonl")
    with pytest.raises(NotOwnFile, match="hard link"):
        JsonLines(tmp_path / "hard.jsonl")
    assert outside.read_text() == "keep me\n"


def test_a_folder_that_mixes_two_runs_is_refused_by_every_reader(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--iterations", "2", "--out", str(a), *FAST])
    main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--iterations", "2", "--strategy", "l2",
          "--out", str(b), *FAST])
    shutil.copy(b / "config.json", a / "config.json")  # the old bug's result: one run's config, another's results
    assert console_main(["run", "--resume", str(a)]) == 2
    assert "mixes two runs" in capsys.readouterr().err
    from lifelong.experiments.collect import compare

    table = compare([tmp_path], write=False, quiet=True)
    assert len(table["rows"]) == 1 and any("mix" in n for n in table["notes"])


@pytest.mark.process
def test_a_second_process_on_the_same_folder_is_refused_and_a_dead_ones_lock_is_taken(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, fcntl, os; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'%d\\n' % os.getpid()); print('locked', flush=True); "
        "time.sleep(60)"), str(out / folder.LOCK_FILE)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = console_main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--out", str(out), *FAST])
        err = capsys.readouterr().err
        assert code == 2 and f"pid {holder.pid}" in err and err.count("\n") == 1
        assert not (out / "config.json").exists()
        assert (out / folder.LOCK_FILE).read_text().split() == [str(holder.pid)]  # the refusal left it alone
        assert console_main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--out", str(out), *FAST]) == 2
        assert f"pid {holder.pid}" in capsys.readouterr().err  # so a second refusal still names the holder
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing anything by hand: its lock (and its pid in the file) is stale
    res = main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--iterations", "2", "--out", str(out), *FAST])
    assert res.run_dir == str(out)


def test_leftovers_of_a_killed_write_are_removed_by_the_next_resume(interrupted):
    out, whole = interrupted
    for name in (".checkpoint.safetensors.k1lled.tmp", ".results.json.x9.tmp"):
        (out / name).write_bytes(b"half a file")
    resumes_exactly(out, whole)
    assert not list(out.glob(".*.tmp"))


def test_a_fresh_run_does_not_restart_an_interrupted_one_by_accident(interrupted, capsys):
    out, whole = interrupted
    code = console_main([*RUN, "--out", str(out)])
    assert code == 2 and "--resume" in capsys.readouterr().err
    resumes_exactly(out, whole)


# ---- 2. a checkpoint is trusted only when it is provably this run's and intact --------------------------------


def _payload_offset(data: bytes) -> int:
    return 8 + int.from_bytes(data[:8], "little")


def test_flipped_bytes_in_the_tensors_or_the_header_are_detected(interrupted, capsys):
    out, whole = interrupted
    path = out / CHECKPOINT_FILE
    good = path.read_bytes()
    start = _payload_offset(good)
    for where in (start + 100, len(good) - 3, 40):  # model weights, the last tensor, the header's JSON
        bad = bytearray(good)
        bad[where] ^= 0x5A
        path.write_bytes(bytes(bad))
        code = console_main(["run", "--resume", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "checkpoint" in err, (where, err)
    path.write_bytes(good)
    resumes_exactly(out, whole)


def test_the_checkpoint_of_another_run_is_refused_naming_the_keys(tmp_path, interrupted, capsys):
    out, _ = interrupted
    other = tmp_path / "other"
    import lifelong.experiments.runs as runs_module

    real = runs_module.save_checkpoint
    try:
        def stop(path, tensors, meta):
            real(path, tensors, meta)
            if meta["progress"]["task"] == 1:
                raise KeyboardInterrupt
        runs_module.save_checkpoint = stop
        with pytest.raises(KeyboardInterrupt):
            main([*RUN, "--lr", "0.01", "--out", str(other)])
    finally:
        runs_module.save_checkpoint = real
    shutil.copy(other / CHECKPOINT_FILE, out / CHECKPOINT_FILE)
    capsys.readouterr()
    assert console_main(["run", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.safetensors belongs to run" in err and "lr: 0.001 / 0.01" in err and err.count("\n") == 1


def test_resuming_on_other_data_is_refused_the_same_data_elsewhere_is_fine(interrupted, tmp_path, capsys):
    out, whole = interrupted
    assert console_main(["run", "--resume", str(out), "--data-dir", str(FASHION)]) == 2
    err = capsys.readouterr().err
    assert "not the data this run was trained on" in err and err.count("\n") == 1
    copy = tmp_path / "elsewhere"
    shutil.copytree(TINY, copy)
    resumed = main(["run", "--resume", str(out), "--data-dir", str(copy), "--no-progress"])
    assert resumed.accuracy_matrix == whole.accuracy_matrix


def _rewritten(path: Path, edit) -> None:
    """A checkpoint rewritten by a careless tool: valid checksums, edited content."""
    tensors, meta = load_checkpoint(path)
    tensors, meta = edit(dict(tensors), json.loads(json.dumps(meta)))
    for k in ("format", "tensor_sha256", "meta_sha256"):
        meta.pop(k, None)
    save_checkpoint(path, tensors, meta)


def _set_progress(**kv):
    def edit(t, m):
        m["progress"].update(kv)
        return t, m
    return edit


def _drop_strategy_tensor(t, m):
    t.pop(next(k for k in t if k.startswith("strategy.ewc.penalty.importance.")))
    return t, m


def _drop_key(key):
    def edit(t, m):
        m["progress"].pop(key)
        return t, m
    return edit


def _swap_adam_moments(t, m):
    a = next(k for k in t if k.endswith(".exp_avg"))
    b = a[: -len("exp_avg")] + "exp_avg_sq"
    t[a], t[b] = t[b], t[a]
    return t, m


def _reshape_model(t, m):
    k = next(k for k in t if k.startswith("model.") and k.endswith("weight"))
    t[k] = t[k][:, :-1].clone()
    return t, m


@pytest.mark.parametrize("edit, message", [
    (_set_progress(task=99), "task 99 is not in 0..3"),
    (_set_progress(task=-1), "task -1"),
    (_set_progress(step=10**6), "past the 12 steps"),
    (_set_progress(steps_per_task="many"), "steps_per_task"),
    (_set_progress(R=[[0.5]]), "R must be 4 rows of 3"),
    (_drop_key("timings"), "'timings' is missing"),
    (_drop_strategy_tensor, "is missing (the penalty's importance of the tasks learned)"),
    (_reshape_model, "does not fit this model"),
    # same shapes, so it loads (its checksums were rewritten); Adam's second moment then holds negative values:
    # the run diverges at once and says so (exit 1), as any run whose state is wrong in value would
    (_swap_adam_moments, None),
])
def test_a_structurally_wrong_checkpoint_is_one_line_and_nothing_is_written(interrupted, capsys, edit, message):
    out, _ = interrupted
    _rewritten(out / CHECKPOINT_FILE, edit)
    before = snapshot(out)
    code = console_main(["run", "--resume", str(out), "--no-progress"])
    err = capsys.readouterr().err
    if message is None:
        assert code in (0, 1) and (code == 0 or ("the loss became nan" in err and err.count("\n") == 1)), err
        return
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert snapshot(out) == before


# ---- 3. no silent wrong result --------------------------------------------------------------------------------


def test_a_reproduction_whose_runs_fail_exits_non_zero_and_says_why(tmp_path, capsys, monkeypatch):
    # the full data set may be reachable through the environment (CI sets it): a typo in --data-dir must still
    # be an error, and an empty folder with nothing else to fall back on must be one too; never run the real table
    for args in (["--data-dir", str(tmp_path / "nothing")], ["--data-dir", str(tmp_path)]):
        if args[1] == str(tmp_path):
            monkeypatch.delenv("LIFELONG_DATA_DIR", raising=False)
            monkeypatch.setenv("LIFELONG_CACHE_DIR", str(tmp_path / "cache"))
        assert console_main(["reproduce", "hsu2018-split-mnist", "--methods", "naive", "--scenarios", "task",
                             "--seeds", "1", *args, "--no-download", "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert ("does not exist" in err if "nothing" in args[1] else "MNIST not found" in err), err
    import lifelong.experiments.executor as executor

    monkeypatch.setattr(executor, "run_job", lambda cfg, threads: {"status": "failed", "error": "TrainingDiverged",
                                                                    "message": "the loss became nan"})
    code = console_main(["reproduce", "hsu2018-split-mnist", "--methods", "naive", "--scenarios", "task", "--seeds", "2",
                         "--data-dir", str(TINY), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 1 and "2 of 2 runs failed" in err and "the loss became nan" in err


def _one_line_or_result(args: list[str]) -> int:
    """console_main must return 0, or 1/2 with exactly one line on stderr (checked by the caller's capsys)."""
    try:
        return console_main(args)
    except LifelongError as e:  # console_main turns these into lines; reaching here is a bug
        raise AssertionError(f"raised {e!r}") from None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(range(0, 10_000)), st.integers(0, 255)), min_size=1, max_size=3),
       st.sampled_from(["flip", "truncate", "append", "zero"]))
def test_fuzz_checkpoint_corruptions_give_an_error_or_the_exact_result(corrupted_run, changes, kind):
    out, whole, good = corrupted_run
    data = bytearray(good)
    if kind == "flip":
        for pos, byte in changes:
            data[pos % len(data)] ^= byte or 1
    elif kind == "truncate":
        data = data[: changes[0][0] % len(data)]
    elif kind == "append":
        data += bytes(b for _, b in changes)
    else:
        pos = changes[0][0] % len(data)
        data[pos : pos + 64] = bytes(len(data[pos : pos + 64]))
    (out / CHECKPOINT_FILE).write_bytes(bytes(data))
    for p in (out / "results.json",):
        p.unlink(missing_ok=True)
    try:
        tensors, meta = load_checkpoint(out / CHECKPOINT_FILE)
    except CheckpointError as e:
        assert "\n" not in str(e)
        return
    # it loaded: then it must be the checkpoint, to the bit (a change that touched nothing, e.g. padding)
    ref_tensors, ref_meta = load_checkpoint_bytes(good)
    assert meta == ref_meta and tensors.keys() == ref_tensors.keys()
    assert all(torch.equal(tensors[k], ref_tensors[k]) for k in tensors)


def load_checkpoint_bytes(data: bytes):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / CHECKPOINT_FILE
        p.write_bytes(data)
        return load_checkpoint(p)


@pytest.fixture(scope="module")
def corrupted_run(tmp_path_factory):
    """One interrupted run (module-wide: the fuzzer rewrites only its checkpoint's bytes)."""
    import lifelong.experiments.runs as runs_module

    base = tmp_path_factory.mktemp("fuzz")
    real = runs_module.save_checkpoint

    def stop(path, tensors, meta):
        real(path, tensors, meta)
        if meta["progress"]["task"] == 1 and meta["progress"]["step"] == 8:
            raise KeyboardInterrupt

    runs_module.save_checkpoint = stop
    try:
        with pytest.raises(KeyboardInterrupt):
            main([*RUN, "--out", str(base / "cut")])
    finally:
        runs_module.save_checkpoint = real
    out = base / "cut"
    return out, None, (out / CHECKPOINT_FILE).read_bytes()


JSON = st.recursive(st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=False) | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
CONFIG_KEYS = ["benchmark", "scenario", "tasks", "hidden", "lr", "strategy", "settings", "split_groups", "seed", "run_id",
               "epochs", "optimizer", "data", "accuracy_matrix", "metrics", "task_names", "val_metrics", "timings",
               "scenario"]


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 60)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["config.json", "results.json"]),
       st.one_of(JSON, st.dictionaries(st.sampled_from(CONFIG_KEYS), JSON, max_size=5), st.binary(max_size=40)))
def test_fuzz_config_and_results_contents_give_a_result_or_one_line(tmp_path_factory, capsys, name, content):
    """Garbage or wrongly typed config.json/results.json: resume and compare answer, or say one line."""
    src = tmp_path_factory.getbasetemp() / "fuzz-json-src"
    if not src.exists():
        main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--iterations", "2", "--out", str(src), *FAST])
    d = tmp_path_factory.mktemp("j") / "run"
    shutil.copytree(src, d)
    path = d / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        good = json.loads(path.read_text())
        path.write_text(json.dumps({**good, **content} if isinstance(content, dict) and len(content) < 3 else content))
    capsys.readouterr()
    for args in (["run", "--resume", str(d), "--no-progress"], ["compare", str(d), "--out", str(d)]):
        code = _one_line_or_result(args)
        err = capsys.readouterr().err
        assert code in (0, 1, 2) and "Traceback" not in err
        assert code == 0 or err.count("\n") == 1, (args, err)


@pytest.mark.process
@settings(max_examples=int(os.environ.get("FUZZ_KILLS", 4)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.floats(0.2, 0.95))
def test_fuzz_kill_at_a_random_moment_then_resume_is_exact(tmp_path_factory, when):
    """SIGKILL a real process at a random point of its run (between or during checkpoint writes), then
    resume: the matrix equals an uninterrupted run's, to the bit; the folder is never left unresumable."""
    base = tmp_path_factory.mktemp("kill")
    args = ["run", "--benchmark", "permuted-mnist", "--tasks", "3", "--strategy", "si", "--iterations", "120",
            "--checkpoint-every", "5", *FAST]
    whole = base.parent / "kill-reference.json"
    if not whole.exists():
        whole.write_text(json.dumps(main([*args, "--out", str(base / "whole")]).accuracy_matrix))
    out = base / "cut"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lifelong", *args, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (out / "config.json").exists() and time.time() - t0 < 60:
        time.sleep(0.01)
    time.sleep(when * 4.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (out / "results.json").exists():  # it finished before the kill
        assert json.loads((out / "results.json").read_text())["accuracy_matrix"] == json.loads(whole.read_text())
        return
    if not (out / CHECKPOINT_FILE).exists():  # killed before its first checkpoint: start again is the answer
        assert console_main(["run", "--resume", str(out), "--no-progress"]) == 2
        return
    resumed = main(["run", "--resume", str(out), "--no-progress"])
    assert resumed.accuracy_matrix == json.loads(whole.read_text())


@pytest.mark.parametrize("task, step", [(0, 12), (2, 12), (3, 0)],
                         ids=["task 1's last step", "task 3's last step", "after the last task"])
def test_a_run_killed_right_after_a_checkpoint_at_a_tasks_end_resumes_exactly(tmp_path, monkeypatch, task, step):
    """Killed right after the checkpoint at a task's last step (checkpoint_every divides its 12 steps), before
    after_task and the task's row: the resumed run ends the task without a step more (found by the kill
    fuzz). Killed after the checkpoint that follows the last task (every task trained, results not yet
    written): that checkpoint is valid too."""
    import lifelong.experiments.runs as runs_module

    whole = main([*RUN, "--out", str(tmp_path / "whole")])
    real = runs_module.save_checkpoint

    def stop_there(path, tensors, meta):
        real(path, tensors, meta)
        if (meta["progress"]["task"], meta["progress"]["step"]) == (task, step):
            raise KeyboardInterrupt

    monkeypatch.setattr(runs_module, "save_checkpoint", stop_there)
    with pytest.raises(KeyboardInterrupt):
        main([*RUN, "--out", str(tmp_path / "cut")])
    monkeypatch.undo()
    resumes_exactly(tmp_path / "cut", whole)


def test_one_sweep_per_folder(tmp_path, capsys):
    root = tmp_path / "s"
    root.mkdir()
    with folder.locked(root, "sweep"):
        code = console_main(["sweep", "--strategies", "naive", "--benchmark", "split-mnist", "--tasks", "2",
                             "--iterations", "1", "--out", str(root), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "in use by another lifelong process" in err and err.count("\n") == 1




# ---- errors of the machine and of your code: one line, and what survived -------------------------------------


@pytest.mark.parametrize("where", ["checkpoint", "results"])
def test_a_full_disk_is_one_line_naming_the_file_and_the_checkpoint_that_survived(tmp_path, monkeypatch, capsys, where):
    """ENOSPC at a checkpoint write, or at the results: one line, exit 1, the last checkpoint intact,
    and the resume afterwards gives the uninterrupted run's matrix."""
    import errno

    import lifelong.experiments.runs as runs_module
    import lifelong.report as report_module

    whole = main([*RUN, "--out", str(tmp_path / "whole")])
    out = tmp_path / "cut"
    real_save, real_write = runs_module.save_checkpoint, report_module.write_run_outputs
    calls = []

    def full(path, *args):
        calls.append(path)
        if where == "results" or len(calls) == 5:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(path, *args)

    if where == "checkpoint":
        monkeypatch.setattr(runs_module, "save_checkpoint", full)
    else:
        monkeypatch.setattr(report_module, "write_run_outputs", full)
    capsys.readouterr()
    assert console_main([*RUN, "--quiet", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "is intact" in err and "--resume" in err
    assert str(out) in err
    monkeypatch.setattr(runs_module, "save_checkpoint", real_save)
    monkeypatch.setattr(report_module, "write_run_outputs", real_write)
    resumes_exactly(out, whole)


def test_an_os_error_anywhere_else_is_one_line_with_its_file(tmp_path, monkeypatch, capsys):
    import lifelong.experiments.runs as runs_module

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x" / "events.jsonl"))

    monkeypatch.setattr(runs_module, "_event_log", refuse)
    assert console_main([*SMALL, "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "events.jsonl: Permission denied" in err


def test_resume_never_ignores_an_out_or_overwrite_given_with_it(interrupted, tmp_path, capsys):
    out, whole = interrupted
    before = snapshot(out)
    for extra, words in [(["--out", str(tmp_path / "elsewhere")], "--out"), (["--overwrite"], "--overwrite")]:
        assert console_main(["run", "--resume", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1
        assert snapshot(out) == before and not (tmp_path / "elsewhere").exists()
    resumed = main(["run", "--resume", str(out), "--out", str(out), "--no-progress"])  # its own folder: fine
    assert resumed.accuracy_matrix == whole.accuracy_matrix
