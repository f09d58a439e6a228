"""Lightning: a strategy applied by LifelongCallback inside Trainer.fit (one fit per task) gives the
accuracy matrix of the plain loop on the same batches, bit for bit (CPU, one thread, deterministic)."""

from __future__ import annotations


import pytest
import torch

L = pytest.importorskip("lightning.pytorch")

from lifelong import Learner, TaskStream  # noqa: E402
from lifelong.data import load_dataset  # noqa: E402
from lifelong.errors import UsageError  # noqa: E402
from lifelong.integrations.lightning import LifelongCallback  # noqa: E402
from lifelong.scenarios import batches  # noqa: E402
from lifelong.seeds import derived_generator  # noqa: E402
from lifelong.strategies import build  # noqa: E402
from tests.helpers import TINY



def stream():
    d = load_dataset("mnist", TINY, download=False)
    xs, ys, xt, yt = (torch.as_tensor(a) for a in (d.train_images, d.train_labels, d.test_images, d.test_labels))
    pick = lambda x, y, g: (x[(y == g[0]) | (y == g[1])], y[(y == g[0]) | (y == g[1])])  # noqa: E731
    groups = [(0, 1), (2, 3)]
    return TaskStream.from_tensors([pick(xs, ys, g) for g in groups], [pick(xt, yt, g) for g in groups], scenario="task")


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 24), torch.nn.ReLU(), torch.nn.Linear(24, 4))


def task_batches(s, epochs=2, batch_size=32):
    """The raw batches of each task in a seeded order: what both loops train on."""
    g = derived_generator(0, "order")
    return [[(x, y) for _ in range(epochs) for x, y, _, _ in batches([t], "train", batch_size=batch_size, shuffle=True,
                                                                   generator=g)] for t in s]


def plain(name):
    s = stream()
    return plain_loop(Learner(model(), build(name), s), task_batches(s))


def plain_loop(cl, data_of_tasks):
    """The plain loop Lightning is compared with: each task's (x, y) batches through ``cl.batch``."""
    for _, data in zip(cl.tasks(), data_of_tasks):
        opt = torch.optim.SGD(cl.parameters(), lr=0.05, momentum=0.9)
        cl.optimizer = opt
        for x, y in data:
            b = cl.batch(x, y)
            loss = cl.loss(b)
            opt.zero_grad()
            loss.backward()
            cl.before_step(b)
            opt.step()
            cl.after_step(b)
    return cl


class Module(L.LightningModule):
    def __init__(self, cl):
        super().__init__()
        self.cl, self.net = cl, cl.model

    def training_step(self, batch, i):
        x, y = batch
        return self.cl.loss(self.cl.batch(x, y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.cl.parameters(), lr=0.05, momentum=0.9)


def lightning(name):
    s = stream()
    cl = Learner(model(), build(name), s)
    callback = LifelongCallback(cl)
    for data in task_batches(s):
        trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, deterministic=True, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            callbacks=[callback])
        trainer.fit(Module(cl), torch.utils.data.DataLoader(data, batch_size=None))
    return cl


@pytest.mark.parametrize("name", ["ewc", "kfac", "si", "er", "lwf", "hat", "progressive", "packnet"])
def test_lightning_callback_gives_the_plain_loops_matrix_to_the_last_bit(name):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = plain(name), lightning(name)
    finally:
        torch.set_num_threads(threads)
    assert a.accuracy_matrix.tolist() == b.accuracy_matrix.tolist()
    assert a.accuracy_matrix.shape == (3, 2) and a.accuracy_matrix[1, 0] > 0.9
    sa, sb = a.strategy.state_dict(), b.strategy.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_training_step_without_learner_batch_is_a_clear_error():
    s = stream()
    cl = Learner(model(), build("ewc"), s)

    class Plain(Module):
        def training_step(self, batch, i):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[LifelongCallback(cl)])
    with pytest.raises(UsageError, match="did not call learner.batch"):
        trainer.fit(Plain(cl), torch.utils.data.DataLoader(task_batches(s)[0], batch_size=None))
    with pytest.raises(UsageError, match="takes a lifelong.Learner"):
        LifelongCallback(object())


