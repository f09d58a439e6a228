"""This checkout's training step against another version's, side by side in one process.

    git worktree add /tmp/base <commit>
    python benchmarks/bench_ab.py --baseline /tmp/base/src --methods naive,ewc,si,er,agem,derpp,lwf

The other version is imported as the package ``lifelong_base`` from ``--baseline`` (its ``src`` folder),
this checkout's as ``lifelong``. For each method, both versions build the same model (same seed) and
stream (permuted MNIST, 2 tasks, MLP 784-400-400-10, Adam lr 1e-3, batch 128), train the first task
untimed (a replay memory fills, a penalty is consolidated), then train the second task in blocks of
``--block`` steps, the two versions taking turns block by block, so that the machine's drift (tens of
percent within seconds on a shared machine) falls on both alike. Reported per method: the median over
blocks of (this version's block time / the baseline's block time), and the two accuracy matrices'
equality. JSON in benchmarks/results/ab.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def load_base(src: Path):
    """The package at ``src/lifelong`` imported under the name ``lifelong_base``: a copy in a temporary
    folder whose absolute imports of ``lifelong`` are rewritten (relative ones need nothing)."""
    root = Path(tempfile.mkdtemp(prefix="lifelong-base-"))
    shutil.copytree(src / "lifelong", root / "lifelong_base", ignore=shutil.ignore_patterns("__pycache__"))
    for f in (root / "lifelong_base").rglob("*.py"):
        text = f.read_text()
        text = re.sub(r"^(\s*)from lifelong(\.| import)", r"\1from lifelong_base\2", text, flags=re.M)
        text = re.sub(r"^(\s*)import lifelong(\.|\b)", r"\1import lifelong_base\2", text, flags=re.M)
        f.write_text(text)
    sys.path.insert(0, str(root))
    return importlib.import_module("lifelong_base")


def sub(pkg, name: str):
    return importlib.import_module(f"{pkg.__name__}.{name}")


STRATEGIES = {  # name -> (class name, keyword arguments)
    "naive": ("Naive", {}), "ewc": ("EWC", {"lam": 100.0}), "si": ("SI", {"lam": 1.0}),
    "er": ("ER", {"memory": 2000}), "agem": ("AGEM", {"memory": 2000}), "derpp": ("DERpp", {"memory": 2000}),
    "lwf": ("LwF", {}), "rwalk": ("RWalk", {"lam": 1.0}), "mas": ("MAS", {"lam": 1.0}), "gem": ("GEM", {"memory": 500}),
}


def learner(pkg, method: str, data_dir: str):
    scen, data, models, train = (sub(pkg, n) for n in ("scenarios", "data", "models", "train"))
    stream = scen.permuted(data.load_dataset("mnist", data_dir, download=False), 2, "domain", seed=0)
    torch.manual_seed(0)
    model = models.mlp(784, (400, 400), 10)
    cls, kw = STRATEGIES[method]
    strategy = getattr(sub(pkg, "strategies"), cls)(**kw)
    settings = train.TrainSettings(optimizer="adam", lr=1e-3, batch_size=128, epochs=1)
    return train.Learner(model, strategy, stream, settings=settings, seed=0)


def step(cl, opt, batch) -> None:
    loss = cl.loss(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    cl.before_step(batch)
    opt.step()
    cl.after_step(batch)


def first_task(cl):
    cl.start_task(0)
    opt = torch.optim.Adam(cl.parameters(), lr=1e-3)
    cl.optimizer = opt
    for batch in cl.batches():
        step(cl, opt, batch)
    cl.end_task()
    cl.start_task(1)
    cl.optimizer = torch.optim.Adam(cl.parameters(), lr=1e-3)
    return cl.batches()


def measure(method: str, base, data_dir: str, block: int) -> dict:
    import lifelong

    runs = {"new": learner(lifelong, method, data_dir), "base": learner(base, method, data_dir)}
    its = {k: first_task(cl) for k, cl in runs.items()}
    times: dict[str, list[float]] = {"new": [], "base": []}
    done = False
    while not done:
        for k in ("base", "new") if len(times["new"]) % 2 else ("new", "base"):
            cl, n = runs[k], 0
            t0 = time.perf_counter()
            for batch in its[k]:
                step(cl, cl.optimizer, batch)
                n += 1
                if n == block:
                    break
            times[k].append(time.perf_counter() - t0)
            done = done or n < block
    full = min(len(times["new"]), len(times["base"])) - 1  # the last block may be short
    ratios = [a / b for a, b in zip(times["new"][:full], times["base"][:full])]
    for cl in runs.values():
        cl.end_task()
    same = [list(map(float, r)) for r in runs["new"].accuracy_matrix.tolist()] == \
           [list(map(float, r)) for r in runs["base"].accuracy_matrix.tolist()]
    return {"ratio_new_over_base": statistics.median(ratios), "blocks": full,
            "new_seconds": sum(times["new"][:full]), "base_seconds": sum(times["base"][:full]),
            "same_accuracy_matrix": same}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", required=True, help="the other version's src folder (holding lifelong/)")
    p.add_argument("--methods", default="naive,ewc,si,er,agem,derpp,lwf")
    p.add_argument("--block", type=int, default=25)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ab.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    base = load_base(Path(args.baseline))
    out = {"what": "median over blocks of this version's time for a block of training steps / the baseline's, "
                   "taking turns block by block in one process; task 2 of permuted MNIST",
           "setup": {"model": "mlp 784-400-400-10", "batch": 128, "optimizer": "adam", "block": args.block,
                     "threads": args.threads, "torch": torch.__version__,
                     "baseline": str(args.baseline), "baseline_version": getattr(base, "__version__", None)},
           "methods": {}}
    for m in args.methods.split(","):
        r = measure(m, base, args.data_dir, args.block)
        out["methods"][m] = r
        print(f"{m:>6}: {r['ratio_new_over_base']:.3f}x the baseline's step time over {r['blocks']} blocks "
              f"(same matrix: {r['same_accuracy_matrix']})", flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
