"""Seconds per training epoch of every regularizer and replay method against fine-tuning, each Fisher
against an epoch, and the bytes of strategy state kept after 5 and after 50 tasks.

Measured side by side in one process on the same stream (permuted MNIST, MLP 784-400-400-10, batch
128, Adam), with the library's own driver and loop (`lifelong.train.Learner`, `fit_task`), so the numbers
are what a run pays. In each of ``--repeats`` rounds every method (naive / EWC / online EWC / SI / MAS /
RWalk / L2 / ER / A-GEM / DER++ / LwF) trains one epoch, the methods taking turns every 25 steps; each method's ratio to
fine-tuning is taken within a round and the median over rounds is reported. This machine's speed
drifts by tens of percent within seconds, and only fine interleaving gives every method the same
conditions.
State bytes: each strategy consolidates 50 small synthetic tasks (2 optimizer steps and 64 samples
each, on the same 784-400-400-10 MLP); the size of ``state_dict()`` is read after 5 and after 50.

    python benchmarks/bench_epoch.py [--repeats 5] [--threads 1] [--data-dir ../shared/data]
                                     [--out benchmarks/results/epoch.json]

``--family isolation`` measures the parameter-isolation methods the same way on permuted MNIST in the
task-incremental scenario (10 tasks, the same MLP with one output unit per class of every task): each
method has consolidated task 1 (masks, gates, a frozen column) and trains task 2, interleaved with
fine-tuning; PackNet's pruning and retraining at a task's end (one epoch by default) is timed apart.
Progressive networks are measured as a curve: the cost of training column k (k earlier columns, and
their laterals) for k = 1, 2, 4, 8, each against fine-tuning over the same steps.

    python benchmarks/bench_epoch.py --family isolation [--optimizer sgd|adam] [--repeats 3] [--threads 1]
                                     [--out benchmarks/results/epoch-isolation-OPTIMIZER.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from lifelong._io import atomic_write_json
from lifelong.experiments import RunConfig, build_stream, seeded_model
from lifelong.importance import FISHER_KINDS
from lifelong.scenarios import TaskStream, batches
from lifelong.strategies import AGEM, ER, EWC, L2, MAS, SI, DERpp, LwF, Naive, OnlineEWC, RWalk
from lifelong.train import Learner, TrainSettings, fit_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=os.environ.get("LIFELONG_DATA_DIR", "../shared/data"))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "epoch.json"))
    ap.add_argument("--methods", default=None, help="only these methods, e.g. er,agem,derpp,lwf (naive always runs)")
    ap.add_argument("--family", choices=("regularization+replay", "isolation"), default="regularization+replay")
    ap.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                    help="--family isolation: the optimizer (sgd: lr 0.1; adam: lr 1e-3)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.family == "isolation":
        return isolation(args)

    cfg = RunConfig.make(benchmark="permuted-mnist", tasks=2, data_dir=args.data_dir).resolve()
    stream = build_stream(cfg).to("cpu")  # laid out on the device as a run does
    settings = dataclasses.replace(cfg.train, epochs=1)
    fisher_data = lambda: ((b.x, b.y, None) for b in batches([stream[0]], "train", batch_size=1000))  # noqa: E731

    # Train task 1 once, so every strategy starts task 2 from the same trained θ* with a Fisher.
    base = seeded_model(cfg, stream)
    first = Learner(base, Naive(), stream, settings=settings)
    first.start_task(0)
    fit_task(first)
    strategies = {"naive": Naive(), **fresh_regularizers(), **fresh_replay()}
    if args.methods:
        keep = {"naive", *args.methods.split(",")}
        strategies = {k: v for k, v in strategies.items() if k in keep}
    for name, s in strategies.items():
        if name == "naive":
            continue
        # every regularizer starts task 2 with a penalty in place, every replay method with a full memory
        # of task 1 (reservoir memories are offered task 1's samples, with the trained model's logits)
        if getattr(getattr(s, "buffer", None), "policy", None) == "reservoir":
            gen = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for b in batches([stream[0]], "train", batch_size=1000):
                    s.buffer.add_reservoir(b, gen, base(b.x) if s.buffer.keep_logits else None)
        else:
            ctx = first.ctx
            s.after_task(ctx)

    epoch = {name: [] for name in strategies}
    fisher = {kind: [] for kind in FISHER_KINDS}
    steps = -(-len(stream[1].train) // settings.batch_size)  # one epoch
    for r in range(args.repeats):
        # Every method trains its own copy through one epoch in chunks of CHUNK steps, the methods taking
        # turns chunk by chunk (the library's loop, resumed at each chunk's first step): this machine's
        # speed drifts within seconds, and interleaving this finely makes every method see the same drift.
        learners = {}
        for name in strategies:
            model = seeded_model(cfg, stream)
            model.load_state_dict(base.state_dict())
            learners[name] = learner_at(model, strategies[name], stream, settings, 1)
        spent = interleaved(learners, steps, r)
        for name in strategies:
            epoch[name].append(spent[name])
        for kind in FISHER_KINDS:
            t0 = time.perf_counter()
            EWC(1.0, fisher=kind).consolidate(base, fisher_data())
            fisher[kind].append(time.perf_counter() - t0)

    state_bytes = measure_state_bytes(seeded_model(cfg, stream))
    med = {k: statistics.median(v) for k, v in {**epoch, **{f"fisher-{k}": v for k, v in fisher.items()}}.items()}
    # This machine's speed drifts by tens of percent within minutes: each round runs every method back to
    # back, so the ratio within a round cancels most of the drift; the median over rounds is reported.
    ratio = {k: statistics.median(t / n for t, n in zip(epoch[k], epoch["naive"])) for k in strategies}
    fisher_ratio = {k: statistics.median(t / n for t, n in zip(fisher[k], epoch["naive"])) for k in FISHER_KINDS}
    result = {
        "what": "seconds per epoch (60,000 samples, batch 128, Adam) and per full-task Fisher, medians; ratios: "
                "median over rounds of each round's time / that round's fine-tuning epoch",
        "setup": {"model": "mlp 784-400-400-10", "threads": args.threads, "repeats": args.repeats,
                  "torch": torch.__version__, "platform": platform.platform(), "cpus": os.cpu_count()},
        "epoch_seconds": {k: med[k] for k in strategies},
        "epoch_ratio_vs_naive": ratio,
        "epoch_ratio_of_fastest": {k: min(epoch[k]) / min(epoch["naive"]) for k in strategies},
        "fisher_seconds": {k: med[f"fisher-{k}"] for k in FISHER_KINDS},
        "fisher_ratio_vs_naive_epoch": fisher_ratio,
        "state_bytes_after_tasks": state_bytes,
        "raw": {"epoch": epoch, "fisher": fisher},
        "load_average": os.getloadavg(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, result)
    for k in strategies:
        print(f"epoch {k:>10}: {med[k]:6.2f} s  ({result['epoch_ratio_vs_naive'][k]:.3f}x naive)")
    for k, b in state_bytes.items():
        print(f"state {k:>10}: {b['5']:,} bytes after 5 tasks, {b['50']:,} after 50")
    for k in FISHER_KINDS:
        print(f"fisher {k:>9}: {med[f'fisher-{k}']:6.2f} s  ({result['fisher_ratio_vs_naive_epoch'][k]:.2f} epochs)")
    print(f"-> {args.out}")


CHUNK = 25  # optimizer steps a method takes before the next method's turn


def learner_at(model, strategy, stream, settings: TrainSettings, task: int) -> Learner:
    """A Learner at the start of ``task``, as if the tasks before it had been learned (the strategy was
    consolidated on them beforehand: the cost of a step does not depend on how)."""
    cl = Learner(model, strategy, stream, settings=settings)
    T = len(stream)
    cl.rows = [[0.0] * T for _ in range(task + 1)]  # no evaluation: rows are not what is measured here
    cl.steps_per_task = [1] * task
    cl.ctx.task_index = task - 1
    cl.start_task(task)
    return cl


def interleaved(learners: dict, steps: int, seed: int) -> dict[str, float]:
    """Seconds each Learner spends on ``steps`` steps of its current task with the library's loop
    (``fit_task``), the methods taking turns every CHUNK steps."""
    spent = dict.fromkeys(learners, 0.0)
    starts = {}
    for name, cl in learners.items():
        cl.order.manual_seed(seed)
        starts[name] = cl.order.get_state()
    for start in range(0, steps, CHUNK):
        k = start // CHUNK % len(learners)
        for name in list(learners)[k:] + list(learners)[:k]:
            cl = learners[name]
            cl.order.set_state(starts[name])  # the epoch's order is drawn again, its first batches skipped
            cl.settings = cl.ctx.settings = dataclasses.replace(cl.settings, epochs=1, iterations=min(start + CHUNK, steps))
            t0 = time.perf_counter()
            fit_task(cl)
            spent[name] += time.perf_counter() - t0
    return spent


def isolation(args) -> None:
    """``--family isolation``: see the module docstring."""
    from lifelong.strategies import HAT, PackNet, Progressive, Separate, XdG

    cfg = RunConfig.make(benchmark="permuted-mnist", tasks=10, scenario="task", data_dir=args.data_dir).resolve()
    stream = build_stream(cfg).to("cpu")
    settings = TrainSettings(args.optimizer, 0.1 if args.optimizer == "sgd" else 1e-3, 0.0, cfg.train.batch_size, epochs=1)
    steps = -(-len(stream[1].train) // settings.batch_size)
    base = seeded_model(cfg, stream)

    def prepared(make, upto: int) -> Learner:
        """A Learner with a fresh strategy and model copy that has been through tasks 0..upto-1
        (consolidated, not trained: the cost of a step does not depend on the weights' values), at task
        ``upto``'s start."""
        s = make()
        model = seeded_model(cfg, stream)
        model.load_state_dict(base.state_dict())
        cl = Learner(model, s, stream, settings=settings)
        for i in range(upto):
            cl.ctx.task, cl.ctx.task_index = stream[i], i
            s.before_task(cl.ctx)
            if hasattr(s, "_ready"):
                s._ready(cl.ctx)
            s.after_task(cl.ctx)
        T = len(stream)
        cl.rows, cl.steps_per_task = [[0.0] * T for _ in range(upto + 1)], [1] * upto
        cl.start_task(upto)
        return cl

    makers = {"naive": Naive, "xdg": XdG, "packnet": lambda: PackNet(retrain_epochs=0), "hat": HAT,
              "separate": Separate, "progressive": Progressive}
    epoch = {k: [] for k in makers}
    after_task = {"packnet (prune + 1 retraining epoch)": [], "naive epoch": []}
    curve_k = (1, 2, 4, 8)
    curve_steps = 100
    curve = {k: [] for k in curve_k}
    for r in range(args.repeats):
        spent = interleaved({k: prepared(m, 1) for k, m in makers.items()}, steps, r)
        for k in makers:
            epoch[k].append(spent[k])
        cl = prepared(lambda: PackNet(retrain_epochs=1), 1)
        ctx = cl.ctx
        ctx.optimizer = (torch.optim.SGD if args.optimizer == "sgd" else torch.optim.Adam)(ctx.model.parameters(), lr=settings.lr)
        t0 = time.perf_counter()
        cl.strategy.after_task(ctx)
        after_task["packnet (prune + 1 retraining epoch)"].append(time.perf_counter() - t0)
        after_task["naive epoch"].append(spent["naive"])
        for k in curve_k:
            spent = interleaved({"naive": prepared(Naive, k), "progressive": prepared(Progressive, k)}, curve_steps, r)
            curve[k].append(spent["progressive"] / spent["naive"])
    ratio = {k: statistics.median(t / n for t, n in zip(epoch[k], epoch["naive"])) for k in makers}
    result = {
        "what": f"seconds per epoch of task 2 (60,000 samples, batch 128, {settings.optimizer} lr {settings.lr:g}) of "
                "permuted MNIST task-IL, medians over rounds; ratios: median over rounds of time / that round's fine-tuning",
        "setup": {"model": "mlp 784-400-400-100 (10 tasks x 10 units)", "threads": args.threads,
                  "repeats": args.repeats, "torch": torch.__version__, "platform": platform.platform(),
                  "cpus": os.cpu_count()},
        "epoch_seconds": {k: statistics.median(v) for k, v in epoch.items()},
        "epoch_ratio_vs_naive": ratio,
        "after_task_seconds": {k: statistics.median(v) for k, v in after_task.items()},
        # what a page quotes: PackNet's end of task in fine-tuning epochs, median over rounds
        "after_task_ratio_vs_naive_epoch": statistics.median(
            t / n for t, n in zip(after_task["packnet (prune + 1 retraining epoch)"], after_task["naive epoch"])),
        "progressive_ratio_vs_naive_by_columns_before": {str(k): statistics.median(v) for k, v in curve.items()},
        "progressive_curve_steps": curve_steps,
        "raw": {"epoch": epoch, "after_task": after_task, "curve": {str(k): v for k, v in curve.items()}},
        "load_average": os.getloadavg(),
    }
    out = args.out if args.out != str(Path(__file__).parent / "results" / "epoch.json") else \
        str(Path(__file__).parent / "results" / f"epoch-isolation-{args.optimizer}.json")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    for k in makers:
        print(f"epoch {k:>12}: {result['epoch_seconds'][k]:6.2f} s  ({ratio[k]:.3f}x naive)")
    for k, v in result["after_task_seconds"].items():
        print(f"after task: {k}: {v:.2f} s")
    for k, v in result["progressive_ratio_vs_naive_by_columns_before"].items():
        print(f"progressive, column {int(k) + 1} ({k} before it): {v:.2f}x naive")
    print(f"-> {out}")


def fresh_replay() -> dict:
    """The replay family, each with a 2000-sample memory and a memory batch as large as the batch (128)."""
    return {"er": ER(memory=2000), "agem": AGEM(memory=2000), "derpp": DERpp(memory=2000), "lwf": LwF()}


def fresh_regularizers() -> dict:
    return {
        "ewc": EWC(100.0), "online-ewc": OnlineEWC(100.0, gamma=0.9), "si": SI(100.0), "mas": MAS(1.0),
        "rwalk": RWalk(1.0), "l2": L2(0.01),
    }


def measure_state_bytes(model: torch.nn.Module) -> dict[str, dict[str, int]]:
    """Bytes of each strategy's state_dict after 5 and after 50 consolidated tasks (2 steps of 64 random
    samples each, through a Learner)."""
    g = torch.Generator().manual_seed(0)
    tasks = [(torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)) for _ in range(50)]
    stream = TaskStream.from_tensors(tasks, [(x[:8], y[:8]) for x, y in tasks], scenario="domain", units="shared")
    out = {}
    for name, strategy in fresh_regularizers().items():
        m = type(model)(*model.children())  # same architecture, fresh parameters
        m.load_state_dict(model.state_dict())
        cl = Learner(m, strategy, stream, settings=TrainSettings("sgd", 1e-3, batch_size=64, iterations=2))
        sizes = {}
        for t in range(50):
            cl.start_task(t)
            fit_task(cl)
            cl.end_task()
            if t + 1 in (5, 50):
                sizes[str(t + 1)] = sum(v.numel() * v.element_size() for v in strategy.state_dict().values())
        out[name] = sizes
    return out


if __name__ == "__main__":
    main()
