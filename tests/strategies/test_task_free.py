"""Every strategy on a stream without task boundaries, over the whole registry and every choice of its
settings: it learns the stream in its order, one sample once, or it is refused before anything trains
with one line saying why (never fine-tuning silently under its name).

A strategy that runs must, on a tiny gradual stream (2 phases, batches of 8, one pass):

* be deterministic, and resume bit-exactly from a checkpoint saved in the middle of the stream (the
  model, its state and the accuracy curve measured so far);
* if it keeps a memory, hold samples of both phases' classes at the end (filled while the stream flows);
* record an accuracy curve with a point every ``eval_every`` samples and one at the end.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lifelong.errors import UsageError
from lifelong.settings import meta
from lifelong.strategies import STRATEGIES, build
from lifelong.strategies.compose import ComposeSettings
from lifelong.train import Learner, TrainSettings
from lifelong.train.checkpoint import load_checkpoint, save_checkpoint
from tests.helpers import tiny_model, tiny_stream, user_step
from tests.strategies.test_contract import made_or_skip, same, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")

BATCH, PER_TASK, EVERY = 8, 48, 24  # 96 samples, 12 steps, a point every 3 steps
#: the boundary-free forms of the regularizers that have them, consolidating within the tiny stream
FREE = {"consolidate": "steps", "consolidate_every": 4, "importance_every": 2}
PLATEAU = {"consolidate": "plateau", "importance_every": 2, "plateau_window": 2, "plateau_mean": 100.0,
           "plateau_var": 100.0}


def cases() -> list[tuple[str, str, dict]]:
    out = []
    for name, cls in STRATEGIES.items():
        fields = {f.name for f in dataclasses.fields(cls.Settings)}
        base = {**FREE} if "consolidate" in fields else {}
        out.append((name, name, base))
        if "consolidate" in fields:
            out.append((f"{name}-plateau", name, dict(PLATEAU)))
        if "policy" in fields:
            out.append((f"{name}-reservoir", name, {"policy": "reservoir"}))
        for f in dataclasses.fields(cls.Settings):
            for choice in meta(f)["choices"] or ():
                if choice != f.default and f.name not in ("consolidate", "policy"):
                    out.append((f"{name}-{f.name}={choice}", name, {**base, f.name: choice}))
    return out + [("er+online-ewc", "er+online-ewc", {f"online-ewc.{k}": v for k, v in FREE.items()})]


CASES = cases()


def stream():
    return tiny_stream("split-mnist", "class", 2, schedule="gradual", train_samples=PER_TASK, eval_per_group=10)


def learner(settings) -> Learner:
    s = stream()
    return Learner(tiny_model(s), build(settings), s, seed=5,
                   settings=TrainSettings(batch_size=BATCH, eval_every=EVERY, optimizer="sgd", lr=0.05))


def train(cl: Learner, stop_at: int | None = None) -> bool:
    while cl.next_task < len(cl.stream) or cl.position[1]:
        cl.start_task(cl.position[0])
        opt = cl.optimizer = cl.optimizer or torch.optim.SGD(cl.parameters(), lr=0.05)
        for batch in cl.batches():
            user_step(cl, opt, batch)
            if stop_at is not None and cl.ctx.task_step == stop_at:
                return False
        cl.end_task()
    return True


@pytest.mark.parametrize("case, name, settings", CASES, ids=[c[0] for c in CASES])
def test_every_strategy_learns_a_task_free_stream_or_says_why_not(case, name, settings, tmp_path):
    s = made_or_skip(name, settings)
    strategy = build(s)
    why = strategy.task_free_problem()
    if why:
        with pytest.raises(UsageError) as e:
            learner(s)
        msg = str(e.value)
        assert "\n" not in msg and "task-free" in msg and why in msg, msg
        return

    whole = learner(s)
    assert train(whole)
    n = len(whole.stream[0].train)
    assert whole.samples_seen == n  # one pass: every sample once
    assert [p["samples"] for p in whole.curve] == [EVERY, 2 * EVERY, 3 * EVERY, 4 * EVERY]
    assert whole.summary()["auc_accuracy"] is not None
    parts = s.parts if isinstance(s, ComposeSettings) else (s,)
    if any(STRATEGIES[p.strategy].keeps_memory for p in parts):
        mem = next(p for p in (whole.strategy.parts if isinstance(s, ComposeSettings) else [whole.strategy])
                   if p.keeps_memory).buffer
        assert len(mem) > 0
        assert len(torch.unique(mem.state_dict()["y"][: len(mem)])) >= 3, "the memory holds one phase only"
    for p in (whole.strategy.parts if isinstance(s, ComposeSettings) else [whole.strategy]):
        if hasattr(p, "consolidations") and p.consolidation != "task":
            assert p.consolidations(), f"{p.name} never consolidated"
            assert p.state["importance"], f"{p.name}'s penalty is empty"
    want = snapshot(whole)

    again = learner(s)
    train(again)
    assert same(snapshot(again), want) and again.curve == whole.curve, "the same seed gave another run"

    # between two evaluations, mid-stream; after the last step (and the last point), before after_task
    for stop_at in (5, whole.steps_per_task[0]):
        cut = learner(s)
        assert not train(cut, stop_at=stop_at)
        save_checkpoint(tmp_path / "cut.safetensors", *cut.state_dict())
        back = learner(s)
        back.load_state_dict(load_checkpoint(tmp_path / "cut.safetensors"))
        assert back.samples_seen == cut.samples_seen and back.curve == cut.curve
        assert train(back)
        assert same(snapshot(back), want), f"a run continued at step {stop_at} ended elsewhere than the whole run"
        assert back.curve == whole.curve


def test_the_refusals_are_the_strategies_that_work_at_task_boundaries():
    refused = {n for n, cls in STRATEGIES.items() if cls().task_free_problem()}
    assert {"si", "rwalk", "l2", "kfac", "lwf", "icarl", "gem", "gdumb", "agem", "packnet", "hat", "xdg",
            "progressive", "separate", "ewc", "online-ewc", "mas"} == refused
    runs = set(STRATEGIES) - refused
    assert runs == {"naive", "joint", "joint-end", "er", "er-ace", "der", "derpp"}
    # with the boundary-free settings the regularizers run, and A-GEM with a reservoir
    assert not STRATEGIES["ewc"](consolidate="plateau").task_free_problem()
    assert not STRATEGIES["mas"](consolidate="steps", consolidate_every=5).task_free_problem()
    assert not STRATEGIES["agem"](policy="reservoir").task_free_problem()


def test_a_task_free_stream_is_learned_in_its_order_and_joint_shuffles_it():
    s = stream()
    seen = {}
    for name in ("naive", "joint"):
        cl = Learner(tiny_model(s), build(name), s, settings=TrainSettings(batch_size=BATCH), seed=0)
        cl.start_task(0)
        opt = torch.optim.SGD(cl.parameters(), lr=0.01)
        ys = []
        for b in cl.batches():
            ys.append(b.y)
            user_step(cl, opt, b)
        seen[name] = torch.cat(ys)
    assert torch.equal(seen["naive"], s[0].train.targets)  # the stored order
    assert not torch.equal(seen["joint"], s[0].train.targets)
    assert sorted(seen["joint"].tolist()) == sorted(s[0].train.targets.tolist())


def test_er_ace_applies_its_asymmetric_loss_on_a_task_free_stream():
    """Without a second task to wait for, the current rows' cross-entropy runs over the classes present in
    the batch as soon as the memory gives rows."""
    import torch.nn.functional as F

    s = stream()
    cl = Learner(tiny_model(s), STRATEGIES["er-ace"](memory=40), s, settings=TrainSettings(batch_size=BATCH), seed=0)
    cl.start_task(0)
    opt = cl.optimizer = torch.optim.SGD(cl.parameters(), lr=0.05)
    checked = 0
    for batch in cl.batches():
        cl.loss(batch)
        step = cl.pending
        cur, mem = step.rows(0), step.rows(1)
        if mem.stop > mem.start:
            z, y = step.logits[cur], step.inputs.y[cur]
            present = torch.zeros(z.shape[1], dtype=torch.bool)
            present[y] = True
            want = F.cross_entropy(z.masked_fill(~present, float("-inf")), y)
            torch.testing.assert_close(step.losses["task"], want)
            checked += 1
        loss = sum(step.losses.values())
        opt.zero_grad()
        loss.backward()
        cl.before_step(batch)
        opt.step()
        cl.after_step(batch)
    assert checked >= 5


def test_the_task_free_pages_own_loop_runs_and_measures_its_curve():
    from tests.helpers import readme_block

    ns: dict = {"print": lambda *a, **k: None}
    torch.manual_seed(0)  # the page's model is initialized from the global generator, as a user's is
    exec(compile(readme_block("task-free-loop"), "task-free-loop", "exec"), ns)
    cl = ns["cl"]
    assert [p["samples"] for p in cl.curve] == [100, 200, 300, 400, 500, 600]
    assert cl.curve[0]["seen"] == [True, True, False, False] and all(cl.curve[-1]["seen"])
    m = cl.anytime()["metrics"]
    assert m["final_accuracy"] > 0.5 and 0 < m["auc_accuracy"] <= 1  # more than the last two classes kept


def test_a_class_the_test_split_lacks_has_no_accuracy_and_enters_no_metric():
    """Your own data: a class with training samples and no test sample. Its accuracy is None at every point
    (not 0, which would read as a class learned and forgotten, and pull curve forgetting towards 0)."""
    from lifelong import TaskStream, task_free
    from lifelong.eval.anytime import curve_forgetting, seen_accuracy

    g = torch.Generator().manual_seed(0)

    def data(n, classes):
        return torch.randn(n, 4, generator=g), torch.tensor([classes[i % len(classes)] for i in range(n)])

    tasks = TaskStream.from_tensors([data(40, [0, 1]), data(40, [2, 3])], [data(20, [0, 1]), data(20, [2])],
                                    scenario="class")  # no test sample of class 3
    s = task_free(tasks, "flat", seed=0)
    cl = Learner(torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)), build("naive"),
                 s, settings=TrainSettings(batch_size=8, eval_every=16), seed=0)
    train(cl)
    assert len(cl.curve) == 5 and all(p["groups"][3] is None for p in cl.curve)
    assert all(a is not None for p in cl.curve for a in p["groups"][:3])
    last = cl.curve[-1]
    assert last["accuracy"] == pytest.approx(seen_accuracy(last["groups"], [10, 10, 20, 0], last["seen"]))
    per, seen = [p["groups"][:3] for p in cl.curve], [p["seen"][:3] for p in cl.curve]
    assert cl.summary()["curve_forgetting"] == pytest.approx(curve_forgetting(per, seen))  # the three others alone