def test_readme_lightning_snippet_runs_verbatim_and_ewc_forgets_less_than_fine_tuning():
    from tests.helpers import ewc_and_fine_tuning, readme_block

    ewc, naive = ewc_and_fine_tuning(readme_block("lightning"))
    assert ewc.accuracy_matrix.shape == (3, 2) and ewc.accuracy_matrix[1, 0] > 0.8
    assert ewc.summary()["forgetting"] < naive.summary()["forgetting"] - 0.01  # here 0.058 against 0.076


def plain_accumulating(name, k):
    """A plain loop that accumulates k batches per optimizer step (each loss / k, as Lightning does)."""
    s = stream()
    cl = Learner(model(), build(name), s)
    for task, data in zip(cl.tasks(), task_batches(s)):
        opt = torch.optim.SGD(cl.parameters(), lr=0.05, momentum=0.9)
        cl.optimizer = opt
        opt.zero_grad()
        for i, (x, y) in enumerate(data):
            b = cl.batch(x, y)
            (cl.loss(b) / k).backward()
            if (i + 1) % k == 0 or i + 1 == len(data):
                cl.before_step(b)
                opt.step()
                cl.after_step(b)
                opt.zero_grad()
    return cl


@pytest.mark.parametrize("name", ["si", "er", "derpp", "ewc"])
def test_gradient_accumulation_steps_the_strategy_once_per_optimizer_step_over_every_batch(name):
    """accumulate_grad_batches=4: the step hooks run once per optimizer step (SI crashed when they ran per
    batch) and see all 4 batches (a reservoir is offered every sample), as a plain accumulating loop."""
    s = stream()
    cl = Learner(model(), build(name), s)
    callback = LifelongCallback(cl)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for data in task_batches(s):
            trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, deterministic=True, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                callbacks=[callback], accumulate_grad_batches=4)
            trainer.fit(Module(cl), torch.utils.data.DataLoader(data, batch_size=None))
        ref = plain_accumulating(name, 4)
    finally:
        torch.set_num_threads(threads)
    steps = [-(-len(d) // 4) for d in task_batches(s)]
    assert cl.steps_per_task == ref.steps_per_task == steps
    assert cl.accuracy_matrix.tolist() == ref.accuracy_matrix.tolist()
    if name in ("er", "derpp"):
        assert cl.strategy.buffer.seen == sum(len(t.train) for t in s) * 2  # every sample of both epochs offered


def task_free_stream():
    from lifelong.scenarios import task_free

    s = stream()
    return task_free(TaskStream.from_tensors([(t.train.images, t.train.targets) for t in s],
                                             [(t.test.images, t.test.targets) for t in s], scenario="class",
                                             units="shared"), "gradual", seed=0, eval_per_group=20)


def stream_batches(s, batch_size=16):
    """The stream in its order: what a task-free run trains on, in both loops."""
    return [(x, y) for x, y, _, _ in batches([s[0]], "train", batch_size=batch_size)]


@pytest.mark.parametrize("name, settings", [("derpp", {"memory": 50}),
                                            ("online-ewc", {"consolidate": "steps", "consolidate_every": 10})])
def test_lightning_learns_a_task_free_stream_as_the_plain_loop_curve_and_all(name, settings):
    from lifelong.strategies import STRATEGIES
    from lifelong.train import TrainSettings

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = []
        for use_lightning in (False, True):
            s = task_free_stream()
            cl = Learner(model(), STRATEGIES[name](**settings), s, settings=TrainSettings(eval_every=200))
            data = stream_batches(s)
            if use_lightning:
                trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, deterministic=True, logger=False,
                                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                    callbacks=[LifelongCallback(cl)])
                trainer.fit(Module(cl), torch.utils.data.DataLoader(data, batch_size=None))
            else:
                plain_loop(cl, [data])
            runs.append(cl)
    finally:
        torch.set_num_threads(threads)
    a, b = runs
    assert len(a.curve) == len(s[0].train) // 200 and a.curve == b.curve  # the last point is the end
    assert a.accuracy_matrix.tolist() == b.accuracy_matrix.tolist()
    sa, sb = a.strategy.state_dict(), b.strategy.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
