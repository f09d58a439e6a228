"""The README's code, run exactly as written: the quickstart adds EWC to a plain PyTorch loop and it
works; the Learner snippets train replay and EWC in your own loop; every file the README and the docs
name exists. (The examples of docs/extending.md are tests/docs/test_extending.py's.)"""

from __future__ import annotations

import re

import torch
from torch.utils.data import DataLoader, TensorDataset

from lifelong.data import load_dataset
from lifelong.scenarios import batches, permuted
from tests.helpers import README, ROOT, TINY, ewc_and_fine_tuning, readme_block, run_block, split_tensors


def quickstart_code() -> str:
    return readme_block("quickstart")


def tensors(task, split, repeat=1):
    x, y, _, _ = next(batches([task], split, batch_size=100_000))
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


def test_readme_er_snippet_runs_verbatim_and_replay_beats_fine_tuning_class_incremental():
    code = readme_block("learner-er")
    assert len(code.strip().splitlines()) <= 14
    data = split_tensors()
    er = run_block(code, data)["cl"]
    naive = run_block(code.replace("ER(memory=200)", "Naive()").replace("import ER,", "import Naive,"), data)["cl"]
    a_er, a_naive = er.summary()["average_accuracy"], naive.summary()["average_accuracy"]
    assert a_naive < 0.3  # class-incremental fine-tuning keeps about the last task only
    assert a_er > a_naive + 0.3  # here 0.73 against 0.19


def test_readme_ewc_snippet_runs_verbatim_and_ewc_forgets_less_than_fine_tuning():
    code = readme_block("learner-ewc")
    assert len(code.strip().splitlines()) <= 14
    ewc, naive = ewc_and_fine_tuning(code)
    # here 0.058 against 0.076 (the tiny set forgets little; the full-MNIST numbers are in the README)
    assert ewc.summary()["forgetting"] < naive.summary()["forgetting"] - 0.01


def test_every_file_the_readme_and_the_docs_name_exists():
    """A path in the prose (``tests/strategies/test_contract.py``, ``lifelong/train/learner.py``,
    ``benchmarks/bench_run.py``) that no longer exists is a silent wrong statement."""
    docs = [README, *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for doc in docs:
        for path in set(re.findall(r"\b((?:tests|benchmarks|scripts|docs|lifelong)/[\w/.-]+\.(?:py|md|json|png))", doc.read_text())):
            where = ROOT / "src" / path if path.startswith("lifelong/") else ROOT / path
            if not where.exists():
                missing.append(f"{doc.name}: {path}")
    assert missing == []
