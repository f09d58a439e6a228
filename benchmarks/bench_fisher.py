"""Speed and agreement of the per-sample Fisher engine on full MNIST, against a plain autograd loop.

    python benchmarks/bench_fisher.py [--samples N] [--out benchmarks/results/fisher.json]
                                      [--threads T] [--data-dir DIR] [--loop-samples M]

Model: a seeded MLP 784-400-400-10 (nn.Sequential of Linear/ReLU, float32), trained for one epoch
of SGD (lr 0.1, batch 128) so its predictions are not uniform; that epoch is also the timed
training epoch every Fisher time is compared to. Measured side by side:

  (i)   fisher_diag_exact on all N samples, for a few batch sizes (the fastest is the headline), and
        the exact Fisher with the symmetric √p_c (e_c − p) directions (C backward passes instead of
        C − 1) for comparison;
  (ii)  a plain per-sample loop for the exact Fisher (per sample, per class: autograd.grad of
        log p_c, squared, weighted by p_c) on a random subset of M samples, extrapolated linearly
        to N, and the fast path on exactly that subset for agreement;
  (iii) the empirical, predicted and mc (1 sample) kinds on all N;
  (iv)  the training epoch, so the JSON reports Fisher seconds / epoch seconds per kind.

MNIST comes from lifelong.data (``--data-dir``, else $LIFELONG_DATA_DIR, the cache, or a download).
Timings on a shared machine are noisy: the JSON records the load average.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from lifelong._io import atomic_write_json
from lifelong.importance import FISHER_KINDS, fisher_diag, logit_directions, sum_sq_grads

C = 10


def load_mnist_train(data_dir: Path | None, n: int | None) -> tuple[Tensor, Tensor]:
    """x (N, 784) float32 in [0, 1], y (N,) int64: the MNIST training set."""
    from lifelong.data import load_dataset

    ds = load_dataset("mnist", data_dir)
    images, labels = ds.train_images, ds.train_labels
    x = torch.from_numpy(images.reshape(-1, 784).astype(np.float32) / 255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    return (x, y) if n is None else (x[:n], y[:n])


def make_mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)  # nn.Linear initializes from the global RNG; seeded here
    return nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, C))


def train_epoch(model: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator, lr: float = 0.1,
                batch_size: int = 128) -> float:
    """One epoch of SGD (fwd + bwd + step per batch); returns its wall-clock seconds."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    order = torch.randperm(len(x), generator=gen)
    t0 = time.perf_counter()
    for i in range(0, len(x), batch_size):
        idx = order[i : i + batch_size]
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return time.perf_counter() - t0


