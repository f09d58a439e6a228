"""What many tests share: the fixture files, tiny streams and models, and the one driver loop a user
writes (the fixtures of ``conftest.py`` wrap these)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

ROOT = Path(__file__).parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "mnist-tiny"  # 1,000 train / 500 test MNIST images, class-balanced
FASHION = FIXTURES / "fashion-mnist-tiny"
README = ROOT / "README.md"
#: the arguments every small command-line run of the tests takes
FAST = ["--data-dir", str(TINY), "--no-download", "--no-progress", "--threads", "1"]


def tiny_stream(benchmark: str = "split-mnist", scenario: str = "task", tasks: int = 2, seed: int = 0, **spec):
    """A stream of the tiny MNIST subset (split: classes 0,1 / 2,3 / ...)."""
    from lifelong.scenarios import StreamSpec

    return StreamSpec(benchmark=benchmark, scenario=scenario, tasks=tasks, **spec).build(seed, data_dir=str(TINY),
                                                                                      download=False)


def tiny_model(stream, hidden=(16,), seed: int = 0) -> torch.nn.Module:
    """An MLP for ``stream``, seeded without touching the global random state."""
    from lifelong.models import ModelSpec

    return ModelSpec(hidden=tuple(hidden)).build(stream.input_shape, stream.n_outputs, seed)


def user_step(cl, opt, batch) -> torch.Tensor:
    """One optimizer step as a user writes it around a Learner; the loss."""
    loss = cl.loss(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    cl.before_step(batch)
    opt.step()
    cl.after_step(batch)
    return loss


def user_loop(cl, lr: float = 1e-3, optimizer=torch.optim.Adam) -> list[list[float]]:
    """What a user writes around a Learner: their optimizer, their step."""
    for _ in cl.tasks():
        opt = optimizer(cl.parameters(), lr=lr)
        cl.optimizer = opt  # PackNet's retraining after pruning uses its type and settings
        for batch in cl.batches():
            user_step(cl, opt, batch)
    return cl.accuracy_matrix.tolist()


def readme_block(name: str, path: Path | None = None) -> str:
    """The code block between ``<!-- name:start -->`` and ``<!-- name:end -->`` of a Markdown file: ``path``,
    else the one page of the README and docs/ that holds it (the same block on two pages must be the same)."""
    pages = [path] if path is not None else [README, *sorted((ROOT / "docs").rglob("*.md"))]
    found = {}
    for page in pages:
        m = re.search(rf"<!-- {name}:start -->\s*```python\n(.*?)```\s*<!-- {name}:end -->", page.read_text(), re.S)
        if m:
            found[page.name] = m.group(1)
    assert found, f"no page holds the {name} block any more"
    assert len(set(found.values())) == 1, f"the {name} block differs between {sorted(found)}"
    return next(iter(found.values()))


def run_block(code: str, data, path: Path = README) -> dict:
    """Run a Markdown block's code with ``train`` and ``test`` (lists of (x, y) pairs) defined; its namespace."""
    ns = {"train": data[0], "test": data[1], "print": lambda *a, **k: None}
    torch.manual_seed(0)
    exec(compile(code, str(path), "exec"), ns)
    return ns


def split_tensors(groups=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))):
    """Split tiny MNIST as (train, test) lists of (x, y) pairs, one per group of classes."""
    from lifelong.data import load_dataset

    d = load_dataset("mnist", TINY, download=False)
    pick = lambda x, y, g: (x[(y[:, None] == torch.tensor(g)).any(1)], y[(y[:, None] == torch.tensor(g)).any(1)])  # noqa: E731
    return ([pick(d.train_images, d.train_labels, g) for g in groups], [pick(d.test_images, d.test_labels, g) for g in groups])


def ewc_and_fine_tuning(code: str, path: Path = README):
    """A Markdown block run verbatim on two permuted tiny-MNIST tasks, with its EWC and with λ = 0."""
    from lifelong.data import load_dataset

    d = load_dataset("mnist", TINY, download=False)
    xs, ys, xt, yt = (torch.as_tensor(a) for a in (d.train_images, d.train_labels, d.test_images, d.test_labels))
    perms = [torch.arange(784), torch.randperm(784, generator=torch.Generator().manual_seed(0))]
    permute = lambda x, p: x.reshape(len(x), -1)[:, p].reshape(x.shape)  # noqa: E731 - permuted MNIST, by hand
    data = ([(permute(xs, p).repeat(3, 1, 1), ys.repeat(3)) for p in perms], [(permute(xt, p), yt) for p in perms])
    lam = re.search(r"EWC\(lam=([0-9.e+]+)\)", code).group(1)
    return (run_block(code, data, path)["cl"],
            run_block(code.replace(f"EWC(lam={lam})", "EWC(lam=0.0)"), data, path)["cl"])
