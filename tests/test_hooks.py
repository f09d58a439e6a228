"""The shape every strategy shares: the hook order of the loop, composition, and the context."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import lifelong.strategies.base as base_module
from lifelong.cli import main
from lifelong.data import load_dataset
from lifelong.errors import UsageError
from lifelong.models import Heads, mlp
from lifelong.penalties import quadratic_penalty
from lifelong.scenarios import Batch, permuted
from lifelong.strategies import EWC, L2, SI, Compose, Context, Naive, Strategy, build_strategy
from lifelong.strategies.base import HOOKS, STEP_HOOKS
from lifelong.train import TrainSettings, run_stream

TINY = Path(__file__).parent / "data" / "mnist-tiny"
FAST = ["--data-dir", str(TINY), "--no-download", "--no-progress", "--hidden", "16", "--threads", "1"]


@pytest.fixture(scope="module")
def stream():
    return permuted(load_dataset("mnist", TINY, download=False), 2, "task", seed=0)


def tiny_model(stream, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return mlp(784, (16,), stream.n_outputs)


class Recorder(Naive):
    """Records every hook call with the task and step the context says."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple] = []
        self.depth = 0  # hooks that call hooks (predict calls forward): only the loop's calls count


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


def test_the_loop_calls_the_hooks_in_the_documented_order(stream):
    steps, rec = 2, Recorder()
    run_stream(tiny_model(stream), stream, rec, TrainSettings("sgd", 0.1, iterations=steps), device="cpu")
    predict = [("predict", t, None) for t in (-1, -1)]  # one test batch per task (500 samples), row 0
    expected = list(predict)
    for i in range(2):
        expected += [("before_task", i, None), ("training_tasks", None, None)]
        expected += [(h, i, k) for k in range(steps) for h in STEP_HOOKS]
        expected += [("after_task", i, None)] + [("predict", i, None)] * 2
    # training_tasks(stream, i) gets no context; evaluation of row 0 happens with task_index −1
    got = [(h, t if h != "predict" or t >= 0 else -1, k) for h, t, k in rec.calls]
    assert got == expected


def test_the_documented_order_is_the_order_of_HOOKS():
    doc = base_module.__doc__
    found = [m for m in re.findall(r"\b([a-z_]+)\(", doc) if m in HOOKS]
    assert list(dict.fromkeys(found)) == list(HOOKS)


def test_step_hooks_see_the_batch_and_after_backward_sees_the_task_gradient_alone(stream):
    """After backward p.grad is d(task loss)/dθ; add_penalty_grad then adds the penalty's own."""
    seen = {}

    class Probe(EWC):
        def after_backward(self, ctx, batch):
            assert isinstance(batch, Batch) and batch.x.shape[0] == batch.y.shape[0] == batch.task.shape[0]
            if ctx.task_index == 1 and ctx.task_step == 1:  # the second step: θ has left the anchor
                seen["g"] = [p.grad.clone() for p in ctx.model.parameters()]
                seen["theta"] = [p.detach().clone() for p in ctx.model.parameters()]
                seen["batch"] = batch
                seen["state"] = self.state  # the penalty in force at this step (replaced, never mutated)

        def before_step(self, ctx, batch):
            if ctx.task_index == 1 and ctx.task_step == 1:
                seen["total"] = [p.grad.clone() for p in ctx.model.parameters()]

    model = tiny_model(stream)
    strategy = Probe(lam=50.0, fisher="empirical")
    run_stream(model, stream, strategy, TrainSettings("sgd", 0.1, iterations=3), device="cpu")
    # recompute that step of task 2 at the recorded θ
    ref = tiny_model(stream)
    with torch.no_grad():
        for p, t in zip(ref.parameters(), seen["theta"]):
            p.copy_(t)
    b, heads = seen["batch"], Heads.of(stream)
    ce = F.cross_entropy(heads.logits(ref(b.x), b.task, 1), b.y)
    g_task = torch.autograd.grad(ce, list(ref.parameters()), retain_graph=True)
    penalty = quadratic_penalty(dict(ref.named_parameters()), seen["state"], 50.0)
    g_total = torch.autograd.grad(ce + penalty, list(ref.parameters()))
    for a, r in zip(seen["g"], g_task):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-7)
    for a, r in zip(seen["total"], g_total):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-7)
    assert any(not torch.allclose(a, b) for a, b in zip(seen["g"], seen["total"]))  # the penalty is felt


# ---- composition -------------------------------------------------------------------------------------------


def consolidated(stream, *strategies):
    model = tiny_model(stream)
    ctx = Context(model, Heads.of(stream), stream=stream, task=stream[0], task_index=0)
    for s in strategies:
        s.after_task(ctx)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05)
    return model, ctx


def test_compose_sums_the_penalties_and_their_gradients(stream):
    both = Compose(EWC(3.0, fisher="empirical"), L2(0.5))
    model, ctx = consolidated(stream, both)
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


def test_compose_saves_each_part_under_its_prefix_and_round_trips(stream):
    both = Compose(EWC(3.0, fisher="empirical"), SI(2.0))
    model, ctx = consolidated(stream, both)
    state = both.state_dict()
    assert state and all(k.split(".", 1)[0] in ("ewc", "si") for k in state)
    assert {k for k in state if k.startswith("ewc.")} == {f"ewc.{k}" for k in both.parts[0].state_dict()}
    fresh = Compose(EWC(3.0, fisher="empirical"), SI(2.0))
    fresh.load_state_dict({k: v.clone() for k, v in state.items()})
    assert fresh.penalty(model).item() == both.penalty(model).item() > 0
    with pytest.raises(ValueError, match="state keys"):
        fresh.load_state_dict({"mas.penalty.offset": torch.zeros(())})


def test_compose_chains_batches_and_refuses_two_owners_of_one_hook(stream):
    class AddOne(Strategy):
        name = "add-one"

        def prepare_batch(self, ctx, batch):
            return Batch(batch.x[:1], batch.y[:1], batch.task[:1]) if batch.x.shape[0] > 1 else batch

    class Loss(Strategy):
        name = "loss"

        def task_loss(self, ctx, batch, logits):
            return logits.sum() * 0.0

    class Loss2(Loss):
        name = "loss2"

    sizes = []

    class Size(Strategy):
        name = "size"

        def after_step(self, ctx, batch):
            sizes.append(batch.x.shape[0])

    run_stream(tiny_model(stream), stream, Compose(AddOne(), Size()), TrainSettings("sgd", 0.1, iterations=2),
               device="cpu")
    assert sizes == [1, 1, 1, 1]  # the second part sees the first part's batch
    with pytest.raises(UsageError, match="both define task_loss"):
        Compose(Loss(), Loss2())
    with pytest.raises(UsageError, match="each strategy once"):
        Compose(L2(), L2())


def test_ewc_plus_l2_is_one_option_on_the_command_line(tmp_path):
    res = main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--strategy", "ewc+l2", "--setting", "ewc.lam=30",
                "--setting", "l2.lam=0.5", "--iterations", "5", "--out", str(tmp_path / "r"), *FAST])
    assert res["strategy"] == "ewc+l2"
    assert res["config"]["settings"] == {"ewc": {"lam": 30.0, "fisher": "exact", "mc_samples": 1}, "l2": {"lam": 0.5}}
    strategy = build_strategy("ewc+l2")
    assert [p.name for p in strategy.parts] == ["ewc", "l2"]
