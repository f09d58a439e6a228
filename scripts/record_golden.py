"""Record (or check) the golden accuracy matrices of a handful of small fixed runs.

Each case is a ``lifelong run`` command line on the tiny MNIST subset in ``tests/fixtures`` with one
thread. ``tests/test_golden.py`` runs every case again and compares its accuracy matrices with
``tests/golden/golden.json`` exactly, so a refactoring that changes any number the library produces is
caught. The final weights are kept twice: a digest of their bytes, compared exactly on the machine that
recorded them (``machine``: PyTorch's CPU kernels and BLAS differ by instruction set, AVX2 or AVX-512,
in the last bits of a float32 sum, and training carries those bits on), and each tensor's float64 norm,
compared on any other machine to a relative tolerance (:data:`NORM_RTOL`). Usage, from the repository root::

    python scripts/record_golden.py            # rewrite tests/golden/golden.json
    python scripts/record_golden.py --check    # say which cases differ from it
    python scripts/record_golden.py --changed  # rewrite tests/golden/changed.json (cases changed on purpose)
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "tests" / "fixtures" / "mnist-tiny")
COMMON = ["--data-dir", TINY, "--no-download", "--no-progress", "--threads", "1", "--hidden", "32"]

# name -> arguments after `lifelong run` (COMMON is appended)
CASES: dict[str, list[str]] = {
    "naive-permuted-domain-sgd": ["--benchmark", "permuted-mnist", "--tasks", "3", "--strategy", "naive",
                                  "--optimizer", "sgd", "--lr", "0.1", "--iterations", "40"],
    "joint-permuted-domain": ["--benchmark", "permuted-mnist", "--tasks", "3", "--strategy", "joint",
                              "--iterations", "40"],
    "ewc-exact-split-task": ["--benchmark", "split-mnist", "--strategy", "ewc", "--lambda", "1000",
                             "--batch-size", "32", "--epochs", "2"],
    "online-ewc-mc-permuted-task": ["--benchmark", "permuted-mnist", "--tasks", "3", "--scenario", "task",
                                    "--strategy", "online-ewc", "--fisher", "mc", "--mc-samples", "2",
                                    "--gamma", "0.7", "--lambda", "300", "--iterations", "30"],
    "ewc-empirical-split-class-seen-val": ["--benchmark", "split-mnist", "--scenario", "class", "--class-units",
                                           "seen", "--strategy", "ewc", "--fisher", "empirical", "--lambda", "50",
                                           "--val-fraction", "0.2", "--batch-size", "64"],
    "si-split-domain": ["--benchmark", "split-mnist", "--scenario", "domain", "--strategy", "si", "--lambda", "10",
                        "--batch-size", "32"],
    "si-large-lambda-split-task": ["--benchmark", "split-mnist", "--tasks", "3", "--strategy", "si", "--lambda",
                                   "1e5", "--batch-size", "32"],
    "mas-permuted-class": ["--benchmark", "permuted-mnist", "--tasks", "3", "--scenario", "class",
                           "--strategy", "mas", "--lambda", "5", "--iterations", "30"],
    "rwalk-rotated-domain": ["--benchmark", "rotated-mnist", "--angles", "0,60,120", "--strategy", "rwalk",
                             "--lambda", "20", "--iterations", "30"],
    "l2-split-class-seen": ["--benchmark", "split-mnist", "--scenario", "class", "--class-units", "seen",
                            "--strategy", "l2", "--lambda", "0.5", "--batch-size", "64"],
    "ewc-predicted-cnn-padded": ["--benchmark", "split-mnist", "--tasks", "2", "--strategy", "ewc", "--fisher",
                                 "predicted", "--model", "cnn", "--pad", "2", "--mean", "0.1", "--std", "0.3",
                                 "--iterations", "10"],
    "naive-rotated-class-momentum": ["--benchmark", "rotated-mnist", "--tasks", "2", "--scenario", "class",
                                     "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9",
                                     "--iterations", "25"],
}


# Cases whose numbers lifelong 0.2 changed on purpose (issue "One shape for every family"), and why.
# Their new values are in tests/golden/changed.json (``--changed`` rewrites it); golden.json keeps the old.
CHANGED = {
    "rwalk-rotated-domain": "RWalk's running Fisher follows Chaudhry et al.'s schedule: the EMA is applied to the "
                            "mean of 10 steps' squared gradients, scaled by the real batch size, not every step",
    "si-large-lambda-split-task": "SI reads the task-loss gradient before the penalty's is added instead of "
                                  "recovering it as p.grad - lambda*Omega*(theta - anchor), which loses digits in "
                                  "float32 at large lambda (the accuracy matrix did not move, the weights did)",
}


# Measured across CPU kernels on one machine (ATEN_CPU_CAPABILITY=default, avx2, avx512 and MKL_CBWR=
# COMPATIBLE): the per-tensor norms of the 12 cases moved by at most 1.6e-3 relative (the two EWC cases
# with 1000s of steps at a large lambda; the others by 1e-5 or less). The accuracy matrices did not move.
NORM_RTOL = 1e-2


def machine() -> str:
    """What decides the last bits of a CPU run: PyTorch's version, its kernels' instruction set, the CPU."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"torch {torch.__version__.split('+')[0]}, {torch.backends.cpu.get_cpu_capability()}, {cpu}"


