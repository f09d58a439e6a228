"""The README quickstart, run exactly as written, adds EWC to a plain PyTorch loop and it works."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from lifelong.data import load_dataset
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
