"""The shape every strategy shares: the hook order of the driver, the step record, the context, the
settings that know their strategy, and errors that speak Python."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

import lifelong.strategies.base as base_module
from lifelong.errors import SettingError, UsageError
from lifelong.models import Heads
from lifelong.penalties import quadratic_penalty
from lifelong.scenarios import Batch
from lifelong.strategies import EWC, L2, MAS, STRATEGIES, Context, Naive, Step, Strategy, build
from lifelong.strategies.base import HOOKS, STEP_HOOKS
from lifelong.train import TrainSettings, run_stream
from tests.helpers import tiny_model


class Recorder(Naive):
    """Records every hook call with the task and step the context says."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple] = []
        self.depth = 0  # hooks that call hooks: only the driver's calls count


def _recording(hook):
    def wrapper(self, *args, **kwargs):
        ctx = args[0] if args and isinstance(args[0], Context) else None
        if self.depth == 0:
            self.calls.append((hook, None if ctx is None else ctx.task_index,
                               None if ctx is None or hook not in STEP_HOOKS else ctx.task_step))
        self.depth += 1
        try:
            return getattr(Naive, hook)(self, *args, **kwargs)
        finally:
            self.depth -= 1
    return wrapper


for _hook in HOOKS:
    setattr(Recorder, _hook, _recording(_hook))


def test_the_driver_calls_the_hooks_in_the_documented_order(permuted_stream):
    steps, rec = 2, Recorder()
    run_stream(tiny_model(permuted_stream), permuted_stream, rec, TrainSettings("sgd", 0.1, iterations=steps), device="cpu")
    predict = [("predict", -1, None)]  # one test batch per task (500 samples), row 0
    expected = predict * 2
    for i in range(2):
        expected += [("before_task", i, None), ("training_tasks", i, None)]
        expected += [(h, i, k) for k in range(steps) for h in STEP_HOOKS]
        expected += [("after_task", i, None)] + [("predict", i, None)] * 2
    assert rec.calls == expected


def test_the_documented_order_is_the_order_of_HOOKS():
    doc = base_module.__doc__
    found = [m for m in re.findall(r"\b([a-z_]+)\(", doc) if m in HOOKS]
    assert list(dict.fromkeys(found)) == list(HOOKS)


def test_every_step_hook_gets_the_one_step_record_and_after_backward_sees_the_loss_gradient_alone(permuted_stream):
    """One Step per optimizer step, the same object in every step hook; after backward p.grad is
    d(loss)/dθ, add_penalty_grad then adds the penalty's own."""
    seen, records = {}, {}

    class Probe(EWC):
        def prepare_batch(self, ctx, step):
            records.setdefault((ctx.task_index, ctx.task_step), []).append(step)
            return super().prepare_batch(ctx, step)

        def forward(self, ctx, step):
            records[(ctx.task_index, ctx.task_step)].append(step)
            return super().forward(ctx, step)

        def after_backward(self, ctx, step):
            records[(ctx.task_index, ctx.task_step)].append(step)
            assert isinstance(step, Step) and isinstance(step.batch, Batch) and step.logits.shape[0] == step.batch.y.shape[0]
            assert bool((step.batch.source == 0).all())  # no memory: every row is the current task's
            assert set(step.losses) == {"task"}
            if ctx.task_index == 1 and ctx.task_step == 1:  # the second step: θ has left the anchor
                seen["g"] = [p.grad.clone() for p in ctx.model.parameters()]
                seen["theta"] = [p.detach().clone() for p in ctx.model.parameters()]
                seen["batch"] = step.batch
                seen["state"] = self.state  # the penalty in force at this step (replaced, never mutated)

        def before_step(self, ctx, step):
            records[(ctx.task_index, ctx.task_step)].append(step)
            if ctx.task_index == 1 and ctx.task_step == 1:
                seen["total"] = [p.grad.clone() for p in ctx.model.parameters()]

        def after_step(self, ctx, step):
            records[(ctx.task_index, ctx.task_step)].append(step)

    model = tiny_model(permuted_stream)
    run_stream(model, permuted_stream, Probe(lam=50.0, fisher="empirical"), TrainSettings("sgd", 0.1, iterations=3),
               device="cpu")
    assert len(records) == 6 and all(len(r) == 5 and all(s is r[0] for s in r) for r in records.values())
    assert len({id(r[0]) for r in records.values()}) == 6  # a new record every step
    ref = tiny_model(permuted_stream)
    with torch.no_grad():
        for p, t in zip(ref.parameters(), seen["theta"]):
            p.copy_(t)
    b, heads = seen["batch"], Heads.of(permuted_stream)
    ce = F.cross_entropy(heads.logits(ref(b.x), b.task, 1), b.y)
    g_task = torch.autograd.grad(ce, list(ref.parameters()), retain_graph=True)
    penalty = quadratic_penalty(dict(ref.named_parameters()), seen["state"], 50.0)
    g_total = torch.autograd.grad(ce + penalty, list(ref.parameters()))
    for a, r in zip(seen["g"], g_task):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-7)
    for a, r in zip(seen["total"], g_total):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-7)
    assert any(not torch.allclose(a, b) for a, b in zip(seen["g"], seen["total"]))  # the penalty is felt


