"""Seconds per GEM step against the number of earlier tasks t: the dual solved by the active-set
method (what `gem` runs) against trying every active set (what it ran before lifelong 0.3).

    python benchmarks/bench_gem.py [--tasks 2,4,6,8,10,13,19] [--enumerate-up-to 13] [--steps 5]
                                   [--threads T] [--out benchmarks/results/gem.json]

A step is GEM's whole after_backward on a permuted-MNIST-sized problem: an MLP 784-400-400-10, a
memory of 256 samples per earlier task (random inputs, labels 0-9), one gradient per earlier task's
memory, the check for a conflict and, when there is one, the dual QP and the projection. The current
gradient is made to conflict with every memory (the minus sum of their gradients plus noise), so every
timed step solves the QP: the worst case, which the enumeration makes exponential in t. Each step is
timed with both solvers on the same gradients, interleaved; the JSON gives the median seconds per step,
their ratio, and the solve alone. Timings on a shared machine are noisy: the JSON records the load.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from lifelong._io import atomic_write_json
from lifelong.strategies.replay import agem


def dual_inputs(model: nn.Module, memories: list[tuple[torch.Tensor, torch.Tensor]], gen: torch.Generator):
    """G (t, P): each memory's loss gradient; g: a current gradient that conflicts with all of them."""
    params = list(model.parameters())
    rows = []
    for x, y in memories:
        grads = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    G = torch.stack(rows)
    g = -G.sum(0) + 0.1 * G.norm(dim=1).mean() / G.shape[1] ** 0.5 * torch.randn(G.shape[1], generator=gen)
    return G, g


def step(model, memories, gen, solver) -> tuple[float, float]:
    """One GEM step (memory gradients, conflict check, dual, projection) with ``solver``: (seconds, of which solve)."""
    t0 = time.perf_counter()
    G, g = dual_inputs(model, memories, gen)
    solve = 0.0
    if bool((G @ g < 0).any()):
        G64, g64 = G.double(), g.double()
        P = G64 @ G64.T
        P = 0.5 * (P + P.T) + 1e-3 * torch.eye(len(memories), dtype=torch.float64)
        s0 = time.perf_counter()
        v = solver(P, G64 @ g64, 0.5)
        solve = time.perf_counter() - s0
        (G64.T @ v + g64).float()
    return time.perf_counter() - t0, solve


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="2,4,6,8,10,13,19")
    ap.add_argument("--enumerate-up-to", type=int, default=13)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="benchmarks/results/gem.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 10))
    rows = []
    for t in [int(x) for x in args.tasks.split(",")]:
        memories = [(torch.rand(256, 784, generator=gen), torch.randint(0, 10, (256,), generator=gen)) for _ in range(t)]
        solvers = {"active_set": agem.gem_dual}
        if t <= args.enumerate_up_to:
            solvers["enumeration"] = agem.gem_dual_enumerate
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in solvers}
        for s in range(args.steps):
            for name, solver in solvers.items():  # interleaved, each on the same gradients (same generator state)
                times[name].append(step(model, memories, torch.Generator().manual_seed(s), solver))
        row = {"t": t}
        for name, ts in times.items():
            row[f"{name}_step_seconds"] = statistics.median(x for x, _ in ts)
            row[f"{name}_solve_seconds"] = statistics.median(x for _, x in ts)
        if "enumeration" in times:
            row["enumeration_over_active_set"] = row["enumeration_step_seconds"] / row["active_set_step_seconds"]
            row["enumeration_solve_over_active_set"] = row["enumeration_solve_seconds"] / row["active_set_solve_seconds"]
        rows.append(row)
        print(row, flush=True)
    out = {"benchmark": "gem step seconds against earlier tasks", "rows": rows, "steps": args.steps,
           "threads": torch.get_num_threads(), "torch": torch.__version__, "platform": platform.platform(),
           "load_average": os.getloadavg()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(args.out), out)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
