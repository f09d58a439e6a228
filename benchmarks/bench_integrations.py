"""What the integrations cost, measured side by side: the Learner in a plain loop and the Lightning
callback against ``lifelong run``'s own loop; data-parallel runs on 1 and 2 processes; a sweep on Ray
against the local pool.

    python benchmarks/bench_integrations.py [--parts overhead,ddp,ray] [--repeats 3]
        [--data-dir ../shared/data] [--out benchmarks/results/integrations.json]

**overhead** (one process, one thread): permuted MNIST, 2 tasks, MLP 784-400-400-10, SGD lr 0.05,
batch 128, ``--steps`` steps per task, evaluation after every task; EWC (empirical Fisher over the
task's 60,000 samples) and ER (memory 2000). Per round every variant trains the same stream once, in
turn, and its wall time from the first task to the last accuracy row is taken; the ratio reported is
the median over rounds of each round's ratio to ``lifelong run``'s loop (``run_stream``) with the same
strategy (this machine's speed drifts within minutes; ratios inside one round share the drift):

- ``learner``: the README's loop, ``cl.batches()`` (the batches ``lifelong run`` draws);
- ``learner_own_batches``: the same with the user's batches (drawn beforehand, ``cl.batch(x, y)``);
- ``lightning``: ``Trainer.fit`` per task with ``LifelongCallback`` over those batches;
- ``lightning_bare`` (fine-tuning with no lifelong code in Lightning, plus the same test-set evaluation
  after each task, against ``run_stream`` with the naive strategy): what Lightning itself costs, so
  that the callback's own share is the difference.

One warm-up round of every variant runs first and is not counted.

**ddp**: ``lifelong run --nproc N`` for N = 1 (2 threads) and N = 2 (1 thread each) as processes, one
after the other per round; samples per second = steps × batch / the training seconds in results.json.

**ray**: the same 4-run sweep with ``--workers 2`` and with ``--backend ray`` (a local Ray with 2 CPUs,
started by the sweep), wall time of the whole command.
"""

from __future__ import annotations

import argparse
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


def _stream_cfg(strategy: str, steps: int, data_dir: str, **kw):
    from lifelong.experiments.config import RunConfig

    settings = {"ewc": {"lam": 100.0, "fisher": "empirical"}, "er": {"memory": 2000}}.get(strategy, {})
    return RunConfig.from_flat({"benchmark": "permuted-mnist", "tasks": 2, "strategy": strategy, "iterations": steps,
                                "batch_size": 128, "optimizer": "sgd", "lr": 0.05, "hidden": [400, 400],
                                "data_dir": data_dir, "download": False, "threads": 1, "progress": False,
                                **settings, **kw}).resolve()


