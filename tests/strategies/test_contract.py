"""The contract every strategy keeps, checked over the whole registry: every registered strategy × every
choice of each of its settings that has choices, and a composite for each pair of families.

On a tiny stream (2 tasks, a few steps each), through the one driver (the Learner):

* a choice either works or is refused when the settings are made, with one line naming the setting;
* a strategy that keeps a memory has it filled to its budget after the first task, from the current
  task's rows (the test that catches a memory that stays empty, as A-GEM's and GEM's reservoir did);
* the loss terms it returns are the ones it declares (``loss_terms``), and they sum to the loss;
* its state round-trips bit-exactly through a checkpoint file, and a run stopped in the middle of the
  second task and continued from that file ends with the same accuracy matrix, model and state, to the
  bit, as one that never stopped (which a strategy keeping per-step data on itself would fail);
* it is deterministic: the same seed gives the same run;
* its report names what it keeps: the bytes of each part of its state, its memory, its capacity.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from lifelong.errors import UsageError
from lifelong.scenarios import batches
from lifelong.settings import meta
from lifelong.strategies import FAMILIES, STRATEGIES, build
from lifelong.strategies.compose import ComposeSettings
from lifelong.train import Learner, TrainSettings
from lifelong.train.checkpoint import load_checkpoint, save_checkpoint
from tests.helpers import tiny_model, tiny_stream

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS, BATCH, MEMORY = 6, 16, 40  # 96 samples offered per task: more than the budget
ISOLATION = set(FAMILIES["isolation"])


def choice_cases() -> list[tuple[str, str, dict]]:
    """(id, strategy, settings) for every strategy with its defaults and with each choice of each setting
    that has choices."""
    cases = []
    for name, cls in STRATEGIES.items():
        cases.append((name, name, {}))
        for f in dataclasses.fields(cls.Settings):
            for choice in meta(f)["choices"] or ():
                if choice != f.default:
                    cases.append((f"{name}-{f.name}={choice}", name, {f.name: choice}))
    return cases


def composite_cases() -> list[tuple[str, str, dict]]:
    """One composite for each pair of method families (the baselines are bounds, not parts), and the
    pairings papers use: replay with distillation, replay with a regularizer."""
    pick = {"regularization": "ewc", "replay": "er", "isolation": "xdg"}
    pairs = [f"{pick[a]}+{pick[b]}" for a, b in itertools.combinations(pick, 2)]
    return [(p, p, {}) for p in [*pairs, "er+lwf", "derpp+lwf", "si+agem"]]


CASES = choice_cases() + composite_cases()


def with_memory(name: str, settings: dict) -> dict:
    """The settings with a small budget for the parts that keep a memory (dotted for a composite)."""
    out = dict(settings)
    parts = name.split("+")
    for p in parts:
        if STRATEGIES[p].keeps_memory:
            out[p if len(parts) == 1 else f"{p}.memory"] = MEMORY
    return {("memory" if k == name else k): v for k, v in out.items()}


def made(name: str, settings: dict):
    """The strategy's settings object, or a UsageError."""
    from lifelong.experiments.config import RunConfig

    return RunConfig.make(strategy=name, **settings).strategy


def made_or_skip(name: str, settings: dict):
    """A case's settings object, with a memory for the parts that keep one; a case its settings refuse when
    made is skipped, after checking the refusal is one line that names one of them."""
    settings = with_memory(name, settings)
    try:
        return made(name, settings)
    except UsageError as e:
        assert "\n" not in str(e) and any(k.split(".")[-1] in str(e) for k in settings), str(e)
        pytest.skip(f"refused when made, in one line: {e}")


def learner(settings, scenario: str) -> Learner:
    stream = tiny_stream("split-mnist", scenario, 2)
    return Learner(tiny_model(stream), build(settings), stream,
                   settings=TrainSettings(iterations=STEPS, batch_size=BATCH), seed=3)


