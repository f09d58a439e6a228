"""Stopping a run at a chosen checkpoint, the two ways the tests need: in process (the checkpoint is
written, then KeyboardInterrupt, as a kill right after it would leave the folder) and as a real
process killed with SIGKILL once a mid-task checkpoint exists."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lifelong.cli import main
from lifelong.train.checkpoint import CHECKPOINT_FILE, load_checkpoint


def stop_after_checkpoint(monkeypatch, args: list[str], out: Path, task: int, step: int) -> None:
    """Run ``lifelong`` ``args --out out`` and stop it right after the checkpoint of (task, step)."""
    import lifelong.experiments.runs as runs_module

    real = runs_module.save_checkpoint

    def save_then_stop(path, tensors, meta):
        real(path, tensors, meta)
        if meta["progress"]["task"] == task and meta["progress"]["step"] == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(runs_module, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        main([*args, "--out", str(out)])
    monkeypatch.setattr(runs_module, "save_checkpoint", real)


def read_progress(path: Path):
    try:
        return load_checkpoint(path)[1]["progress"]
    except Exception:  # not there yet, or being written
        return None


def kill_mid_task(args: list[str], out: Path, task: int, min_step: int, timeout: float = 120) -> None:
    """Start ``lifelong`` ``args --out out`` as a process (in its own process group, with every process it
    starts: the ranks of ``--nproc``) and SIGKILL the group once a checkpoint of ``task`` at step
    ``min_step`` or later exists."""
    proc = subprocess.Popen([sys.executable, "-m", "lifelong", *args, "--out", str(out)],
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            progress = read_progress(out / CHECKPOINT_FILE) if (out / CHECKPOINT_FILE).exists() else None
            if progress and progress["task"] == task and progress["step"] >= min_step:
                break
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()!r}"
            time.sleep(0.005)
        else:
            pytest.fail("no mid-task checkpoint appeared")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