def overhead(repeats: int, steps: int, data_dir: str) -> dict:
    import torch

    from lifelong import Learner
    from lifelong.experiments.build import build_stream, seeded_model
    from lifelong.scenarios import batches as raw_batches
    from lifelong.seeds import derived_generator
    from lifelong.strategies import build
    from lifelong.train import run_stream

    torch.set_num_threads(1)
    cfgs = {s: _stream_cfg(s, steps, data_dir) for s in ("naive", "ewc", "er")}
    stream = build_stream(cfgs["naive"])  # the same permutations for every strategy (the seed decides them)
    own = []  # the user's batches: drawn once, the same for every variant that takes them
    g = derived_generator(0, "order")
    for t in stream:
        it = raw_batches([t], "train", batch_size=128, shuffle=True, generator=g)
        own.append([(b.x, b.y) for _, b in zip(range(steps), it)])

    def engine(s):
        cfg = cfgs[s]
        model = seeded_model(cfg, stream)
        t0 = time.perf_counter()
        res = run_stream(model, stream, build(cfg.strategy), cfg.train, seed=cfg.seed, device="cpu")
        return time.perf_counter() - t0, res.accuracy_matrix

    def learner(s, own_batches=False):
        cfg = cfgs[s]
        cl = Learner(seeded_model(cfg, stream), build(cfg.strategy), stream, settings=cfg.train,
                     seed=cfg.seed, device="cpu")
        t0 = time.perf_counter()
        for task in cl.tasks():
            opt = torch.optim.SGD(cl.parameters(), lr=0.05)
            it = (cl.batch(x, y) for x, y in own[cl.ctx.task_index]) if own_batches else cl.batches()
            for batch in it:
                loss = cl.loss(batch)
                opt.zero_grad()
                loss.backward()
                cl.before_step(batch)
                opt.step()
                cl.after_step(batch)
        return time.perf_counter() - t0, cl.accuracy_matrix.tolist()

    def lightning(s, bare=False):
        import lightning.pytorch as L

        from lifelong.integrations.lightning import LifelongCallback

        cfg = cfgs[s]
        cl = Learner(seeded_model(cfg, stream), build(cfg.strategy), stream, settings=cfg.train,
                     seed=cfg.seed, device="cpu")

        class Module(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = cl.model

            def training_step(self, batch, i):
                x, y = batch
                if bare:
                    return torch.nn.functional.cross_entropy(self.net(x), y)
                return cl.loss(cl.batch(x, y))

            def configure_optimizers(self):
                return torch.optim.SGD(self.net.parameters() if bare else cl.parameters(), lr=0.05)

        callbacks = [] if bare else [LifelongCallback(cl)]
        t0 = time.perf_counter()
        for data in own:
            trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
            trainer.fit(Module(), torch.utils.data.DataLoader(data, batch_size=None))
            if bare:  # the accuracy row lifelong computes: every task's test set
                cl.model.eval()
                with torch.no_grad():
                    for t in stream:
                        for b in raw_batches([t], "test", batch_size=1000):
                            (cl.model(b.x).argmax(1) == b.y).sum().item()
                cl.model.train()
        return time.perf_counter() - t0, None

    import logging

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.ERROR)  # "GPU available: False" and tips, once per fit
    variants = {
        "ewc": {"run": lambda: engine("ewc"), "learner": lambda: learner("ewc"),
                "learner_own_batches": lambda: learner("ewc", True), "lightning": lambda: lightning("ewc")},
        "er": {"run": lambda: engine("er"), "learner": lambda: learner("er"),
               "learner_own_batches": lambda: learner("er", True), "lightning": lambda: lightning("er")},
        "naive": {"run": lambda: engine("naive"), "lightning_bare": lambda: lightning("naive", bare=True)},
    }
    walls = {s: {v: [] for v in vs} for s, vs in variants.items()}
    same = {}
    for s, vs in variants.items():  # a warm-up round, not counted: first calls, allocator, lazy imports
        for fn in vs.values():
            fn()
    for r in range(repeats):
        for s, vs in variants.items():
            for v, fn in vs.items():
                seconds, matrix = fn()
                walls[s][v].append(seconds)
                if v in ("run", "learner"):
                    same.setdefault(s, {})[v] = matrix
        print(f"overhead round {r + 1}/{repeats}: " + ", ".join(f"{s}/{v} {w[-1]:.2f}s" for s, vs in walls.items()
                                                                for v, w in vs.items()), flush=True)
    out = {}
    for s, vs in walls.items():
        out[s] = {"seconds": vs, "ratio_to_run": {v: statistics.median(a / b for a, b in zip(w, vs["run"]))
                                                  for v, w in vs.items() if v != "run"}}
        if "learner" in same.get(s, {}):
            out[s]["learner_matrix_equals_run"] = same[s]["learner"] == same[s]["run"]
    return {"steps_per_task": steps, "tasks": 2, "batch_size": 128, "threads": 1, "strategies": out}


