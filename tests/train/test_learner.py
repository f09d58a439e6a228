"""The one driver (lifelong.Learner): any strategy in your own loop gives, bit for bit, the accuracy
matrix of `lifelong run` on the same stream, model, seed and threads; its seed; its metrics; its state
(mid-task and between tasks); its errors."""

from __future__ import annotations

import pytest
import torch

from lifelong import EWC, ER, Learner, Naive, TaskStream, TrainSettings
from lifelong.cli import main
from lifelong.data import load_dataset
from lifelong.errors import UsageError
from lifelong.experiments.build import build_stream, seeded_model
from lifelong.experiments.config import RunConfig
from lifelong.scenarios import batches
from lifelong.strategies import STRATEGIES, build
from lifelong.train.checkpoint import CheckpointError
from tests.helpers import TINY, user_loop, user_step

RUN = dict(benchmark="split-mnist", tasks=3, scenario="task", iterations=12, batch_size=16, hidden=(32,), threads=1)


@pytest.mark.parametrize("strategy", [*STRATEGIES, "ewc+er", "xdg+si", "lwf+mas", "er+lwf", "derpp+lwf"])
def test_a_user_loop_and_lifelong_run_give_the_same_matrix_to_the_last_bit(strategy, tmp_path):
    args = ["run", "--benchmark", "split-mnist", "--tasks", "3", "--scenario", "task", "--strategy", strategy,
            "--iterations", "12", "--batch-size", "16", "--hidden", "32", "--threads", "1", "--data-dir", str(TINY),
            "--no-download", "--no-progress", "--out", str(tmp_path / "run")]
    if strategy in ("er", "gdumb"):
        args += ["--memory", "40"]  # a memory smaller than a task: selection and sampling both matter
    results = main(args)
    memory = {"memory": 40} if strategy in ("er", "gdumb") else {}
    cfg = RunConfig.make(**RUN, strategy=strategy, data_dir=str(TINY), download=False, **memory).resolve()
    stream = build_stream(cfg)
    cl = Learner(seeded_model(cfg, stream), build(cfg.strategy), stream, settings=cfg.train, seed=cfg.seed)
    mine = user_loop(cl, lr=cfg.train.lr)
    assert mine == results.accuracy_matrix  # every float equal
    assert len(mine) == 4 and len({tuple(r) for r in mine}) > 1  # the matrix moved: something was learned


def tiny_stream(scenario="task", tasks=2):
    d = load_dataset("mnist", TINY, download=False)
    groups = [(0, 1), (2, 3), (4, 5)][:tasks]
    pick = lambda x, y, g: (x[(y[:, None] == torch.tensor(g)).any(1)], y[(y[:, None] == torch.tensor(g)).any(1)])  # noqa: E731
    return TaskStream.from_tensors([pick(d.train_images, d.train_labels, g) for g in groups],
                                   [pick(d.test_images, d.test_labels, g) for g in groups], scenario=scenario)


def model_for(stream):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, stream.n_outputs))


def test_your_own_batches_from_a_dataloader_train_the_current_task_and_ewc_consolidates():
    stream = tiny_stream()
    cl = Learner(model_for(stream), EWC(lam=50.0), stream)
    for task in cl.tasks():
        opt = torch.optim.SGD(cl.parameters(), lr=0.1)
        x, y, _, _ = next(batches([task], "train", batch_size=10_000))
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
        for xb, yb in loader:
            batch = cl.batch(xb, yb)
            assert bool((batch.task == task.index).all())
            loss = cl.loss(batch)
            opt.zero_grad(); loss.backward(); cl.before_step(batch); opt.step(); cl.after_step(batch)
        assert cl.ctx.task_step == len(loader)
    assert cl.ctx.step == sum(len(torch.utils.data.DataLoader(range(len(t.train)), batch_size=32)) for t in stream)
    assert float(cl.penalty()) > 0  # θ moved from θ*_1 while learning task 2
    assert cl.accuracy_matrix.shape == (3, 2) and cl.accuracy_matrix[1, 0] > 0.9
    # predict: argmax over the live units equals what evaluation counted
    test = stream[0].test
    x, y, _, _ = next(batches([stream[0]], "test", batch_size=10_000))
    scores = cl.predict(x, 0)
    assert torch.isinf(scores[:, 2:]).all()  # task 0's head: units 0, 1 only
    assert float((scores.argmax(1) == y).float().mean()) == pytest.approx(cl.accuracy_matrix[-1, 0])
    assert len(test) == len(y)