def weight_norms(model: torch.nn.Module) -> dict[str, float]:
    return {name: float(f"{t.detach().double().norm().item():.9g}") for name, t in model.state_dict().items()
            if t.is_floating_point()}


def weights_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def run_case(args: list[str]) -> dict:
    """Run one case through the library (no run folder) and return what the golden file keeps."""
    from lifelong.cli import config_of
    from lifelong.experiments.build import build_stream, seeded_model
    from lifelong.strategies import build
    from lifelong.train import run_stream

    cfg = config_of([*args, *COMMON])
    torch.set_num_threads(1)
    stream = build_stream(cfg)
    model = seeded_model(cfg, stream)
    res = run_stream(model, stream, build(cfg.strategy), cfg.train, seed=cfg.seed, device="cpu").to_dict()
    out = {"accuracy_matrix": res["accuracy_matrix"], "weights": weights_digest(model)}
    if "val_accuracy_matrix" in res:
        out["val_accuracy_matrix"] = res["val_accuracy_matrix"]
    return {**out, "weight_norms": weight_norms(model), "machine": machine()}


def same_weights(got: dict, want: dict) -> bool:
    """The digest on the recording machine; elsewhere every tensor's norm within NORM_RTOL."""
    if got["machine"] == want.get("machine"):
        return got["weights"] == want["weights"]
    norms = want.get("weight_norms") or {}
    return set(norms) == set(got["weight_norms"]) and all(
        abs(got["weight_norms"][k] - v) <= NORM_RTOL * max(abs(v), 1e-12) for k, v in norms.items())


def format_golden(golden: dict) -> str:
    """One line per list (arguments, matrix rows), so a diff of the file shows which cell moved."""
    lines = ["{"]
    for i, (name, case) in enumerate(golden.items()):
        lines.append(f"  {json.dumps(name)}: {{")
        items = list(case.items())
        for k, (key, value) in enumerate(items):
            if isinstance(value, list) and value and isinstance(value[0], list):
                rows = ",\n".join(f"      {json.dumps(r)}" for r in value)
                text = f"[\n{rows}\n    ]"
            else:
                text = json.dumps(value)
            lines.append(f"    {json.dumps(key)}: {text}{',' if k + 1 < len(items) else ''}")
        lines.append("  }" + ("," if i + 1 < len(golden) else ""))
    return "\n".join(lines) + "\n}\n"


def main() -> None:
    golden_dir = ROOT / "tests" / "golden"
    if "--check" in sys.argv:  # compare with the files instead of rewriting them
        golden = json.loads((golden_dir / "golden.json").read_text())
        changed = json.loads((golden_dir / "changed.json").read_text())
        for name, case in golden.items():
            got, want = run_case(case["args"]), {**case, **changed.get(name, {})}
            same = {k: got.get(k) == want.get(k) for k in ("accuracy_matrix", "val_accuracy_matrix")}
            same["weights"] = same_weights(got, want)
            print(f"{name:40s} " + " ".join(f"{k}={'ok' if v else 'DIFFERS'}" for k, v in same.items()))
        return
    if "--changed" in sys.argv:  # record the new values of the cases changed on purpose
        golden = json.loads((golden_dir / "golden.json").read_text())
        changed = {name: {"why": why, **run_case(golden[name]["args"])} for name, why in CHANGED.items()}
        (golden_dir / "changed.json").write_text(format_golden(changed))
        return
    golden = {name: {"args": args, **run_case(args)} for name, args in CASES.items()}
    path = ROOT / "tests" / "golden" / "golden.json"
    path.write_text(format_golden(golden))
    print(f"wrote {len(golden)} cases to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