def batches(x: Tensor, y: Tensor, size: int) -> list[tuple[Tensor, Tensor]]:
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def exact_fisher_loop(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Equation (1) the plain way: per sample, per class, autograd.grad of log p_c; float64 sums."""
    model.eval()
    params = dict(model.named_parameters())
    total = {n: torch.zeros(p.shape, dtype=torch.float64) for n, p in params.items()}
    for n in range(len(x)):
        logp = model(x[n : n + 1]).log_softmax(-1)[0]  # (C,)
        p = logp.detach().exp()
        for c in range(C):
            grads = torch.autograd.grad(logp[c], list(params.values()), retain_graph=c + 1 < C)
            for name, g in zip(params, grads):
                total[name] += p[c].double() * g.double().square()
    return {n: t / len(x) for n, t in total.items()}


def exact_sqrt_directions(model: nn.Module, x: Tensor, size: int) -> dict[str, Tensor]:
    """The exact Fisher with the symmetric factor √p_c (e_c − p): C directions instead of C − 1."""
    sums: dict[str, Tensor] = {}
    for xb, _ in batches(x, x, size):
        s = sum_sq_grads(model, xb, lambda z: logit_directions(z, "exact", exact_factor="sqrt"))
        for n, t in s.items():
            sums[n] = sums.get(n, 0) + t.double()
    return {n: t / len(x) for n, t in sums.items()}


def agreement(fast: dict[str, Tensor], ref: dict[str, Tensor], floor: float = 1e-3) -> dict[str, float]:
    """Errors of ``fast`` against ``ref``: elementwise relative error with the denominator floored at
    ``floor``·max|ref| per tensor (tiny entries are judged in absolute terms), max absolute error,
    and the largest per-tensor relative Frobenius error."""
    rel, abs_err, fro = 0.0, 0.0, 0.0
    for n, r in ref.items():
        d = (fast[n].double() - r).abs()
        denom = r.abs().clamp_min(floor * float(r.abs().max()))
        rel = max(rel, float((d / denom).max()))
        abs_err = max(abs_err, float(d.max()))
        fro = max(fro, float(d.norm() / r.norm()))
    return {"max_rel_err": rel, "rel_err_floor": floor, "max_abs_err": abs_err, "max_rel_frobenius_err": fro}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=None, help="first N training samples (default: all 60000)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/fisher.json"))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: the 2-core machine is shared; 2 threads stall on contention)")
    ap.add_argument("--data-dir", type=Path, default=None, help="folder with MNIST (default: $LIFELONG_DATA_DIR, cache)")
    ap.add_argument("--loop-samples", type=int, default=2000)
    ap.add_argument("--batch-sizes", default="500,1000,2000,5000", help="batch sizes tried for the exact kind")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    x, y = load_mnist_train(args.data_dir, args.samples)
    N = len(x)
    gen = torch.Generator().manual_seed(args.seed)
    model = make_mlp(args.seed)
    epoch_s = train_epoch(model, x, y, gen)
    model.eval()
    with torch.no_grad():
        p = model(x).softmax(-1)
    acc = float((p.argmax(-1) == y).float().mean())

    # (i) exact, fast path, a few batch sizes; the fastest is the headline.
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    by_size: dict[int, float] = {}
    exact_full = None
    for size in sizes:
        exact_full, by_size[size] = timed(fisher_diag, model, batches(x, y, size), "exact")
    best = min(by_size, key=by_size.get)
    sqrt_full, sqrt_s = timed(exact_sqrt_directions, model, x, best)
    times = {"exact": by_size[best]}

    # (iii) the other kinds at the best batch size.
    for kind in FISHER_KINDS:
        if kind != "exact":
            _, times[kind] = timed(fisher_diag, model, batches(x, y, best), kind,
                                   generator=torch.Generator().manual_seed(args.seed), mc_samples=1)

    # (ii) the loop on a random subset, and the fast path on the same subset.
    M = min(args.loop_samples, N)
    subset = torch.randperm(N, generator=gen)[:M]
    loop_F, loop_s = timed(exact_fisher_loop, model, x[subset])
    fast_F, fast_subset_s = timed(fisher_diag, model, batches(x[subset], y[subset], best), "exact")
    loop_extrapolated = loop_s * N / M

    result = {
        "benchmark": "fisher_diag on MNIST train, MLP 784-400-400-10 float32",
        "torch": torch.__version__,
        "threads": args.threads,
        "N": N,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "loadavg_before": [round(v, 2) for v in load_before],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        },
        "model": {"train_epochs": 1, "train_accuracy_after": round(acc, 4),
                  "mean_max_p": round(float(p.max(-1).values.mean()), 4)},
        "epoch_seconds": round(epoch_s, 3),
        "fisher_seconds": {k: round(v, 3) for k, v in times.items()},
        "fisher_over_epoch": {k: round(v / epoch_s, 3) for k, v in times.items()},
        "exact_batch_size": best,
        "exact_seconds_by_batch_size": {str(k): round(v, 3) for k, v in by_size.items()},
        "exact_sqrt_factor_seconds": round(sqrt_s, 3),
        "exact_sqrt_factor_rel_diff": agreement({n: t.double() for n, t in exact_full.items()}, sqrt_full),
        "loop": {
            "samples": M,
            "seconds": round(loop_s, 3),
            "seconds_extrapolated_to_N": round(loop_extrapolated, 1),
            "fast_seconds_same_subset": round(fast_subset_s, 3),
            "speedup_same_subset": round(loop_s / fast_subset_s, 1),
            "speedup_extrapolated": round(loop_extrapolated / times["exact"], 1),
            "agreement": agreement(fast_F, loop_F),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, result)
    print_summary(result, args.out)
    return result


def print_summary(r: dict, out: Path) -> None:
    lp = r["loop"]
    print(f"N={r['N']}  threads={r['threads']}  torch {r['torch']}  load {r['machine']['loadavg_before']}")
    print(f"training epoch (SGD, batch 128): {r['epoch_seconds']:.2f} s")
    for k, s in r["fisher_seconds"].items():
        print(f"  {k:9s} {s:7.2f} s   = {r['fisher_over_epoch'][k]:.2f} epochs")
    print(f"  exact with C symmetric directions: {r['exact_sqrt_factor_seconds']:.2f} s")
    print(f"loop: {lp['seconds']:.1f} s on {lp['samples']} samples -> {lp['seconds_extrapolated_to_N']:.0f} s for N; "
          f"speedup {lp['speedup_same_subset']}x (subset), {lp['speedup_extrapolated']}x (extrapolated)")
    a = lp["agreement"]
    print(f"agreement on the subset: max rel {a['max_rel_err']:.2e} (floor {a['rel_err_floor']:g}·max), "
          f"max abs {a['max_abs_err']:.2e}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