def test_learner_errors_are_one_line_usage_errors():
    stream = tiny_stream()
    with pytest.raises(UsageError, match="TaskStream.from_tensors"):
        Learner(model_for(stream), EWC(lam=1.0), [(1, 2)])
    with pytest.raises(UsageError, match="lifelong strategy"):
        Learner(model_for(stream), "ewc", stream)
    with pytest.raises(UsageError, match="give the model 4 outputs"):
        Learner(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 3)), Naive(), stream)
    with pytest.raises(UsageError, match="scenario='task'"):
        Learner(model_for(tiny_stream("domain")), STRATEGIES["packnet"](), tiny_stream("domain"))
    cl = Learner(model_for(stream), Naive(), stream)
    with pytest.raises(UsageError, match="start_task"):
        cl.loss(None)
    with pytest.raises(UsageError, match="the next is task 0"):
        cl.start_task(1)
    cl.start_task(0)
    with pytest.raises(UsageError, match="has not ended"):
        cl.start_task(1)
    with pytest.raises(UsageError, match="targets"):
        cl.batch(torch.zeros(2, 1, 28, 28))
    cl.end_task()
    cl.start_task(1)
    cl.end_task()
    with pytest.raises(UsageError, match="every task has been learned"):
        cl.start_task(2)




def test_the_seed_decides_the_data_order_and_the_strategys_randomness():
    stream = tiny_stream()

    def run(seed):
        cl = Learner(model_for(stream), ER(memory=30), stream, settings=TrainSettings(iterations=8, batch_size=16),
                     seed=seed)
        return user_loop(cl), cl.strategy.state_dict()

    (a, sa), (b, sb), (c, sc) = run(0), run(0), run(1)
    assert a == b and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a != c or any(not torch.equal(sa[k], sc[k]) for k in sa)
    with pytest.raises(UsageError, match="seed must be an integer"):
        Learner(model_for(stream), Naive(), stream, seed=-1)


def test_summary_is_the_run_metrics_with_undefined_ones_none_and_why():
    """The class scenario's forward transfer is undefined for Learner.summary() as for lifelong run."""
    stream = tiny_stream("class")
    cl = Learner(model_for(stream), Naive(), stream, settings=TrainSettings(iterations=3))
    with pytest.raises(UsageError, match="after end_task"):
        cl.summary()
    user_loop(cl)
    s = cl.summary()
    assert s["forward_transfer"] is None and "class-incremental" in cl.undefined_metrics()["forward_transfer"]
    from lifelong.train.stream import results_of

    assert results_of(cl).metrics == s and results_of(cl).undefined_metrics == cl.undefined_metrics()
    task = Learner(model_for(tiny_stream()), Naive(), tiny_stream(), settings=TrainSettings(iterations=3))
    user_loop(task)
    assert isinstance(task.summary()["forward_transfer"], float) and task.undefined_metrics() == {}


@pytest.mark.parametrize("at", ["between tasks", "mid task"])
def test_a_learner_saved_and_loaded_continues_to_the_same_matrix_and_state(at, tmp_path):
    stream = tiny_stream(tasks=2)
    settings = TrainSettings(iterations=10, batch_size=16)

    def fresh():
        return Learner(model_for(stream), ER(memory=30), stream, settings=settings)

    whole = fresh()
    want = user_loop(whole)
    cut = fresh()
    cut.start_task(0)
    opt = cut.optimizer = torch.optim.Adam(cut.parameters(), lr=1e-3)
    for k, batch in enumerate(cut.batches()):
        user_step(cut, opt, batch)
        if at == "mid task" and k == 3:
            break
    if at == "between tasks":
        cut.end_task()
    cut.save(tmp_path / "cl.safetensors")
    back = fresh()
    back.load(tmp_path / "cl.safetensors")
    assert back.position == ((0, 4) if at == "mid task" else (1, 0))
    for task in back.tasks():  # the loop of user_loop, keeping the restored optimizer mid-task
        opt = back.optimizer or torch.optim.Adam(back.parameters(), lr=1e-3)
        back.optimizer = opt
        for batch in back.batches():
            user_step(back, opt, batch)
    assert back.accuracy_matrix.tolist() == want
    a, b = whole.strategy.state_dict(), back.strategy.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(CheckpointError, match="not of ewc"):
        Learner(model_for(stream), EWC(lam=1.0), stream).load(tmp_path / "cl.safetensors")


