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


@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_the_kronecker_factors_and_penalty_on_cuda_match_the_cpu(net):
    from lifelong import KFAC
    from lifelong.importance.kfac import kron_factors

    stream = permuted(load_dataset("mnist", TINY, download=False), 1, "domain", seed=0)
    torch.manual_seed(0)
    model = (mlp(784, (32,), 10) if net == "mlp" else small_cnn((1, 28, 28), 10)).double()
    data = [(x.double(), y, None) for x, y, _, _ in batches([stream[0]], "train", batch_size=250)][:2]
    cpu, _, _ = kron_factors(model, data, "exact")
    cpu_kfac = KFAC(lam=3.0, kron_sum="nearest")
    for _ in range(2):
        cpu_kfac.consolidate(model, data)
    gpu_data = [(x.cuda(), y.cuda(), None) for x, y, _ in data]
    gpu_model = model.cuda()
    gpu, _, _ = kron_factors(gpu_model, gpu_data, "exact")
    for layer, f in cpu.items():
        for part in ("A", "G"):
            torch.testing.assert_close(gpu[layer][part].cpu(), f[part], rtol=1e-9, atol=1e-12)
    gpu_kfac = KFAC(lam=3.0, kron_sum="nearest")
    for _ in range(2):
        gpu_kfac.consolidate(gpu_model, gpu_data)
    with torch.no_grad():
        for p in gpu_model.parameters():
            p.add_(0.01)
    pen = gpu_kfac.penalty(gpu_model)
    assert pen.device.type == "cuda" and float(pen) > 0
    torch.testing.assert_close(pen.cpu(), cpu_kfac.penalty(gpu_model.cpu()), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name, extra", [("derpp", ["--memory", "50"]), ("er-ace", ["--memory", "50"]),
                                         ("online-ewc", ["--consolidate", "plateau", "--plateau-mean", "5",
                                                         "--plateau-var", "5", "--importance-every", "5"]),
                                         ("mas", ["--consolidate", "steps", "--consolidate-every", "10"])])
def test_a_task_free_run_on_cuda_measures_its_curve_as_on_the_cpu(name, extra, tmp_path):
    args = ["run", "--benchmark", "split-mnist", "--tasks", "2", "--schedule", "gradual", "--eval-per-group", "20",
            "--batch-size", "10", "--eval-every", "100", "--strategy", name, *extra]
    gpu = main([*args, "--out", str(tmp_path / "gpu"), *FAST])
    cpu = main([*args, "--out", str(tmp_path / "cpu"), *[a for a in FAST if a not in ("--device", "cuda")],
                "--device", "cpu"])
    assert gpu.device.startswith("cuda") and len(gpu.anytime["points"]) == len(cpu.anytime["points"]) >= 3
    assert gpu.consolidations == cpu.consolidations or name in ("derpp", "er-ace")
    assert abs(gpu.metrics["auc_accuracy"] - cpu.metrics["auc_accuracy"]) < 0.05  # other kernels, same learning
