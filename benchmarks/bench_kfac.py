"""Cost of the Kronecker-factored Laplace (``kfac``) against fine-tuning and diagonal EWC, on MNIST.

    python benchmarks/bench_kfac.py [--samples N] [--tasks 1,10,50] [--out benchmarks/results/kfac.json]
                                    [--threads T] [--data-dir DIR]

For each model (MLP 784-400-400-10, MLP 784-100-100-10, and the library's small CNN: two 3×3 conv
layers of 32 and 64 channels, a 3136-128 and a 128-10 layer), in one process, on the first N training
images:

  (i)   the factor computation of one task (``kron_factors``, exact Fisher) and the diagonal Fisher
        (``fisher_diag``, exact) on the N samples, each in epochs of fine-tuning on the same N samples
        (Adam, batch 128, the same loop as the steps below);
  (ii)  the training step (forward, cross-entropy, backward, the penalty's gradient, Adam) of
        fine-tuning, of diagonal EWC and of ``kfac`` with T tasks' terms kept (the exact online sum and
        separate anchors cost the same per term; ``kron_sum="nearest"`` is always T = 1), timed round-robin
        in rounds so that the machine's noise falls on all alike; the median per step, and the ratios to
        fine-tuning and to EWC;
  (iii) the state's bytes against the number of tasks for each form (diagonal EWC: importance and anchor
        of every parameter, constant);
  (iv)  the error of the constant-memory form against the exact sum on a small network: the MLP
        784-100-100-10 learns ``--error-tasks`` permuted-MNIST tasks one after another (one epoch of Adam on
        the N images, permuted per task), the factors of each task are taken at its end, and after each
        task the nearest Kronecker product kept by ``kron_sum="nearest"`` is compared with the exact sum
        of all the tasks' blocks (``kron_sum_error``), per layer; also the error of each single step (the
        one ``results.json`` records).

Timings on a shared machine are noisy: the JSON records the load average; compare ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from lifelong._io import atomic_write_json
from lifelong.importance import fisher_diag
from lifelong.importance.kfac import kron_factors
from lifelong.models import small_cnn
from lifelong.penalties import add_quadratic_grad_
from lifelong.penalties.kronecker import add_kron_grad_, folded, kron_sum_error, nearest_kron


def load(data_dir: Path | None, n: int) -> tuple[Tensor, Tensor]:
    from lifelong.data import load_dataset

    ds = load_dataset("mnist", data_dir)
    x = torch.from_numpy(ds.train_images[:n].reshape(-1, 784).astype(np.float32) / 255.0)
    return x, torch.from_numpy(ds.train_labels[:n].astype(np.int64))


def models(seed: int) -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    def mlp(h: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(784, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 10))

    torch.manual_seed(seed)
    return {"mlp-784-400-400-10": (mlp(400), (784,)), "mlp-784-100-100-10": (mlp(100), (784,)),
            "cnn-32-64-128": (small_cnn(), (1, 28, 28))}


def batches(x: Tensor, y: Tensor, size: int):
    return [(x[i: i + size], y[i: i + size]) for i in range(0, len(x), size)]


def epoch(model: nn.Module, x: Tensor, y: Tensor, step) -> float:
    t0 = time.perf_counter()
    for xb, yb in batches(x, y, 128):
        step(xb, yb)
    return time.perf_counter() - t0


def stepper(model: nn.Module, add=None):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    params = dict(model.named_parameters())

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(xb), yb).backward()
        if add is not None:
            add(params)
        opt.step()
    return step


def timed(fn, *a, **k):
    t0 = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t0


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def nearest_error(x: Tensor, y: Tensor, tasks: int, seed: int) -> dict:
    """(iv): per layer, after each task, the relative Frobenius error of the kept nearest Kronecker product
    against the exact sum of the tasks' blocks, and of that task's step alone."""
    model = models(seed)["mlp-784-100-100-10"][0]
    gen = torch.Generator().manual_seed(seed)
    step = stepper(model)
    stacks: dict[str, tuple[list[Tensor], list[Tensor]]] = {}
    kept: dict[str, tuple[Tensor, Tensor]] = {}
    cumulative: dict[str, list[float]] = {}
    single: dict[str, list[float]] = {}
    for t in range(tasks):
        xt = x[:, torch.randperm(784, generator=gen)] if t else x
        epoch(model, xt, y, step)
        factors, _, _ = kron_factors(model, batches(xt, y, 1000), "exact")
        for layer, f in factors.items():
            A, G = (f["A"].double(), f["G"].double())
            As, Gs = stacks.setdefault(layer, ([], []))
            As.append(A)
            Gs.append(G)
            if layer in kept:
                X, Y, e = nearest_kron(torch.stack([kept[layer][0], A]), torch.stack([kept[layer][1], G]))
            else:
                X, Y, e = A, G, 0.0
            kept[layer] = (X, Y)
            single.setdefault(layer, []).append(round(e, 6))
            cumulative.setdefault(layer, []).append(round(kron_sum_error(torch.stack(As), torch.stack(Gs), X, Y), 6))
    return {"model": "mlp-784-100-100-10", "tasks": tasks, "epochs_per_task": 1, "optimizer": "adam lr 1e-3, batch 128",
            "cumulative_error": cumulative, "step_error": single}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--tasks", default="1,10,50", help="numbers of terms T to time and size")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=0.5, help="time each configuration at least this long per round")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/kfac.json"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--error-tasks", type=int, default=50, help="tasks of the nearest-vs-exact measurement (iv)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    tasks = [int(t) for t in args.tasks.split(",")]
    load_before = os.getloadavg()
    x_flat, y = load(args.data_dir, args.samples)
    out_models = {}
    for name, (model, shape) in models(args.seed).items():
        x = x_flat.reshape(-1, *shape)
        epoch_s = epoch(model, x, y, stepper(model))  # fine-tuning: also makes the predictions non-uniform
        (factors, _, _), f_s = timed(kron_factors, model, batches(x, y, 1000), "exact")
        diag, d_s = timed(fisher_diag, model, batches(x, y, 1000), "exact")
        params = dict(model.named_parameters())
        anchors = {l: folded(params, l, f["A"].shape[-1]).detach().clone() for l, f in factors.items()}
        diag_state = {"importance": diag, "anchor": {n: p.detach().clone() for n, p in params.items()},
                      "offset": torch.zeros((), dtype=torch.float64)}

        def kron_state(T: int, separate: bool = False):
            return {l: {"A": f["A"].expand(T, -1, -1).contiguous(), "G": f["G"].expand(T, -1, -1).contiguous(),
                        "anchor": anchors[l].expand(T if separate else 1, -1, -1).contiguous()} for l, f in factors.items()}

        configs = {"fine-tuning": None, "ewc": lambda p: add_quadratic_grad_(p, diag_state, 1.0)}
        for T in tasks:
            st = kron_state(T)
            configs[f"kfac T={T}"] = lambda p, st=st: add_kron_grad_(p, st, 1.0)
        steps = {k: stepper(model, add) for k, add in configs.items()}
        per_step: dict[str, list[float]] = {k: [] for k in configs}
        data = batches(x, y, 128)
        for _ in range(args.rounds):
            for k, step in steps.items():
                n, t0 = 0, time.perf_counter()
                while n < 2 or time.perf_counter() - t0 < args.min_seconds:
                    step(*data[n % len(data)])
                    n += 1
                per_step[k].append((time.perf_counter() - t0) / n)
        med = {k: statistics.median(v) for k, v in per_step.items()}
        one = {l: nbytes([f["A"], f["G"]]) for l, f in factors.items()}
        anchor_b = sum(nbytes([a]) for a in anchors.values())
        out_models[name] = {
            "parameters": sum(p.numel() for p in params.values()),
            "kronecker_layers": {l: [tuple(f["A"].shape), tuple(f["G"].shape)] for l, f in factors.items()},
            "epoch_seconds": round(epoch_s, 3),
            "factors_seconds": round(f_s, 3), "factors_over_epoch": round(f_s / epoch_s, 3),
            "fisher_diag_seconds": round(d_s, 3), "fisher_diag_over_epoch": round(d_s / epoch_s, 3),
            "step_ms": {k: round(v * 1e3, 3) for k, v in med.items()},
            "step_over_fine_tuning": {k: round(v / med["fine-tuning"], 2) for k, v in med.items()},
            "step_over_ewc": {k: round(v / med["ewc"], 2) for k, v in med.items() if k.startswith("kfac")},
            "state_bytes": {
                "ewc (any T)": nbytes(diag_state["importance"].values()) + nbytes(diag_state["anchor"].values()),
                "kfac nearest (any T)": sum(one.values()) + anchor_b,
                **{f"kfac online exact T={T}": T * sum(one.values()) + anchor_b for T in tasks},
                **{f"kfac separate T={T}": T * (sum(one.values()) + anchor_b) for T in tasks},
            },
        }
    result_error = nearest_error(x_flat, y, args.error_tasks, args.seed)
    result = {
        "benchmark": "kfac cost on MNIST: factor computation, training step, state bytes",
        "torch": torch.__version__, "threads": args.threads, "N": args.samples, "rounds": args.rounds,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
                    "loadavg_before": [round(v, 2) for v in load_before],
                    "loadavg_after": [round(v, 2) for v in os.getloadavg()]},
        "models": out_models,
        "nearest_error": result_error,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, result)
    for name, r in out_models.items():
        print(f"{name}: factors {r['factors_over_epoch']:.2f} epochs (diagonal Fisher {r['fisher_diag_over_epoch']:.2f}); "
              "step vs fine-tuning " + ", ".join(f"{k} {v:.2f}x" for k, v in r["step_over_fine_tuning"].items()))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