def test_a_loop_with_its_own_batch_size_saved_mid_epoch_continues_in_the_same_order(tmp_path):
    """batches(batch_size=16) where the settings say 64: a save after 7 steps is mid-epoch for the loop's
    batches (25 a pass) though 7 is a whole epoch of the settings' (7 a pass); the resumed loop must draw
    the rest of that epoch, not a new one."""
    stream = tiny_stream(tasks=2)
    settings = TrainSettings(batch_size=64, optimizer="sgd", lr=0.05)

    def fresh():
        return Learner(model_for(stream), Naive(), stream, settings=settings, seed=1)

    def run(cl, stop=None):
        for task in cl.tasks():
            opt = cl.optimizer = cl.optimizer or torch.optim.SGD(cl.parameters(), lr=0.05)
            for batch in cl.batches(batch_size=16):
                user_step(cl, opt, batch)
                if stop is not None and cl.position == stop:
                    return False
        return True

    whole = fresh()
    assert run(whole) and whole.steps_per_task == [25, 25] and whole.ctx.steps_per_epoch == 7
    cut = fresh()
    assert not run(cut, stop=(0, 7))
    cut.save(tmp_path / "cl.safetensors")
    back = fresh()
    back.load(tmp_path / "cl.safetensors")
    assert run(back)
    assert back.accuracy_matrix.tolist() == whole.accuracy_matrix.tolist()
    assert all(torch.equal(a, b) for a, b in zip(back.model.state_dict().values(), whole.model.state_dict().values()))


def test_a_learner_is_not_saved_where_it_could_not_continue_exactly():
    stream = tiny_stream()
    cl = Learner(model_for(stream), Naive(), stream, settings=TrainSettings(iterations=4))
    cl.start_task(0)
    with pytest.raises(UsageError, match="before_task would run twice"):
        cl.state_dict()
    batch = next(cl.batches())
    with pytest.raises(UsageError, match="between steps"):
        cl.state_dict()
    cl.loss(batch).backward()
    cl.before_step(batch)
    cl.after_step(batch)
    with pytest.raises(UsageError, match="set cl.optimizer"):
        cl.state_dict()  # mid-task without the user's optimizer: its state could not be saved
    with pytest.raises(UsageError, match="takes the batch that batch"):
        cl.loss(next(cl.batches())._replace(y=torch.zeros(1)))


# ---- the API's boundary: hostile input is one UsageError naming the argument -----------------------------------


@pytest.mark.parametrize("scenario", ["task", "class"])
@pytest.mark.parametrize("make, param, words", [
    (lambda x, y: (x, y.float() + 0.5), "y", "integer class ids"),  # fractional labels
    (lambda x, y: (x, y.float()), "y", "integer class ids"),  # float labels, even whole ones
    (lambda x, y: (x, y + 100), "y", "not an output unit"),
    (lambda x, y: (x, -y - 1), "y", "not an output unit"),
    (lambda x, y: (x, y[:-1]), "x", "one target per input"),
    (lambda x, y: (x[:, :, :5], y), "x", "784"),
    (lambda x, y: (x.tolist(), y), "x", "must be a tensor"),
])
def test_your_batches_are_checked_at_the_boundary(scenario, make, param, words):
    s = tiny_stream(scenario)
    cl = Learner(model_for(s), ER(memory=50), s)
    cl.start_task(0)
    x, y, _, _ = next(iter(batches([s[0]], "train", batch_size=8)))
    with pytest.raises(UsageError, match=words) as e:
        cl.batch(*make(x, y))
    assert param in e.value.params and "\n" not in str(e.value)
    assert cl.last_batch is None  # nothing was prepared: the step can start again
    cl.batch(x, y)


