"""docs/extending.md: each example is one file plus its registration, and it is then a strategy like the
built-in ones: checked against a brute-force reference, put through the registry's contract, and run
from the command line and in composites."""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F

from lifelong.cli import console_main, main
from lifelong.errors import SettingError
from lifelong.strategies import STRATEGIES, build
from tests.cli.test_cli import CONSOLIDATION
from lifelong.train import Learner, TrainSettings
from tests.helpers import ROOT, TINY, readme_block, tiny_model, tiny_stream
from tests.strategies import test_contract as contract

DOC = ROOT / "docs" / "extending.md"
FAST = ["--data-dir", str(TINY), "--no-download", "--no-progress", "--hidden", "8", "--threads", "1",
        "--benchmark", "split-mnist", "--tasks", "2", "--iterations", "3"]


@pytest.fixture
def registered():
    """Run a block of the page (its registration included); the registry is restored afterwards."""
    before = dict(STRATEGIES)
    modules = []

    def run(name: str) -> dict:
        module = types.ModuleType(f"docs_extending_{name}")  # a file of its own, as the page says
        sys.modules[module.__name__] = module
        modules.append(module.__name__)
        exec(compile(readme_block(name, DOC), str(DOC), "exec", dont_inherit=True), module.__dict__)
        return module.__dict__

    yield run
    STRATEGIES.clear()
    STRATEGIES.update(before)
    for m in modules:
        sys.modules.pop(m, None)


def test_the_regularizer_is_the_quadratic_penalty_with_magnitude_importance(registered):
    Magnitude = registered("regularizer")["Magnitude"]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()
    reg = Magnitude(lam=3.0)
    stars = []
    for _ in range(2):  # two tasks: one quadratic each, anchored at that task's θ*
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.3 * torch.randn_like(p))
        stars.append([p.detach().clone() for p in model.parameters()])
        reg.consolidate(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    by_hand = sum(3.0 / 2 * (s.abs() * (p - s) ** 2).sum() for star in stars for p, s in zip(model.parameters(), star))
    torch.testing.assert_close(reg.penalty(model), by_hand, rtol=1e-12, atol=0)
    assert Magnitude(lam=0.0).penalty(model).item() == 0.0  # no task yet, or λ = 0: no penalty


def test_the_replay_method_returns_its_terms_as_written(registered):
    registered("replay")
    stream = tiny_stream("split-mnist", "class", 2)
    cl = Learner(tiny_model(stream), build(STRATEGIES["weighted-replay"].Settings(memory=40, beta=0.25)), stream,
                 settings=TrainSettings(iterations=4, batch_size=16), seed=0)
    seen = []
    for _ in cl.tasks():
        opt = torch.optim.SGD(cl.parameters(), lr=0.1)
        for batch in cl.batches():
            loss = cl.loss(batch)
            step = cl.pending
            b, z = step.inputs, step.logits
            cur = (b.source == 0).nonzero().flatten()
            mem = (b.source == 1).nonzero().flatten()
            live = cl.ctx.heads.logits(z, b.task, cl.ctx.task_index)
            want = F.cross_entropy(live[cur], b.y[cur])
            if len(mem):
                want = want + 0.25 * F.cross_entropy(live[mem], b.y[mem])
            torch.testing.assert_close(loss, want)
            seen.append((cl.ctx.task_index, len(cur), len(mem), set(step.losses)))
            opt.zero_grad()
            loss.backward()
            cl.before_step(batch)
            opt.step()
            cl.after_step(batch)
    assert seen[0] == (0, 16, 0, {"task"}) and seen[-1] == (1, 16, 16, {"task", "replay"})


@pytest.mark.parametrize("block, name", [("regularizer", "magnitude"), ("replay", "weighted-replay")])
def test_each_example_keeps_the_contract_of_the_registry(registered, block, name, tmp_path):
    registered(block)
    contract.test_the_strategy_contract(name, name, {}, tmp_path)


def test_the_examples_run_from_the_command_line_and_compose(registered, tmp_path, capsys):
    registered("regularizer")
    registered("replay")
    res = main(["run", "--strategy", "ewc+magnitude", "--ewc.lam", "100", "--magnitude.lam", "2",
                "--out", str(tmp_path / "a"), *FAST])
    assert res.config["strategy"] == {"name": "ewc+magnitude", "settings": {
        "ewc": {"lam": 100.0, "fisher": "exact", "mc_samples": 1, "convention": "half", **CONSOLIDATION},
        "magnitude": {"lam": 2.0, "convention": "half"}}}
    res = main(["run", "--strategy", "weighted-replay+lwf", "--memory", "30", "--replay-weight", "0.5",
                "--out", str(tmp_path / "b"), *FAST])
    assert res.config["strategy"]["settings"]["weighted-replay"]["beta"] == 0.5
    index = main(["sweep", "--strategies", "naive,magnitude", "--set", "lam=1,4", "--out", str(tmp_path / "s"), *FAST])
    assert sorted(r["strategy"] for r in index["runs"]) == ["magnitude", "magnitude", "naive"]
    capsys.readouterr()
    assert console_main(["run", "--strategy", "weighted-replay", "--replay-weight", "-1", *FAST]) == 2
    assert "--replay-weight must be >= 0, got -1" in capsys.readouterr().err
    with pytest.raises(SettingError, match="weighted-replay: beta must be >= 0"):
        STRATEGIES["weighted-replay"].Settings(beta=-1.0)
    assert console_main(["run", "--strategy", "weighted-replay+er-ace", *FAST]) == 2  # both return "replay"
    err = capsys.readouterr().err
    assert "weighted-replay" in err and "er-ace" in err and err.count("\n") == 1
