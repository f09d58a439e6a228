"""Every strategy declares the state it keeps (``state_spec``), and checkpoints are checked against it.

Over the whole registry (and composites): the declaration matches the state really kept at every
checkpoint of a stream (boundaries and mid-task), a checkpoint with any declared tensor removed, an
undeclared one added, or one reshaped or retyped is a one-line CheckpointError naming the tensor, and
the pure checker itself is tested on hand-made declarations.
"""

from __future__ import annotations

import pytest
import torch

from lifelong.strategies import registry
from lifelong.strategies.state import Group, Position, check_state
from lifelong.train import Learner, TrainSettings, train_stream
from lifelong.train.checkpoint import CheckpointError
from tests.helpers import tiny_model, tiny_stream

NAMES = [*registry.STRATEGIES, "ewc+er", "kfac+er", "si+lwf", "derpp+lwf", "rwalk+agem"]


def learner(name: str, stream, settings=None):
    strategy = registry.build(registry.default_settings(name))
    return Learner(tiny_model(stream, hidden=(16, 8)), strategy, stream, settings=settings or TrainSettings(
        iterations=4, batch_size=16, lr=0.01))


@pytest.fixture(scope="module")
def stream():
    return tiny_stream(tasks=3)


@pytest.fixture(scope="module")
def checkpoints(stream):
    """Every strategy's checkpoints at every 2 steps of a 3-task stream (boundaries and mid-task)."""
    out = {}
    for name in NAMES:
        saved = []
        train_stream(learner(name, stream), checkpoint=lambda t, m: saved.append((dict(t), m)), checkpoint_every=2)
        out[name] = saved
    return out


def _position(meta) -> Position:
    return Position(meta["progress"]["task"], meta["progress"]["step"] > 0)


def _strategy_state(tensors):
    return {k[len("strategy."):]: v for k, v in tensors.items() if k.startswith("strategy.")}


@pytest.mark.parametrize("name", NAMES)
def test_the_declaration_is_the_state_kept_at_every_checkpoint(checkpoints, stream, name):
    cl = learner(name, stream)
    steps = checkpoints[name][-1][1]["progress"]["steps_per_task"]
    assert len(steps) == 3 and len(checkpoints[name]) == 3 + sum(n // 2 for n in steps)  # boundaries + every 2 steps
    assert sum(n > 2 for n in steps) >= 1
    for tensors, meta in checkpoints[name]:
        state = _strategy_state(tensors)
        spec = cl.strategy.state_spec(cl.ctx, _position(meta))
        assert check_state(state, spec) is None, (meta["progress"]["task"], meta["progress"]["step"])
        assert {k for g in spec if g.present is not False for k in g.tensors} >= set(state)


def _mutations(state: dict, spec: list[Group]):
    """Each declared tensor removed, an undeclared one added, each kept tensor retyped or reshaped."""
    for k in state:
        yield f"without {k}", {j: v for j, v in state.items() if j != k}
    yield "with an extra tensor", {**state, "extra.weight": torch.zeros(3)}
    for g in spec:  # a tensor declared absent here, present
        if g.present is False:
            k, (shape, dtype) = next(iter(g.tensors.items()))
            yield f"with {k} too early", {**state, k: torch.zeros([s or 1 for s in shape], dtype=dtype or torch.float32)}
    for k, v in list(state.items())[:4]:
        other = torch.int32 if v.is_floating_point() else torch.float32
        yield f"{k} retyped", {**state, k: v.to(other)}
        yield f"{k} reshaped", {**state, k: torch.zeros(*v.shape, 2, dtype=v.dtype)}


@pytest.mark.parametrize("name", NAMES)
def test_a_checkpoint_with_a_part_of_the_state_lost_or_added_is_refused(checkpoints, stream, name):
    """The issue's examples among them: EWC without its penalty, XdG without its gates, Separate
    without its networks, PackNet without its owner map, a replay memory gone."""
    saved = checkpoints[name]
    mids = [c for c in saved if c[1]["progress"]["step"] > 0]
    bounds = [c for c in saved if c[1]["progress"]["step"] == 0]
    picks = [*mids[:1], *bounds[:1], *mids[2:3], saved[-1]]  # mid task, a boundary, mid a later task, the end
    for tensors, meta in picks:
        state = _strategy_state(tensors)
        cl = learner(name, stream)
        spec = cl.strategy.state_spec(cl.ctx, _position(meta))
        for what, changed in _mutations(state, spec):
            bad = {k: v for k, v in tensors.items() if not k.startswith("strategy.")}
            bad.update({f"strategy.{k}": v for k, v in changed.items()})
            with pytest.raises(CheckpointError) as e:
                learner(name, stream).load_state_dict((bad, meta))
            assert "\n" not in str(e.value), what


def test_check_state_on_hand_made_declarations():
    f32, i64 = torch.float32, torch.int64
    spec = [Group("a penalty", {"p.a": ((2, 3), f32), "p.b": ((3,), f32)}),
            Group("a memory", {"m.x": ((None, 4), None), "m.y": ((None,), i64)}, None, rows=5),
            Group("later", {"l.z": ((), i64)}, False)]
    ok = {"p.a": torch.zeros(2, 3), "p.b": torch.zeros(3)}
    assert check_state(ok, spec) is None
    assert check_state({**ok, "m.x": torch.zeros(5, 4, dtype=torch.float64), "m.y": torch.zeros(5, dtype=i64)}, spec) is None
    assert "'p.b' is missing" in check_state({"p.a": torch.zeros(2, 3)}, spec)
    assert "does not keep" in check_state({**ok, "q": torch.zeros(1)}, spec)
    assert "at this point" in check_state({**ok, "l.z": torch.zeros((), dtype=i64)}, spec)
    assert "'m.y' is missing" in check_state({**ok, "m.x": torch.zeros(2, 4)}, spec)
    assert "rows" in check_state({**ok, "m.x": torch.zeros(2, 4), "m.y": torch.zeros(3, dtype=i64)}, spec)
    assert "rows" in check_state({**ok, "m.x": torch.zeros(6, 4), "m.y": torch.zeros(6, dtype=i64)}, spec)
    assert "rows" in check_state({**ok, "m.x": torch.zeros(0, 4), "m.y": torch.zeros(0, dtype=i64)}, spec)
    assert "shape" in check_state({**ok, "p.a": torch.zeros(3, 2)}, spec)
    assert "int64" in check_state({**ok, "p.b": torch.zeros(3, dtype=i64)}, spec)
    assert "floating" in check_state({**ok, "m.x": torch.zeros(2, 4, dtype=i64), "m.y": torch.zeros(2, dtype=i64)}, spec)
