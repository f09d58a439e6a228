"""On a GPU: every strategy for a few steps, a resume, and the Fisher against the CPU's. Skipped
without CUDA (run it where there is one: ``python -m pytest tests/train/test_cuda.py``)."""

from __future__ import annotations


import pytest
import torch

from lifelong.cli import main
from lifelong.data import load_dataset
from lifelong.importance import fisher_diag
from lifelong.models import mlp, small_cnn
from lifelong.scenarios import batches, permuted
from lifelong.strategies import STRATEGIES
from tests.helpers import TINY

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")

FAST = ["--data-dir", str(TINY), "--no-download", "--no-progress", "--hidden", "32", "--device", "cuda"]


@pytest.mark.parametrize("name", [*STRATEGIES, "ewc+si"])
def test_every_strategy_runs_on_cuda(name, tmp_path):
    isolation = name in ("separate", "xdg", "packnet", "hat", "progressive")  # task-incremental only
    res = main(["run", "--benchmark", "permuted-mnist", "--tasks", "2", "--strategy", name, "--iterations", "20",
                *(["--scenario", "task"] if isolation else []), "--out", str(tmp_path / name), *FAST])
    assert res.device.startswith("cuda") and res.peak_device_memory_bytes > 0
    assert res.accuracy_matrix[1][0] > 0.2  # the first task (10 classes), before any penalty: above twice chance


def test_a_cuda_run_resumes_to_the_same_matrix(tmp_path, monkeypatch):
    from tests.experiments.test_runs import interrupted_then_resumed  # the CPU test's mechanism, on the GPU

    whole, resumed = interrupted_then_resumed(tmp_path, monkeypatch, "cuda")
    assert resumed.accuracy_matrix == whole.accuracy_matrix and resumed.device.startswith("cuda")


@pytest.mark.parametrize("kind", ["exact", "empirical", "mc"])
@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_the_fisher_on_cuda_matches_the_cpu(kind, net):
    stream = permuted(load_dataset("mnist", TINY, download=False), 1, "domain", seed=0)
    torch.manual_seed(0)
    model = (mlp(784, (32,), 10) if net == "mlp" else small_cnn((1, 28, 28), 10)).double()
    data = [(x.double(), y, None) for x, y, _, _ in batches([stream[0]], "train", batch_size=250)][:2]
    cpu = fisher_diag(model, data, kind, generator=torch.Generator().manual_seed(1))
    gpu_data = [(x.cuda(), y.cuda(), None) for x, y, _ in data]
    gpu = fisher_diag(model.cuda(), gpu_data, kind, generator=torch.Generator().manual_seed(1))
    for n in cpu:
        torch.testing.assert_close(gpu[n].cpu(), cpu[n], rtol=1e-9, atol=1e-12)
