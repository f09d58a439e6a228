"""Samples per second of online, single-pass learning with batches of 10: lifelong's driver against a bare
PyTorch loop doing the same work, and the reads of the device per step.

    python benchmarks/bench_online.py [--samples 10000] [--batch 10] [--repeats 3] [--threads 1]
                                      [--data-dir DIR] [--out benchmarks/results/online.json]

The stream is split MNIST under the gradual schedule, ``--samples`` training images in all, learned in
order once by an MLP 784-100-100-10 (DER's MNIST network) with SGD (lr 0.1). Each method runs through
``run_stream`` (the Learner, the loop, the loss check every 50 steps; one point of the accuracy curve, at
the end, so that the time is training) and through a hand-written loop over the same uint8 images in
the same order: naive (forward, cross-entropy, backward, step) and ER (a reservoir memory of 500 rows,
10 of them drawn uniformly for each step and concatenated to the batch, as lifelong's ER). The two runs
of a pair are interleaved, ``--repeats`` times, after one warm-up run of each (discarded); the JSON gives each one's median samples per second and
the ratio ours / bare. DER++ and EWC++ (online EWC, a running Fisher every 10 steps, consolidation
every 500) run through lifelong alone.

Reads of the device: every ``item``, ``tolist``, ``__bool__``, ``__float__``, ``__int__`` of a
floating-point tensor during training is counted (on a GPU these are the host synchronizations; integer
CPU bookkeeping such as the batch's row sources is not); the JSON gives them per step. Timings on a
shared machine are noisy: the JSON records the load.
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

from lifelong import StreamSpec, TrainSettings, run_stream
from lifelong._io import atomic_write_json
from lifelong.strategies import STRATEGIES


def net(seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return m


def bare(stream, batch: int, replay: int = 0) -> float:
    """The same work by hand: seconds for one pass over the stream."""
    task = stream[0]
    x8, y = task.train.images, task.train.targets
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    mem_x = torch.empty(replay, 1, 28, 28)
    mem_y = torch.empty(replay, dtype=torch.long)
    seen = 0
    t0 = time.perf_counter()
    for s in range(0, len(y), batch):
        xb = x8[s : s + batch].to(torch.float32).div_(255.0).unsqueeze(1)
        yb = y[s : s + batch]
        if replay and seen:
            idx = torch.randperm(min(seen, replay), generator=g)[:batch]
            xin, yin = torch.cat([xb, mem_x[idx]]), torch.cat([yb, mem_y[idx]])
        else:
            xin, yin = xb, yb
        loss = nn.functional.cross_entropy(model(xin), yin)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if replay:  # reservoir sampling of the batch's rows
            for i in range(len(yb)):
                if seen < replay:
                    mem_x[seen], mem_y[seen] = xb[i], yb[i]
                else:
                    j = int(torch.randint(0, seen + 1, (1,), generator=g))
                    if j < replay:
                        mem_x[j], mem_y[j] = xb[i], yb[i]
                seen += 1
    return time.perf_counter() - t0


def ours(stream, batch: int, name: str, settings: dict) -> tuple[float, int, int]:
    """``run_stream``'s training seconds, its steps, and the floating-point reads of the device while training."""
    reads = []
    originals = {n: getattr(torch.Tensor, n) for n in ("item", "tolist", "__bool__", "__float__", "__int__")}

    def counting(name):
        def f(self, *a, **k):
            if self.is_floating_point():
                reads.append(name)
            return originals[name](self, *a, **k)
        return f

    n = len(stream[0].train)
    train = TrainSettings(optimizer="sgd", lr=0.1, batch_size=batch, eval_every=n)
    try:
        for k in originals:
            setattr(torch.Tensor, k, counting(k))
        r = run_stream(net(), stream, STRATEGIES[name](**settings), train, seed=0)
    finally:
        for k, f in originals.items():
            setattr(torch.Tensor, k, f)
    return r.timings["train_seconds"][0], r.steps_per_task[0], len(reads)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "online.json"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    stream = StreamSpec(benchmark="split-mnist", schedule="gradual", train_samples=a.samples // 5).build(
        0, data_dir=a.data_dir)
    n = len(stream[0].train)
    load = os.getloadavg()
    pairs = {"naive": ({}, 0), "er": ({"memory": 500}, 500)}
    out: dict = {"samples": n, "batch": a.batch, "threads": a.threads, "repeats": a.repeats, "methods": {}}
    ours(stream, a.batch, "naive", {})  # warm-up: the first run pays one-time costs (allocator, imports, caches)
    bare(stream, a.batch)
    for name, (settings, replay) in pairs.items():
        mine, base, reads, steps = [], [], 0, 0
        for _ in range(a.repeats):
            t, steps, reads = ours(stream, a.batch, name, settings)
            mine.append(n / t)
            base.append(n / bare(stream, a.batch, replay))
        out["methods"][name] = {"ours_samples_per_second": statistics.median(mine),
                                "bare_samples_per_second": statistics.median(base),
                                "ratio": statistics.median(mine) / statistics.median(base),
                                "steps": steps, "device_reads": reads, "device_reads_per_step": reads / steps}
    for name, settings in {"derpp": {"memory": 500},
                           "online-ewc": {"lam": 1.0, "consolidate": "steps", "consolidate_every": 500,
                                          "importance_every": 10}}.items():
        runs = [ours(stream, a.batch, name, settings) for _ in range(a.repeats)]
        t = statistics.median(r[0] for r in runs)
        out["methods"][name] = {"ours_samples_per_second": n / t, "steps": runs[0][1], "device_reads": runs[0][2],
                                "device_reads_per_step": runs[0][2] / runs[0][1]}
    out["machine"] = {"cpu_count": os.cpu_count(), "loadavg_before": list(load), "loadavg_after": list(os.getloadavg()),
                      "torch": torch.__version__, "platform": platform.platform()}
    atomic_write_json(a.out, out)
    for k, v in out["methods"].items():
        print(k, {kk: round(vv, 3) if isinstance(vv, float) else vv for kk, vv in v.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