@pytest.mark.parametrize("task, words", [(-1, "tasks learned so far"), (1, "tasks learned so far"),
                                         (0.5, "must be integers"), (True, "task index")])
def test_task_ids_must_name_tasks_learned_so_far(task, words):
    s = tiny_stream("task")
    cl = Learner(model_for(s), Naive(), s)
    cl.start_task(0)
    x, y, _, _ = next(iter(batches([s[0]], "train", batch_size=8)))
    with pytest.raises(UsageError, match=words) as e:
        cl.batch(x, y, torch.tensor([task] * 8) if isinstance(task, float) else task)
    assert "task" in e.value.params


def test_a_label_of_another_tasks_head_is_refused_in_the_task_scenario():
    s = tiny_stream("task")
    cl = Learner(model_for(s), Naive(), s)
    cl.start_task(0)
    x, y, _, _ = next(iter(batches([s[1]], "train", batch_size=8)))  # task 1's units (2, 3)
    with pytest.raises(UsageError, match=r"its units: \[0, 1\]"):
        cl.batch(x, y)


def test_one_strategy_object_serves_one_model():
    s = tiny_stream()
    ewc = EWC(lam=10.0)
    first = model_for(s)
    Learner(first, ewc, s)
    Learner(first, ewc, s)  # the same model again is fine (a Learner made anew)
    with pytest.raises(UsageError, match="already serves another model"):
        Learner(model_for(s), ewc, s)
    from lifelong.strategies import build as build_strategy

    both = build_strategy("ewc+er")
    Learner(first, both, s)
    with pytest.raises(UsageError, match="already serves another model"):
        Learner(model_for(s), both, s)
    with pytest.raises(UsageError, match="already serves another model"):  # a part of it, on its own
        Learner(model_for(s), both.parts[1], s)


@pytest.mark.parametrize("name", ["hat", "packnet"])
def test_a_strategy_that_needs_the_optimizer_says_so(name):
    """HAT's embeddings are made when the first task starts (progressive laterals when each later one
    does); PackNet retrains with the loop's optimizer: an optimizer not given, or built before
    start_task, is one line."""
    s = tiny_stream()
    cl = Learner(model_for(s), build(name), s)
    early = torch.optim.SGD(cl.parameters(), lr=0.1)
    cl.start_task(0)
    x, y, _, _ = next(iter(batches([s[0]], "train", batch_size=8)))
    b = cl.batch(x, y)
    cl.loss(b).backward()
    with pytest.raises(UsageError, match="needs your optimizer"):
        cl.before_step(b)
    cl.optimizer = early
    if name != "packnet":  # PackNet trains the model's parameters alone: any optimizer of them will do
        with pytest.raises(UsageError, match="does not train"):
            cl.before_step(b)
    cl.optimizer = torch.optim.SGD(cl.parameters(), lr=0.1)
    cl.before_step(b)


def _flushing_subnormals() -> bool:
    return float(torch.tensor([1e-40]) * 1.0) == 0.0


def test_a_step_that_fails_half_way_leaves_the_process_float_mode_as_it_was():
    """HAT flushes subnormals to zero from its forward pass to after_step (a CPU speed-up). A step that
    raises in between (here: no optimizer given) must give that mode back: left on, it silently changed
    every later computation of the process (found by a hypothesis test of another module)."""
    s = tiny_stream()
    cl = Learner(model_for(s), build("hat"), s)
    cl.start_task(0)
    x, y, _, _ = next(iter(batches([s[0]], "train", batch_size=8)))
    b = cl.batch(x, y)
    assert not _flushing_subnormals()
    loss = cl.loss(b)
    assert _flushing_subnormals()  # on during the step, as designed
    loss.backward()
    with pytest.raises(UsageError, match="needs your optimizer"):
        cl.before_step(b)
    assert not _flushing_subnormals()
