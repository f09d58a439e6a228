"""A whole ``lifelong run`` against a bare PyTorch loop doing the same work, side by side.

Both run as separate processes, one after the other, on the same machine and thread count, and are
timed from the outside (process start to exit: imports, reading the IDX files, building the stream,
training, every evaluation, and for lifelong also checkpoints and result files). The work: permuted
MNIST, 10 tasks, MLP 784-400-400-10, SGD lr 0.1, batch 128, one epoch per task, the accuracy on
every task's test set after every task (and once before training). For EWC the bare loop also
computes one empirical Fisher per task (per-sample squared gradients, the outer-product identity
for Linear layers) and adds the penalty's gradient λF(θ − θ*) in closed form, as our loop does.

    python benchmarks/bench_run.py [--strategies naive,ewc] [--repeats 5] [--threads 2]
                                   [--data-dir ../shared/data] [--out benchmarks/results/run.json]

Each repeat runs the bare loop and then lifelong back to back. This machine is shared and its speed
drifts by tens of percent between minutes, so the ratio reported is min(lifelong) / min(bare) over the
repeats (the least disturbed run of each, as ``timeit`` does); the median of the per-repeat ratios and
every wall time are in the JSON too.

The bare loop is this file's ``bare`` command (``python benchmarks/bench_run.py bare ...``). It uses
no lifelong code: it reads the gzipped IDX files with NumPy.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = dict(tasks=10, hidden=(400, 400), lr=0.1, batch_size=128, lam=10.0)  # λ·lr·max F < 2 with SGD


# ---- the bare loop -------------------------------------------------------------------------------


def _idx(path: Path):
    import numpy as np

    data = gzip.decompress(path.read_bytes())
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def bare(strategy: str, data_dir: Path, threads: int, seed: int = 0) -> dict:
    """Fine-tuning (or EWC with an empirical Fisher) on permuted MNIST in plain PyTorch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    d = data_dir / "mnist" if (data_dir / "mnist").is_dir() else data_dir
    tr_x = torch.from_numpy(_idx(d / "train-images-idx3-ubyte.gz").reshape(-1, 784).copy())
    tr_y = torch.from_numpy(_idx(d / "train-labels-idx1-ubyte.gz").astype("int64"))
    te_x = torch.from_numpy(_idx(d / "t10k-images-idx3-ubyte.gz").reshape(-1, 784).copy())
    te_y = torch.from_numpy(_idx(d / "t10k-labels-idx1-ubyte.gz").astype("int64"))
    g = torch.Generator().manual_seed(seed)
    perms = [torch.randperm(784, generator=g) for _ in range(SETTINGS["tasks"])]
    test = [(te_x[:, p].float().div_(255.0), te_y) for p in perms]
    torch.manual_seed(seed)
    h1, h2 = SETTINGS["hidden"]
    model = nn.Sequential(nn.Linear(784, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, 10))
    linears = [m for m in model if isinstance(m, nn.Linear)]
    t_stream = time.perf_counter() - t0

    @torch.no_grad()
    def accuracies() -> list[float]:
        model.eval()
        out = [sum(int((model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum()) for i in range(0, len(y), 1000)) / len(y)
               for x, y in test]
        model.train()
        return out

    def empirical_fisher(x_all, y_all) -> list[tuple]:
        """Σ_n (g_n a_nᵀ)² = (g²)ᵀ(a²) per Linear layer, g the per-sample output gradient."""
        acts, sums = {}, [(torch.zeros_like(m.weight), torch.zeros_like(m.bias)) for m in linears]
        hooks = [m.register_forward_hook(lambda m, a, o: acts.__setitem__(m, (a[0], o))) for m in linears]
        model.eval()
        for i in range(0, len(y_all), 1000):
            logits = model(x_all[i:i + 1000])
            loss = F.cross_entropy(logits, y_all[i:i + 1000], reduction="sum")  # Σ_n: row n is sample n's gradient
            outs = [acts[m][1] for m in linears]
            grads = torch.autograd.grad(loss, outs)
            for (sw, sb), m, go in zip(sums, linears, grads):
                a = acts[m][0].detach()
                sw += go.square().T @ a.square()
                sb += go.square().sum(0)
        for h in hooks:
            h.remove()
        model.train()
        return [(sw / len(y_all), sb / len(y_all)) for sw, sb in sums]

    R, fisher, anchor = [accuracies()], None, None
    t_train = t_fisher = t_eval = 0.0
    order = torch.Generator().manual_seed(seed + 1)
    for p in perms:
        t1 = time.perf_counter()
        x_all = tr_x[:, p].float().div_(255.0)
        opt = torch.optim.SGD(model.parameters(), lr=SETTINGS["lr"])
        for idx in torch.randperm(len(tr_y), generator=order).split(SETTINGS["batch_size"]):
            loss = F.cross_entropy(model(x_all[idx]), tr_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if fisher is not None:  # EWC: p.grad += λ F (θ − θ*)
                for m, (fw, fb), (aw, ab) in zip(linears, fisher, anchor):
                    m.weight.grad.addcmul_(fw, m.weight.detach() - aw, value=SETTINGS["lam"])
                    m.bias.grad.addcmul_(fb, m.bias.detach() - ab, value=SETTINGS["lam"])
            opt.step()
        t2 = time.perf_counter()
        if strategy == "ewc":  # separate EWC: one more quadratic per task, summed
            new = empirical_fisher(x_all, tr_y)
            here = [(m.weight.detach().clone(), m.bias.detach().clone()) for m in linears]
            if fisher is None:
                fisher, anchor = new, here
            else:  # Σ_t F_t (θ − θ*_t)²: gradient Σ F_t(θ − θ*_t) = (ΣF_t)(θ − mean) with the F-weighted mean
                merged, anchors = [], []
                for (fw, fb), (nw, nb), (aw, ab), (hw, hb) in zip(fisher, new, anchor, here):
                    sw, sb = fw + nw, fb + nb
                    anchors.append(((fw * aw + nw * hw) / sw.clamp_min(1e-30), (fb * ab + nb * hb) / sb.clamp_min(1e-30)))
                    merged.append((sw, sb))
                fisher, anchor = merged, anchors
        t3 = time.perf_counter()
        R.append(accuracies())
        t4 = time.perf_counter()
        t_train, t_fisher, t_eval = t_train + t2 - t1, t_fisher + t3 - t2, t_eval + t4 - t3
    return {"average_accuracy": sum(R[-1]) / len(R[-1]), "stream_seconds": t_stream, "train_seconds": t_train,
            "fisher_seconds": t_fisher, "eval_seconds": t_eval}


# ---- side by side --------------------------------------------------------------------------------


def _timed(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system, all threads) and stdout of a child process."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, done.stdout


def lifelong_cmd(strategy: str, data_dir: str, threads: int, out: str) -> list[str]:
    h1, h2 = SETTINGS["hidden"]
    cmd = [sys.executable, "-m", "lifelong", "run", "--benchmark", "permuted-mnist", "--tasks", str(SETTINGS["tasks"]),
           "--strategy", strategy, "--optimizer", "sgd", "--lr", str(SETTINGS["lr"]), "--batch-size",
           str(SETTINGS["batch_size"]), "--hidden", f"{h1},{h2}", "--threads", str(threads), "--data-dir", data_dir,
           "--no-progress", "--out", out]
    if strategy == "ewc":
        cmd += ["--fisher", "empirical", "--lambda", str(SETTINGS["lam"])]
    return cmd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", nargs="?", default="compare", choices=["compare", "bare"])
    ap.add_argument("--strategies", default="naive,ewc")
    ap.add_argument("--strategy", default="naive", help="bare: which loop")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", default=os.environ.get("LIFELONG_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "run.json"))
    args = ap.parse_args()
    if args.command == "bare":
        print(json.dumps(bare(args.strategy, Path(args.data_dir), args.threads)))
        return

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rows = {}
    for strategy in args.strategies.split(","):
        walls = {"bare": [], "lifelong": []}
        cpus = {"bare": [], "lifelong": []}
        detail = {"bare": [], "lifelong": []}
        for _ in range(args.repeats):
            seconds, cpu, stdout = _timed([sys.executable, __file__, "bare", "--strategy", strategy, "--threads",
                                           str(args.threads), "--data-dir", args.data_dir], env)
            walls["bare"].append(seconds)
            cpus["bare"].append(cpu)
            detail["bare"].append(json.loads(stdout.strip().splitlines()[-1]))
            with tempfile.TemporaryDirectory() as tmp:
                seconds, cpu, _ = _timed(lifelong_cmd(strategy, args.data_dir, args.threads, f"{tmp}/run"), env)
                walls["lifelong"].append(seconds)
                cpus["lifelong"].append(cpu)
                res = json.loads(Path(f"{tmp}/run/results.json").read_text())
            t = res["timings"]
            detail["lifelong"].append({"average_accuracy": res["metrics"]["average_accuracy"],
                                       "train_seconds": sum(t["train_seconds"]),
                                       "after_task_seconds": sum(t.get("after_task_seconds", t.get("fisher_seconds", []))),
                                       "eval_seconds": sum(t["eval_seconds"]), "run_stream_seconds": t["total_seconds"]})
        b, l = min(walls["bare"]), min(walls["lifelong"])
        pairs = [y / x for x, y in zip(walls["bare"], walls["lifelong"])]
        cpu_ratio = statistics.median(cpus["lifelong"]) / statistics.median(cpus["bare"])
        rows[strategy] = {"bare_seconds": b, "lifelong_seconds": l, "ratio": l / b,
                          "median_pair_ratio": statistics.median(pairs), "cpu_seconds_median_ratio": cpu_ratio,
                          "walls": walls, "cpu_seconds": cpus, "detail": detail}
        print(f"{strategy}: bare {b:.1f} s, lifelong run {l:.1f} s (fastest of {args.repeats}), ratio {l / b:.3f}; "
              f"median of the pairs' ratios {statistics.median(pairs):.3f}; CPU seconds (median) ratio "
              f"{cpu_ratio:.3f}", flush=True)
    result = {"benchmark": "bench_run", "settings": {**SETTINGS, "threads": args.threads, "repeats": args.repeats},
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "strategies": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