def test_batch_source_says_which_rows_are_whose():
    x, y = torch.zeros(5, 2), torch.arange(5)
    b = Batch(x, y, torch.zeros(5, dtype=torch.long))
    assert b.source is None and b.with_source().source.tolist() == [0] * 5
    assert b.with_source().rows(0) == slice(0, 5) and b.with_source().rows(1) == slice(0, 0)
    from lifelong.scenarios import join, memory_rows

    j = join(b, memory_rows(Batch(x[:2], y[:2], torch.ones(2, dtype=torch.long)), 1),
             memory_rows(Batch(x[:3], y[:3], torch.ones(3, dtype=torch.long)), 2))
    assert j.source.tolist() == [0] * 5 + [1] * 2 + [2] * 3 and j.source.device.type == "cpu"
    assert (j.rows(0), j.rows(1), j.rows(2)) == (slice(0, 5), slice(5, 7), slice(7, 10))
    assert j.select(j.rows(1)).y.tolist() == [0, 1]


# ---- settings ------------------------------------------------------------------------------------


def test_every_registered_strategys_settings_know_their_strategy():
    for name, cls in STRATEGIES.items():
        s = cls.Settings()
        assert s.strategy == name and type(build(s)) is cls
    assert MAS.Settings is not L2.Settings  # MAS and L2 take a λ alone, each in a class of its own
    assert build("ewc+l2").settings.strategy == "ewc+l2"


def test_library_errors_name_python_parameters():
    with pytest.raises(SettingError, match=r"^ewc: lam must be >= 0, got -1$") as e:
        EWC(lam=-1)
    assert e.value.params == ("lam",) and e.value.owner == "ewc"
    with pytest.raises(SettingError, match=r"^ewc: mc_samples applies to fisher='mc', not fisher='exact'$"):
        EWC(mc_samples=3)
    with pytest.raises(UsageError, match=r"^ewc: no setting 'lamda' \(settings: lam, fisher, mc_samples, convention, consolidate, "):
        EWC(lamda=1.0)
    with pytest.raises(SettingError, match=r"^train: lr must be > 0"):
        TrainSettings(lr=-1.0)
    with pytest.raises(SettingError, match=r"^ewc: lam must be a number, got 'x'$"):
        EWC(lam="x")
    with pytest.raises(SettingError, match=r"^ewc: fisher must be one of"):
        EWC(fisher="bogus")


def test_a_divergence_inside_your_own_loop_names_python_parameters(permuted_stream):
    from lifelong.errors import TrainingDiverged

    with pytest.raises(TrainingDiverged, match=r"lower `lr` \(now 1e\+30\)") as e:
        run_stream(tiny_model(permuted_stream), permuted_stream, Naive(), TrainSettings("sgd", 1e30, iterations=5),
                   device="cpu")
    assert e.value.params == ("lr",) and "--" not in str(e.value)


# ---- the context -----------------------------------------------------------------------------------


def test_a_strategy_that_overrides_nothing_is_fine_tuning(permuted_stream):
    class Plain(Strategy):
        name = "plain"

    a = run_stream(tiny_model(permuted_stream), permuted_stream, Plain(), TrainSettings("sgd", 0.1, iterations=3),
                   device="cpu").accuracy_matrix
    b = run_stream(tiny_model(permuted_stream), permuted_stream, Naive(), TrainSettings("sgd", 0.1, iterations=3),
                   device="cpu").accuracy_matrix
    assert a == b
