"""One run, several scenarios (`eval_scenarios`): a model trained in its scenario is also scored in
others, each with its own accuracy matrix and metrics; checked against masking by hand, through a
checkpoint and resume, in results.json and compare."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lifelong.cli import console_main, main
from lifelong.errors import UsageError
from lifelong.scenarios import batches
from lifelong.strategies import build
from lifelong.train import Learner, TrainSettings
from lifelong.train.checkpoint import load_checkpoint, save_checkpoint
from tests.helpers import TINY, tiny_model, tiny_stream
from tests.strategies.test_contract import train

pytestmark = pytest.mark.usefixtures("one_thread")


def _by_hand(cl: Learner, mask_of) -> list[float]:
    """Accuracy per task of the model now, its logits masked as ``mask_of(task)`` says (None: every unit)."""
    out = []
    cl.model.eval()
    with torch.no_grad():
        for task in cl.stream:
            hits = n = 0
            for x, y, *_ in batches([task], "test", batch_size=256):
                z = cl.model(x)
                m = mask_of(task)
                if m is not None:
                    z = z.masked_fill(~m, float("-inf"))
                hits += int((z.argmax(1) == y).sum())
                n += len(y)
            out.append(hits / n)
    cl.model.train()
    return out


@pytest.mark.parametrize("trained, other", [("class", "task"), ("task", "class")])
def test_each_further_scenario_is_the_model_scored_with_that_scenarios_masks(trained, other):
    stream = tiny_stream(tasks=3, scenario=trained).with_eval_scenarios([other, trained])
    assert stream.eval_scenarios == (other,)  # its own scenario is the main matrix
    cl = Learner(tiny_model(stream), build("naive"), stream, settings=TrainSettings(iterations=5, batch_size=16))
    assert train(cl)
    R, E = cl.accuracy_matrix, np.array(cl.eval_rows[other])
    assert E.shape == R.shape == (4, 3)

    def task_mask(task):
        m = torch.zeros(stream.n_outputs, dtype=torch.bool)
        m[list(task.classes)] = True
        return m

    own = task_mask if trained == "task" else (lambda task: None)
    further = task_mask if other == "task" else (lambda task: None)
    assert _by_hand(cl, own) == pytest.approx(R[-1].tolist(), abs=1e-12)
    assert _by_hand(cl, further) == pytest.approx(E[-1].tolist(), abs=1e-12)
    if trained == "class":  # the task's identity can only help: masking to its classes never loses a hit
        assert (E[-1] >= R[-1] - 1e-12).all() and E[-1].mean() > R[-1].mean()
    m = cl.eval_scenarios()[other]["metrics"]
    assert m["average_accuracy"] == pytest.approx(E[-1].mean())


def test_the_further_rows_survive_a_checkpoint_mid_task(tmp_path):
    stream = tiny_stream(tasks=3, scenario="class").with_eval_scenarios(["task"])
    make = lambda: Learner(tiny_model(stream), build("ewc"), stream, settings=TrainSettings(iterations=6, batch_size=16))  # noqa: E731
    whole = make()
    assert train(whole)
    cut = make()
    assert not train(cut, stop_at=(1, 3))
    save_checkpoint(tmp_path / "c.safetensors", *cut.state_dict())
    back = make()
    back.load_state_dict(load_checkpoint(tmp_path / "c.safetensors"))
    assert train(back)
    assert back.eval_rows == whole.eval_rows and back.accuracy_matrix.tolist() == whole.accuracy_matrix.tolist()
    tensors, meta = cut.state_dict()
    del meta["progress"]["R_eval"]  # a checkpoint without the rows of the further scenario is refused
    with pytest.raises(Exception, match="R_eval"):
        make().load_state_dict((tensors, meta))


def test_refused_where_the_scenario_has_no_meaning():
    with pytest.raises(UsageError, match="domain-incremental model has one head"):
        tiny_stream(scenario="domain").with_eval_scenarios(["class"])
    s = tiny_stream(scenario="task").with_eval_scenarios(["class"])
    for name in ("separate", "xdg+ewc"):  # a part of a composite too: its gates would read the task
        with pytest.raises(UsageError, match="cannot be evaluated without the task's identity"):
            Learner(tiny_model(s), build(name), s)


def test_the_command_line_results_json_and_compare(tmp_path, capsys):
    args = ["run", "--benchmark", "split-mnist", "--scenario", "class", "--data-dir", str(TINY), "--iterations", "4",
            "--hidden", "16", "--quiet"]
    plain = main([*args, "--strategy", "naive", "--out", str(tmp_path / "a")])
    both = main([*args, "--strategy", "naive", "--eval-scenarios", "task", "--out", str(tmp_path / "b")])
    assert plain.run_id != both.run_id and plain.accuracy_matrix == both.accuracy_matrix  # training is the same
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert (tmp_path / "b" / "accuracy_curves-task.png").stat().st_size > 1000  # its plots beside the run's own
    assert (tmp_path / "b" / "accuracy_matrix-task.png").exists() and not (tmp_path / "a" / "accuracy_curves-task.png").exists()
    assert set(res["eval_scenarios"]) == {"task"} and "eval_scenarios" not in json.loads(
        (tmp_path / "a" / "results.json").read_text())
    assert console_main(["compare", str(tmp_path / "b"), "--metrics",
                         "average_accuracy,eval_scenarios.task.metrics.average_accuracy", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "task ACC (%)" in out and f"{100 * res['eval_scenarios']['task']['metrics']['average_accuracy']:.2f}" in out
    # a further scenario's metric edited by hand is caught as any other
    res["eval_scenarios"]["task"]["metrics"]["average_accuracy"] = 0.123
    (tmp_path / "b" / "results.json").write_text(json.dumps(res))
    from lifelong.experiments.collect import compare

    with pytest.raises(UsageError):
        compare([tmp_path / "b"], write=False, quiet=True)
    assert console_main([*args, "--strategy", "naive", "--eval-scenarios", "tusk", "--out", str(tmp_path / "c")]) == 2
    assert "--eval-scenarios must list task and/or class" in capsys.readouterr().err