def _lifelong(args: list[str], env=None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lifelong", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"lifelong {' '.join(args)} failed: {proc.stderr[-1500:]}")
    return time.perf_counter() - t0


def _allreduce_worker(rank: int, n: int, iters: int, port: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    buf = torch.randn(n)
    for _ in range(5):
        dist.all_reduce(buf)
    t0 = time.perf_counter()
    for _ in range(iters):
        dist.all_reduce(buf)
    if rank == 0:
        Path(out).write_text(json.dumps((time.perf_counter() - t0) / iters))
    dist.destroy_process_group()


def allreduce_ms(n: int, iters: int = 200) -> float:
    """One gloo all-reduce of ``n`` float32 numbers between 2 processes here, in milliseconds: what a
    data-parallel step adds to its compute (the run all-reduces its gradients as one flat buffer)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_allreduce_worker, args=(n, iters, port, f"{tmp}/t.json"), nprocs=2)
        return 1000 * json.loads(Path(f"{tmp}/t.json").read_text())


def ddp(repeats: int, steps: int, data_dir: str) -> dict:
    per = {1: [], 2: []}
    walls = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for n in (1, 2):
                out = Path(tmp) / f"r{r}-n{n}"
                args = ["run", "--benchmark", "permuted-mnist", "--tasks", "2", "--strategy", "ewc", "--fisher",
                        "empirical", "--iterations", str(steps), "--batch-size", "128", "--optimizer", "sgd",
                        "--lr", "0.05", "--data-dir", data_dir, "--no-download", "--no-progress", "--log", "none",
                        "--nproc", str(n), "--out", str(out)]
                if n == 1:
                    args += ["--threads", "2"]
                walls[n].append(_lifelong(args))
                res = json.loads((out / "results.json").read_text())
                per[n].append(2 * steps * 128 / sum(res["timings"]["train_seconds"]))
            print(f"ddp round {r + 1}/{repeats}: 1 rank {per[1][-1]:.0f} samples/s, 2 ranks {per[2][-1]:.0f}", flush=True)
    n_params = 784 * 400 + 400 + 400 * 400 + 400 + 400 * 10 + 10
    step_ms = {k: 1000 * 128 / statistics.median(v) for k, v in per.items()}
    return {"allreduce_ms_per_step": allreduce_ms(n_params), "parameters": n_params,
            "median_step_ms": {str(k): v for k, v in step_ms.items()},
            "strategy": "ewc", "steps_per_task": steps, "tasks": 2, "global_batch": 128,
            "threads": {"1": 2, "2": "1 per rank"}, "samples_per_second": {str(k): v for k, v in per.items()},
            "wall_seconds": {str(k): v for k, v in walls.items()},
            "speedup_2_over_1": statistics.median(b / a for a, b in zip(per[1], per[2]))}


def ray_sweep(repeats: int, data_dir: str) -> dict:
    walls = {"local": [], "ray": []}
    base = ["sweep", "--strategies", "naive,ewc", "--seeds", "0,1", "--benchmark", "permuted-mnist", "--tasks", "2",
            "--iterations", "200", "--fisher", "empirical", "--data-dir", data_dir, "--no-download", "--threads", "1",
            "--log", "none"]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            walls["local"].append(_lifelong([*base, "--workers", "2", "--out", f"{tmp}/l{r}"]))
            walls["ray"].append(_lifelong([*base, "--backend", "ray", "--out", f"{tmp}/r{r}"]))
            print(f"ray round {r + 1}/{repeats}: local {walls['local'][-1]:.1f}s, ray {walls['ray'][-1]:.1f}s", flush=True)
    return {"runs": 4, "wall_seconds": walls,
            "ratio_ray_to_local": statistics.median(b / a for a, b in zip(walls["local"], walls["ray"]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="overhead,ddp,ray")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300, help="steps per task (overhead and ddp)")
    ap.add_argument("--data-dir", default=os.environ.get("LIFELONG_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "integrations.json"))
    a = ap.parse_args()
    parts = a.parts.split(",")
    out = Path(a.out)
    # the parts run now replace theirs in an existing file; the others stay, each with its own command
    result = json.loads(out.read_text()) if out.exists() else {"benchmark": "bench_integrations"}
    command = "python benchmarks/bench_integrations.py " + " ".join(sys.argv[1:])
    machine = {"platform": platform.platform(), "cpus": os.cpu_count()}
    runs = {"overhead": lambda: overhead(a.repeats, a.steps, a.data_dir),
            "ddp": lambda: ddp(a.repeats, a.steps, a.data_dir), "ray": lambda: ray_sweep(a.repeats, a.data_dir)}
    for part in parts:
        if part not in runs:
            raise SystemExit(f"--parts: unknown part {part!r}; choose from {', '.join(runs)}")
        result[part] = {**runs[part](), "command": command, "repeats": a.repeats, "machine": machine}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
