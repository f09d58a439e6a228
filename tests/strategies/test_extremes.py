"""Settings at their limits: a configuration that leaves nothing to learn, or a strength float32 cannot
hold next to the other loss terms, is a one-line error before anything trains; memory budgets at their
documented maximum train in the memory the data needs.

The fuzzer draws, for every registered strategy, each setting at its extremes (0, tiny, 2^±24, huge,
the documented maximum, every choice) with narrow models and tiny budgets: the only outcomes allowed
are a finite result or the library's own one-line error.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifelong.errors import LifelongError, UsageError
from lifelong.settings import meta
from lifelong.strategies import registry
from lifelong.train import Learner, TrainSettings, train_stream
from tests.helpers import tiny_model, tiny_stream

TRAIN = TrainSettings(iterations=3, batch_size=16)


@pytest.fixture(scope="module")
def stream():
    return tiny_stream(tasks=2)


def build(name: str, **values):
    return registry.build(registry.STRATEGIES[name].Settings(**values))


@pytest.mark.parametrize("name, values, hidden, words", [
    ("xdg", {}, (2,), "gate_fraction"),  # the default gate fraction 0.8 gates off both units
    ("xdg", {"gate_fraction": 0.6}, (1,), "gate_fraction"),
    ("packnet", {"prune": 0.999999}, (16,), "prune"),
    ("er", {"memory": 1, "policy": "class"}, (16,), "memory"),
    ("er", {"memory": 1, "policy": "task"}, (16,), "memory"),
    ("agem", {"memory": 3}, (16,), "memory"),
    ("icarl", {"memory": 1}, (16,), "memory"),
    ("gdumb", {"memory": 1}, (16,), "memory"),
])
def test_a_configuration_that_leaves_nothing_to_learn_is_one_line(stream, name, values, hidden, words):
    with pytest.raises(UsageError) as e:
        Learner(tiny_model(stream, hidden=hidden), build(name, **values), stream, settings=TRAIN)
    assert "\n" not in str(e.value) and words in e.value.params, str(e.value)


@pytest.mark.parametrize("name, field, value", [
    ("derpp", "beta", 1e30), ("derpp", "alpha", 1e-30), ("der", "alpha", 2.0 ** 25), ("lwf", "alpha", 1e30),
    ("lwf", "temperature", 1e-30), ("lwf", "temperature", 0.0), ("lwf", "temperature", 1e30),
])
def test_a_strength_float32_cannot_add_to_the_other_terms_is_refused(name, field, value):
    with pytest.raises(UsageError, match=f"{field} must be .*2\\^-24 and 2\\^24") as e:
        build(name, **{field: value})
    assert "\n" not in str(e.value)
    build(name, **{field: 2.0 ** 24})  # the bounds themselves are fine
    build(name, **{field: 2.0 ** -24})


def test_a_divergence_names_the_loss_weight_that_scaled_the_step(stream):
    from lifelong.errors import TrainingDiverged

    cl = Learner(tiny_model(stream), build("derpp", beta=2.0 ** 24), stream,
                 settings=TrainSettings(iterations=20, batch_size=16, optimizer="sgd", lr=0.5))
    with pytest.raises(TrainingDiverged) as e:
        train_stream(cl)
    assert "beta" in e.value.params and "lr" in e.value.params and "`beta` (now 1.67772e+07)" in str(e.value)


@pytest.mark.parametrize("name", ["er", "der", "derpp", "er-ace"])
def test_the_documented_maximum_memory_trains_in_the_memory_the_data_needs(stream, name):
    from lifelong.strategies.replay.base import MAX_MEMORY

    cl = Learner(tiny_model(stream), build(name, memory=MAX_MEMORY), stream, settings=TRAIN)
    train_stream(cl)
    total = sum(len(t.train) for t in stream)
    buffer = cl.strategy.buffer
    assert len(buffer) == min(buffer.seen, MAX_MEMORY) and buffer.x.shape[0] <= max(64, 2 * buffer.seen) <= 2 * total


def test_a_memory_larger_than_the_machine_is_refused_before_training(stream, monkeypatch):
    import lifelong.train.learner as learner_module

    monkeypatch.setattr(learner_module, "memory_bytes", lambda device: 10_000)  # a 10 kB machine
    with pytest.raises(UsageError, match="more than the 0.0 GB of cpu: lower `memory`"):
        Learner(tiny_model(stream), build("er", memory=1000), stream, settings=TRAIN)
    Learner(tiny_model(stream), build("er", memory=1), stream, settings=TRAIN)  # 1 sample: 3 kB


@pytest.mark.parametrize("make, words", [
    (lambda x, y: ([(x[:, :0], y)], [(x[:, :0], y)]), "0 features per sample"),
    (lambda x, y: ([(x, y.float() + 0.5)], [(x, y)]), "labels must be integers"),
])
def test_streams_with_nothing_to_learn_from_are_one_line(make, words):
    from lifelong.scenarios import TaskStream

    x, y = torch.rand(20, 5), torch.arange(20) % 2
    with pytest.raises(UsageError, match=words):
        TaskStream.from_tensors(*make(x, y))


def test_a_stream_built_by_hand_with_targets_beyond_its_units_is_refused(stream):
    import dataclasses as dc

    with pytest.raises(UsageError, match="output units 0..1"):
        dc.replace(stream, n_outputs=2)  # split-mnist's tasks have targets 0..3
    with pytest.raises(UsageError, match="no tasks"):
        dc.replace(stream, tasks=())


# ---- the fuzzer -----------------------------------------------------------------------------------------------


def _extremes(f: dataclasses.Field, default):
    m = meta(f)
    if m["choices"]:
        return list(m["choices"])
    if isinstance(default, bool):
        return [True, False]
    if isinstance(default, int):
        return [0, 1, 2, 3, 7, 10**6, *([int(m["maximum"])] if m["maximum"] else []), -1]
    if isinstance(default, float):
        return [0.0, 1e-30, 2.0 ** -24, 0.5, 1.0, 0.999999, 2.0 ** 24, 1e30, *([m["maximum"]] if m["maximum"] else []),
                -1.0, math.inf]
    return [default]


@st.composite
def configurations(draw):
    name = draw(st.sampled_from(list(registry.STRATEGIES)))
    S = registry.STRATEGIES[name].Settings
    values = {}
    for f in dataclasses.fields(S):
        if draw(st.booleans()):
            values[f.name] = draw(st.sampled_from(_extremes(f, getattr(S(), f.name))))
    hidden = draw(st.sampled_from([(1,), (2,), (3,), (8,), (4, 2)]))
    optimizer = draw(st.sampled_from(["sgd", "adam"]))
    return name, values, hidden, optimizer


@settings(max_examples=int(__import__("os").environ.get("FUZZ_EXAMPLES", 120)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(configurations())
def test_fuzz_settings_at_their_extremes_give_a_result_or_one_line(stream, config):
    name, values, hidden, optimizer = config
    try:
        strategy = build(name, **values)
        cl = Learner(tiny_model(stream, hidden=hidden), strategy, stream,
                     settings=TrainSettings(iterations=3, batch_size=16, optimizer=optimizer, lr=0.01))
        result = train_stream(cl)
    except LifelongError as e:
        assert "\n" not in str(e) and "Traceback" not in str(e), str(e)
        return
    R = result.accuracy_matrix
    assert all(0.0 <= a <= 1.0 for row in R for a in row), R
    assert all(math.isfinite(v) for v in result.metrics.values() if isinstance(v, float))