def train(cl: Learner, stop_at: tuple[int, int] | None = None, terms: list | None = None) -> bool:
    """The user's loop; stops (returns False) before step ``stop_at[1]`` of task ``stop_at[0]``."""
    while cl.next_task < len(cl.stream) or cl.position[1]:
        task, _ = cl.position
        cl.start_task(task)
        opt = cl.optimizer = cl.optimizer or torch.optim.Adam(cl.parameters(), lr=1e-3)
        for batch in cl.batches():
            loss = cl.loss(batch)
            if terms is not None:
                terms.append(dict(cl.pending.losses))
                torch.testing.assert_close(loss, sum(cl.pending.losses.values()), rtol=1e-6, atol=0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            cl.before_step(batch)
            opt.step()
            cl.after_step(batch)
            if stop_at is not None and (task, cl.ctx.task_step) == stop_at:
                return False
        cl.end_task()
    return True


def snapshot(cl: Learner) -> dict:
    return {"R": cl.accuracy_matrix.tolist(), **{f"model.{k}": v.clone() for k, v in cl.model.state_dict().items()},
            **{f"strategy.{k}": v.clone() for k, v in cl.strategy.state_dict().items()}}


def same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    return all(a[k] == b[k] if k == "R" else (a[k].dtype == b[k].dtype and torch.equal(a[k], b[k])) for k in a)


@pytest.mark.parametrize("case, name, settings", CASES, ids=[c[0] for c in CASES])
def test_the_strategy_contract(case, name, settings, tmp_path):
    s = made_or_skip(name, settings)
    parts = s.parts if isinstance(s, ComposeSettings) else (s,)
    scenario = "task" if any(p.strategy in ISOLATION for p in parts) else "class"

    # the whole run, with every step's loss terms; and again: the same seed, the same run
    terms: list[dict] = []
    whole = learner(s, scenario)
    whole.start_task(0)  # the first task alone first: the memory is judged after it
    whole.optimizer = torch.optim.Adam(whole.parameters(), lr=1e-3)
    for batch in whole.batches():
        loss = whole.loss(batch)
        terms.append(dict(whole.pending.losses))
        torch.testing.assert_close(loss, sum(whole.pending.losses.values()), rtol=1e-6, atol=0)
        whole.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        whole.before_step(batch)
        whole.optimizer.step()
        whole.after_step(batch)
    whole.end_task()
    report = whole.strategy.report(whole.ctx)
    if any(STRATEGIES[p.strategy].keeps_memory for p in parts):
        memory = report["memory"]
        # filled to its budget after task 1; a memory of slots per task (slots, ring) to its first task's share
        share = MEMORY // len(whole.stream) if memory["policy"] in ("slots", "ring") else MEMORY
        assert memory["budget"] == MEMORY and memory["samples"] == share, memory
        assert memory["bytes"] > 0
    else:
        assert "memory" not in report
    train(whole, terms=terms)
    declared = {"task", *whole.strategy.loss_terms}
    assert all(set(t) <= declared and "task" in t for t in terms), (declared, terms[-1])
    want = snapshot(whole)
    again = learner(s, scenario)
    train(again)
    assert same(snapshot(again), want), "the same seed gave another run"

    # stopped mid-way through the second task, and after the first task's last step before its end (after_task),
    # saved to a file, continued in a fresh Learner
    for stop_at in ((1, STEPS // 2), (0, whole.steps_per_task[0])):
        if not stop_at[1]:
            continue  # no step on the first task (joint-end)
        cut = learner(s, scenario)
        assert not train(cut, stop_at=stop_at)
        save_checkpoint(tmp_path / "cut.safetensors", *cut.state_dict())
        tensors, meta_ = load_checkpoint(tmp_path / "cut.safetensors")
        back = learner(s, scenario)
        back.load_state_dict((tensors, meta_))
        restored = back.strategy.state_dict()
        saved = {k: v for k, v in cut.strategy.state_dict().items()}
        assert restored.keys() == saved.keys() and all(torch.equal(restored[k], saved[k]) for k in saved)
        assert train(back)
        assert same(snapshot(back), want), f"a run continued from a checkpoint at {stop_at} ended elsewhere"

    # the report names what it keeps
    report = whole.strategy.report(whole.ctx)
    state = whole.strategy.state_dict()
    assert report["state_bytes"] == sum(t.nelement() * t.element_size() for t in state.values())
    if isinstance(s, ComposeSettings):
        assert set(report["keeps"]) == {".".join(k.split(".")[:2]) for k in state}
    else:
        assert set(report["keeps"]) == {k.split(".")[0] for k in state}
    assert all(v > 0 for v in report["keeps"].values())
    if any(p.strategy in ISOLATION for p in parts):
        cap = report["capacity"]
        assert len(cap["used"]) == 2 and all(0 < u <= 1 for u in cap["used"])


def test_the_contract_covers_every_strategy_and_every_choice():
    covered = {name for _, name, _ in CASES}
    assert set(STRATEGIES) <= covered
    n_choices = sum(len(meta(f)["choices"] or ()) - 1 for cls in STRATEGIES.values()
                    for f in dataclasses.fields(cls.Settings) if meta(f)["choices"])
    assert len(choice_cases()) == len(STRATEGIES) + n_choices


PENALIZED = [n for n in STRATEGIES if not STRATEGIES[n].keeps_memory] + ["ewc+si", "l2+mas", "si+agem"]


@pytest.mark.parametrize("name", PENALIZED)
def test_the_penalty_gradient_added_in_closed_form_is_autograd_of_the_penalty(name):
    """``add_penalty_grad`` adds λΩ(θ − θ̄) to ``p.grad`` directly; it must equal backpropagating
    ``penalty`` (mid-way through the second task, every strategy and a few composites)."""
    s = made(name, with_memory(name, {}))
    parts = s.parts if isinstance(s, ComposeSettings) else (s,)
    cl = learner(s, "task" if any(p.strategy in ISOLATION for p in parts) else "class")
    assert not train(cl, stop_at=(1, 2))
    x, y, *_ = next(batches([cl.stream[1]], "train", batch_size=32))
    model = cl.model
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    cl.strategy.add_penalty_grad(cl.ctx)
    fast = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    penalty = cl.strategy.penalty(cl.ctx)
    loss = torch.nn.functional.cross_entropy(model(x), y) + (0 if penalty is None else penalty)
    loss.backward()
    for a, p in zip(fast, model.parameters()):
        if a is None or p.grad is None:
            assert a is None and p.grad is None
        else:
            torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-7)  # float32: summation order differs
