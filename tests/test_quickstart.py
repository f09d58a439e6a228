"""The README's code, run exactly as written: the quickstart adds EWC to a plain PyTorch loop and it
works; the new-strategy example becomes a strategy of the loop, the CLI, sweeps and composites."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lifelong.data import load_dataset
from lifelong.errors import UsageError
from lifelong.scenarios import batches, permuted

README = Path(__file__).parents[1] / "README.md"
TINY = Path(__file__).parent / "data" / "mnist-tiny"


def quickstart_code() -> str:
    text = README.read_text()
    m = re.search(r"<!-- quickstart:start -->\s*```python\n(.*?)```\s*<!-- quickstart:end -->", text, re.S)
    assert m, "README.md lost its quickstart block"
    return m.group(1)


def tensors(task, split, repeat=1):
    x, y, _ = next(batches([task], split, batch_size=100_000))
    return x.repeat(repeat, 1, 1, 1), y.repeat(repeat)


def run_snippet(code: str, stream):
    torch.manual_seed(0)  # the user's DataLoader shuffles with the global generator
    loaders = [DataLoader(TensorDataset(*tensors(t, "train", repeat=5)), batch_size=32, shuffle=True) for t in stream]
    ns = {"task_loaders": loaders}
    exec(compile(code, str(README), "exec"), ns)
    model = ns["model"]
    with torch.no_grad():
        acc = [float((model(tensors(t, "test")[0]).argmax(1) == tensors(t, "test")[1]).float().mean()) for t in stream]
    return ns, acc


def test_readme_quickstart_runs_verbatim_and_protects_the_first_task():
    code = quickstart_code()
    assert len(code.strip().splitlines()) <= 14  # "about ten lines"
    stream = permuted(load_dataset("mnist", TINY, download=False), 2, "domain", seed=0)
    ns, acc_ewc = run_snippet(code, stream)
    ewc, model = ns["ewc"], ns["model"]
    assert set(ewc.state["importance"]) == {n for n, _ in model.named_parameters()}
    assert ewc.penalty(model).item() > 0  # after task 2, θ has moved away from θ*_1
    lam = re.search(r"EWC\(lam=([0-9.e+]+)\)", code).group(1)
    _, acc_naive = run_snippet(code.replace(f"EWC(lam={lam})", "EWC(lam=0.0)"), stream)
    # Fine-tuning (λ = 0) forgets task 1 more; the margin seen here is about 3 points.
    assert acc_ewc[0] > acc_naive[0] + 0.015


def readme_block(name: str) -> str:
    m = re.search(rf"<!-- {name}:start -->\s*```python\n(.*?)```\s*<!-- {name}:end -->", README.read_text(), re.S)
    assert m, f"README.md lost its {name} block"
    return m.group(1)


def test_readme_new_strategy_block_is_a_strategy_the_loop_the_cli_and_compose_use(tmp_path):
    """The README's max-norm example: one dataclass, one class, register; then options and composites."""
    from lifelong.cli import main
    from lifelong.models import mlp
    from lifelong.strategies import STRATEGIES
    from lifelong.train import TrainSettings, run_stream

    ns: dict = {}
    try:
        exec(compile(readme_block("new-strategy"), str(README), "exec"), ns)
        stream = permuted(load_dataset("mnist", TINY, download=False), 2, "domain", seed=0)
        torch.manual_seed(0)
        model = mlp(784, (16,), 10)
        run_stream(model, stream, ns["MaxNorm"](max_norm=0.5), TrainSettings("sgd", 0.5, iterations=5), device="cpu")
        for p in model.parameters():
            if p.dim() == 2:
                assert float(p.detach().norm(dim=1).max()) <= 0.5 + 1e-5
        fast = ["--data-dir", str(TINY), "--no-download", "--no-progress", "--hidden", "8", "--threads", "1",
                "--benchmark", "split-mnist", "--tasks", "2", "--iterations", "2"]
        res = main(["run", "--strategy", "ewc+max-norm", "--max-norm", "2", "--out", str(tmp_path / "r"), *fast])
        assert res["config"]["settings"]["max-norm"] == {"max_norm": 2.0}
        index = main(["sweep", "--strategies", "naive,max-norm", "--set", "max_norm=1,4", "--out", str(tmp_path / "s"), *fast])
        assert sorted(r["strategy"] for r in index["runs"]) == ["max-norm", "max-norm", "naive"]
        with pytest.raises(UsageError, match="--max-norm must be > 0"):
            main(["run", "--strategy", "max-norm", "--max-norm", "0", *fast])
    finally:
        STRATEGIES.pop("max-norm", None)
