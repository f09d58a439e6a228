"""Devices on any machine: names, the one-line error for a device that is not there, the run's
record of its device, and a loop that reads nothing back from the device per step. (The CUDA runs
themselves are tests/train/test_cuda.py, skipped without a GPU.)"""

from __future__ import annotations


import pytest
import torch

from lifelong.cli import console_main, main
from lifelong.data import load_dataset
from lifelong.errors import TrainingDiverged, UsageError
from lifelong.models import mlp
from lifelong.scenarios import permuted
from lifelong.strategies import Naive
from lifelong.train import TrainSettings, resolve_device, run_stream
from tests.helpers import TINY

FAST = ["--data-dir", str(TINY), "--no-download", "--no-progress", "--hidden", "8", "--threads", "1"]


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad, message in [("tpu", "unknown device 'tpu'"), ("cuda:x", "expected cuda:N")]:
        with pytest.raises(UsageError, match=message):
            resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_missing_gpu_is_one_line_and_exit_2_and_nothing_is_written(tmp_path, capsys):
    code = console_main(["run", "--device", "cuda", "--benchmark", "split-mnist", "--tasks", "2",
                         "--out", str(tmp_path / "r"), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "no CUDA GPU is available" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_results_record_the_device(tmp_path):
    res = main(["run", "--device", "cpu", "--benchmark", "split-mnist", "--tasks", "2", "--iterations", "2",
                "--out", str(tmp_path / "r"), *FAST])
    assert res.device == "cpu" and res.peak_device_memory_bytes is None and res.peak_memory_bytes > 0


@pytest.fixture(scope="module")
def stream():
    return permuted(load_dataset("mnist", TINY, download=False), 1, "domain", seed=0)


def test_a_training_step_reads_nothing_back_from_the_device(stream, monkeypatch):
    """The non-finite loss check looks at the losses every check_every steps: 40 steps with 20 between
    checks read the device twice (stack + any per check), not 40 times."""
    reads = []
    for name in ("item", "__bool__", "__int__", "__float__", "tolist"):
        original = getattr(torch.Tensor, name)

        def counting(self, *a, _original=original, _name=name, **k):
            reads.append(_name)
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counting)
    from lifelong.train import Learner, fit_task

    torch.manual_seed(0)
    cl = Learner(mlp(784, (8,), 10), Naive(), stream, settings=TrainSettings("sgd", 0.1, iterations=40, check_every=20))
    cl.rows = [[0.0]]  # no evaluation before the task: what is counted is the training
    cl.start_task(0)
    reads.clear()
    fit_task(cl)
    assert len(reads) <= 2 + 1, reads  # one read per check, and the parameters' check at the task's end


def test_a_diverging_loss_stops_within_check_every_steps_naming_the_first_bad_one(stream):
    """lr = 1e12 turns the loss non-finite at some step k; the run stops at the next check (at most
    check_every − 1 steps later) and the message names step k, as a per-step check would."""
    taken = []

    class Count(Naive):
        def after_step(self, ctx, step):
            taken.append(ctx.task_step)

    torch.manual_seed(0)
    with pytest.raises(TrainingDiverged) as e:
        run_stream(mlp(784, (8,), 10), stream, Count(), TrainSettings("sgd", 1e12, iterations=200, check_every=7),
                   device="cpu")
    first_bad = int(str(e.value).split("at step ")[1].split()[0])  # 1-based
    assert 1 <= first_bad <= len(taken) < first_bad + 7
    assert "lower `lr`" in str(e.value) and e.value.params == ("lr",)
