"""A whole stream in one call (run_stream) and the results it reports."""

from __future__ import annotations

import pytest
import torch

from lifelong.cli import main
from lifelong.errors import TrainingDiverged, UsageError
from lifelong.strategies import Naive
from lifelong.train import TrainSettings, run_stream
from tests.helpers import TINY, tiny_model, tiny_stream


def test_forward_transfer_is_not_reported_in_the_class_incremental_scenario(tmp_path):
    res = main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--scenario", "class", "--iterations", "3",
                "--data-dir", str(TINY), "--no-download", "--no-progress", "--hidden", "8", "--threads", "1",
                "--out", str(tmp_path / "c")])
    assert res.metrics["forward_transfer"] is None
    assert "class-incremental" in res.undefined_metrics["forward_transfer"]
    task = main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--iterations", "3", "--data-dir", str(TINY),
                 "--no-download", "--no-progress", "--hidden", "8", "--threads", "1", "--out", str(tmp_path / "t")])
    assert isinstance(task.metrics["forward_transfer"], float) and task.undefined_metrics == {}


def test_exploding_parameters_after_the_last_step_are_divergence():
    stream = tiny_stream("split-mnist", "task", 2)
    with pytest.raises(TrainingDiverged, match=r"parameters exploded after step 1 .* lower `lr`"):
        run_stream(tiny_model(stream), stream, Naive(), TrainSettings("sgd", 1e30, iterations=1), seed=0)


def test_a_model_that_does_not_fit_the_stream_is_named_before_training():
    from torch import nn

    from lifelong.data import load_dataset
    from lifelong.scenarios import permuted
    from lifelong.strategies import Naive
    from lifelong.train import TrainSettings, run_stream

    stream = permuted(load_dataset("mnist", TINY, download=False), 3, "task", seed=0)  # 30 output units
    few = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(UsageError, match=r"returns \(2, 10\) .* 30 output units \(task-incremental, 3 tasks\)"):
        run_stream(few, stream, Naive(), TrainSettings(iterations=1), device="cpu")
    with pytest.raises(UsageError, match=r"cannot take the stream's inputs \(1, 28, 28\)"):
        run_stream(nn.Linear(5, 30), stream, Naive(), TrainSettings(iterations=1), device="cpu")
    broken = nn.Sequential(nn.Flatten(), nn.Linear(784, 30))
    with torch.no_grad():
        broken[1].bias[3] = float("inf")
    with pytest.raises(TrainingDiverged, match="scores are not finite on .* before training"):
        run_stream(broken, stream, Naive(), TrainSettings(iterations=1), device="cpu")
