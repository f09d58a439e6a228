"""Composites: several strategies run as one; their loss terms, penalties, batches and state combine,
and parts that really conflict are refused with one line naming both."""

from __future__ import annotations

import pytest
import torch

from lifelong.errors import UsageError
from lifelong.models import Heads
from lifelong.strategies import EWC, L2, SI, Compose, Context, Naive, Strategy, build
from lifelong.train import Learner, TrainSettings, run_stream
from tests.helpers import tiny_model, tiny_stream


def consolidated(stream, *strategies):
    model = tiny_model(stream)
    ctx = Context(model, Heads.of(stream), stream=stream, task=stream[0], task_index=0)
    for s in strategies:
        s.after_task(ctx)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05)
    return model, ctx


def test_compose_sums_the_penalties_and_their_gradients(permuted_stream):
    both = Compose(EWC(3.0, fisher="empirical"), L2(0.5))
    model, ctx = consolidated(permuted_stream, both)
    alone_ewc, alone_l2 = EWC(3.0, fisher="empirical"), L2(0.5)
    alone_ewc.state, alone_l2.state = both.parts[0].state, both.parts[1].state
    total = both.penalty(ctx)
    torch.testing.assert_close(total, alone_ewc.penalty(model) + alone_l2.penalty(model), rtol=0, atol=0)
    model.zero_grad(set_to_none=True)
    both.add_penalty_grad(ctx)
    fast = [p.grad.clone() for p in model.parameters()]
    auto = torch.autograd.grad(alone_ewc.penalty(model) + alone_l2.penalty(model), list(model.parameters()))
    for a, b in zip(fast, auto):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)


def test_compose_saves_each_part_under_its_prefix_and_round_trips(permuted_stream):
    both = Compose(EWC(3.0, fisher="empirical"), SI(2.0))
    model, ctx = consolidated(permuted_stream, both)
    state = both.state_dict()
    assert state and all(k.split(".", 1)[0] in ("ewc", "si") for k in state)
    assert {k for k in state if k.startswith("ewc.")} == {f"ewc.{k}" for k in both.parts[0].state_dict()}
    fresh = Compose(EWC(3.0, fisher="empirical"), SI(2.0))
    fresh.load_state_dict({k: v.clone() for k, v in state.items()}, model)
    assert fresh.penalty(model).item() == both.penalty(model).item() > 0
    with pytest.raises(ValueError, match="state keys"):
        fresh.load_state_dict({"mas.penalty.offset": torch.zeros(())}, model)
    report = both.report(ctx)
    assert report["state_bytes"] == sum(t.nelement() * t.element_size() for t in state.values())
    assert set(report["keeps"]) == {"ewc.penalty", "si.penalty"}


def test_compose_chains_batches_and_refuses_two_owners_of_one_hook(permuted_stream):
    class FirstRow(Strategy):
        name = "first-row"

        def prepare_batch(self, ctx, step):
            b = step.batch
            return b.select(slice(0, 1)) if b.x.shape[0] > 1 else b

    class Scores(Strategy):
        name = "scores"

        def forward(self, ctx, step):
            return ctx.model(step.inputs.x)

    class Scores2(Scores):
        name = "scores2"

    sizes = []

    class Size(Strategy):
        name = "size"

        def after_step(self, ctx, step):
            sizes.append(step.batch.x.shape[0])

    run_stream(tiny_model(permuted_stream), permuted_stream, Compose(FirstRow(), Size()),
               TrainSettings("sgd", 0.1, iterations=2), device="cpu")
    assert sizes == [1, 1, 1, 1]  # the second part sees the first part's batch
    with pytest.raises(UsageError, match="scores and scores2 both define forward"):
        Compose(Scores(), Scores2())
    with pytest.raises(UsageError, match="each strategy once"):
        Compose(L2(), L2())


@pytest.mark.parametrize("name, terms", [("er+lwf", {"task", "distill"}), ("derpp+lwf", {"task", "replay", "logits", "distill"}),
                                         ("er+ewc", {"task"}), ("ewc+er", {"task"})])
def test_standard_pairings_compose_and_each_part_adds_its_terms(name, terms):
    """Replay with distillation (ER + LwF, DER++ + LwF) and replay with a regularizer train, every named
    term of the parts is in the loss, and the memory is filled from the current task's rows."""
    stream = tiny_stream("split-mnist", "class", 2)
    seen: list[set] = []
    cl = Learner(tiny_model(stream), build(name), stream, settings=TrainSettings(iterations=4, batch_size=16))
    for _ in cl.tasks():
        opt = torch.optim.Adam(cl.parameters(), lr=1e-3)
        for batch in cl.batches():
            loss = cl.loss(batch)
            seen.append(set(cl.pending.losses))
            torch.testing.assert_close(loss, sum(cl.pending.losses.values()), rtol=1e-6, atol=0)
            opt.zero_grad()
            loss.backward()
            cl.before_step(batch)
            opt.step()
            cl.after_step(batch)
    assert seen[-1] == terms  # the second task: memory and teacher in play
    memory = cl.strategy.report(cl.ctx)["memory"]
    assert memory["samples"] == min(memory["budget"], 8 * 16)  # 4 steps × 16 current rows per task


@pytest.mark.parametrize("name, why", [
    ("er+agem", "er and agem each keep a replay memory"),
    ("er+der", "er and der each keep a replay memory"),
    ("xdg+hat", "hat changes how the whole model computes"),
])
def test_parts_that_really_conflict_are_one_line_errors_naming_both(name, why):
    with pytest.raises(UsageError, match=why):
        build(name)


def test_two_parts_that_weigh_the_task_term_conflict():
    with pytest.raises(UsageError, match=r"er and lwf both define the 'task' loss term.*lwf_weighting='sum'"):
        Compose(build("er").__class__(weighting="tasks"), build("lwf").__class__(lwf_weighting="tasks"))
    Compose(build("er").__class__(weighting="tasks"), build("lwf").__class__())  # lwf's sum weighting adds distill only


def test_naive_adds_nothing_to_a_composite():
    with pytest.raises(UsageError, match="naive adds nothing"):
        build("ewc+naive")
    assert isinstance(Naive(), Strategy)
