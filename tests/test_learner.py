"""The plain-loop API (lifelong.Learner): any strategy in your own loop gives, bit for bit, the accuracy
matrix of `lifelong run` on the same stream, model, seed and threads; its errors; the README snippets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from lifelong import EWC, Learner, Naive, TaskStream
from lifelong.cli import main
from lifelong.data import load_dataset
from lifelong.errors import UsageError
from lifelong.experiments.build import build_strategy, build_stream, seeded_model
from lifelong.experiments.config import RunConfig
from lifelong.scenarios import batches
from lifelong.strategies import STRATEGIES

TINY = str(Path(__file__).parent / "data" / "mnist-tiny")
README = Path(__file__).parents[1] / "README.md"
RUN = dict(benchmark="split-mnist", tasks=3, scenario="task", iterations=12, batch_size=16, hidden=(32,), threads=1)


def user_loop(cfg: RunConfig) -> list[list[float]]:
    """What a user writes: their optimizer, their step; the Learner calls the hooks."""
    cfg = cfg.resolved()
    stream = build_stream(cfg)
    cl = Learner(seeded_model(cfg, stream), build_strategy(cfg), stream, settings=cfg.train_settings())
    for _ in cl.tasks():
        opt = torch.optim.Adam(cl.parameters(), lr=cfg.lr)
        cl.optimizer = opt  # PackNet's retraining after pruning uses its type and settings
        for batch in cl.batches():
            loss = cl.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            cl.before_step(batch)
            opt.step()
            cl.after_step(batch)
    return cl.accuracy_matrix.tolist()


@pytest.mark.parametrize("strategy", [*STRATEGIES, "ewc+er", "xdg+si", "lwf+mas"])
def test_a_user_loop_and_lifelong_run_give_the_same_matrix_to_the_last_bit(strategy, tmp_path):
    args = ["run", "--benchmark", "split-mnist", "--tasks", "3", "--scenario", "task", "--strategy", strategy,
            "--iterations", "12", "--batch-size", "16", "--hidden", "32", "--threads", "1", "--data-dir", TINY,
            "--no-download", "--no-progress", "--out", str(tmp_path / "run")]
    if strategy in ("er", "gdumb"):
        args += ["--memory", "40"]  # a memory smaller than a task: selection and sampling both matter
    results = main(args)
    memory = {"memory": 40} if strategy in ("er", "gdumb") else {}
    cfg = RunConfig.make(**RUN, strategy=strategy, data_dir=TINY, download=False, **memory)
    mine = user_loop(cfg)
    assert mine == results["accuracy_matrix"]  # every float equal
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
        x, y, _ = next(batches([task], "train", batch_size=10_000))
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
    x, y, _ = next(batches([stream[0]], "test", batch_size=10_000))
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
    with pytest.raises(UsageError, match="scenario task"):
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


def readme_block(name: str) -> str:
    m = re.search(rf"<!-- {name}:start -->\s*```python\n(.*?)```\s*<!-- {name}:end -->", README.read_text(), re.S)
    assert m, f"README.md lost its {name} block"
    return m.group(1)


def run_block(code: str, data) -> dict:
    ns = {"train": data[0], "test": data[1], "print": lambda *a, **k: None}
    torch.manual_seed(0)
    exec(compile(code, str(README), "exec"), ns)
    return ns


def split_tensors(groups=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))):
    d = load_dataset("mnist", TINY, download=False)
    pick = lambda x, y, g: (x[(y[:, None] == torch.tensor(g)).any(1)], y[(y[:, None] == torch.tensor(g)).any(1)])  # noqa: E731
    return ([pick(d.train_images, d.train_labels, g) for g in groups], [pick(d.test_images, d.test_labels, g) for g in groups])


def test_readme_er_snippet_runs_verbatim_and_replay_beats_fine_tuning_class_incremental():
    code = readme_block("learner-er")
    assert len(code.strip().splitlines()) <= 14
    data = split_tensors()
    er = run_block(code, data)["cl"]
    naive = run_block(code.replace("ER(memory=200)", "Naive()").replace("import ER,", "import Naive,"), data)["cl"]
    a_er, a_naive = er.summary()["average_accuracy"], naive.summary()["average_accuracy"]
    assert a_naive < 0.3  # class-incremental fine-tuning keeps about the last task only
    assert a_er > a_naive + 0.3  # here 0.73 against 0.19


def ewc_and_fine_tuning(code: str):
    """A README block run verbatim on two permuted tiny-MNIST tasks, with its EWC and with λ = 0."""
    d = load_dataset("mnist", TINY, download=False)
    xs, ys, xt, yt = (torch.as_tensor(a) for a in (d.train_images, d.train_labels, d.test_images, d.test_labels))
    perms = [torch.arange(784), torch.randperm(784, generator=torch.Generator().manual_seed(0))]
    permute = lambda x, p: x.reshape(len(x), -1)[:, p].reshape(x.shape)  # noqa: E731 - permuted MNIST, by hand
    data = ([(permute(xs, p).repeat(3, 1, 1), ys.repeat(3)) for p in perms], [(permute(xt, p), yt) for p in perms])
    lam = re.search(r"EWC\(lam=([0-9.e+]+)\)", code).group(1)
    return run_block(code, data)["cl"], run_block(code.replace(f"EWC(lam={lam})", "EWC(lam=0.0)"), data)["cl"]


def test_readme_ewc_snippet_runs_verbatim_and_ewc_forgets_less_than_fine_tuning():
    code = readme_block("learner-ewc")
    assert len(code.strip().splitlines()) <= 14
    ewc, naive = ewc_and_fine_tuning(code)
    # here 0.058 against 0.076 (the tiny set forgets little; the full-MNIST numbers are in the README)
    assert ewc.summary()["forgetting"] < naive.summary()["forgetting"] - 0.01
