"""The numbers the README and the docs show, made from recorded runs (one source), rendered into the
pages between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers. ``--check`` exits 1 when a
page's text differs from what the records give (a test runs it); without it the pages are rewritten.

Two kinds of source, both committed in docs/data/:

* the results.json of the three permuted-MNIST runs of the README (``RUNS``). Record again (about 3
  minutes per run on 2 cores) with, for each strategy S of RUNS:
      lifelong run --benchmark permuted-mnist --strategy S ... --threads 2 --data-dir DATA --out runs/S
      cp runs/S/results.json docs/data/permuted-mnist/S.json
* records (:mod:`lifelong.experiments.record`) of sweeps and reproductions (``RECORDS``): each block
  shows its commands, the table made from the record, and where the record came from. Record again by
  running the block's commands, then ``lifelong compare OUT --record docs/data/FILE.json`` on their
  output folder (for ``tune``, on its validation run folders).

Then ``python scripts/recorded_numbers.py``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "data" / "permuted-mnist"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNS = [("naive", "naive (fine-tuning)", "--strategy naive"), ("ewc", "EWC, λ = {lam:g}", "--strategy ewc --lambda {lam:g}"),
        ("joint", "joint (upper bound)", "--strategy joint")]


def _pct(v, sign: bool = False) -> str:
    if v is None:
        return "n/a"
    v = 0.0 if round(100 * v, 2) == 0 else v  # no "−0.00"
    return (f"{100 * v:+.2f}" if sign else f"{100 * v:.2f}").replace("-", "−")


def records() -> dict[str, dict]:
    return {name: json.loads((DATA / f"{name}.json").read_text()) for name, _, _ in RUNS}


def ewc_lambda(recs: dict[str, dict]) -> float:
    """The λ of the recorded EWC run: the one the pages' permuted-MNIST commands must give and the one
    `lifelong tune` must have chosen (checked in :func:`main`)."""
    return float(recs["ewc"]["config"]["strategy"]["settings"]["lam"])


def blocks(docs: str = "") -> dict[str, str]:
    """Each marked block's text, from the records (``docs``: the prefix of links to the docs pages)."""
    from lifelong.cli.run import summary_line
    from lifelong.train import RunResult

    recs = records()
    rows = ["| strategy | final average accuracy | BWT | forgetting | FWT | task 1 at the end |", "|---|---|---|---|---|---|"]
    lam = ewc_lambda(recs)
    for name, label, _ in RUNS:
        r = recs[name]
        label = label.format(lam=lam)
        m, R = r["metrics"], r["accuracy_matrix"]
        acc = _pct(m["average_accuracy"])
        rows.append(f"| {label} | {f'**{acc}**' if name == 'ewc' else acc} | {_pct(m['backward_transfer'], True)} | "
                    f"{_pct(m['forgetting'])} | {_pct(m['forward_transfer'], True)} | {100 * R[-1][0]:.1f} |")
    ewc = recs["ewc"]
    v = ewc["versions"]
    source = (f"Recorded runs `docs/data/permuted-mnist/*.json` (seed 0, {ewc['threads']} threads on {ewc['device']}, "
              f"torch {v['torch']}, lifelong {v['lifelong']}; `{v['platform']}`), rendered by "
              "`scripts/recorded_numbers.py`: other thread counts and machines move the last digits (see "
              f"[Reliability]({docs}reliability.md), determinism).")
    line = summary_line(RunResult.from_dict({**ewc, "run_dir": "runs/ewc"}, "runs/ewc"))
    acc = {k: recs[k]["metrics"]["average_accuracy"] for k in ("naive", "ewc", "joint")}
    gap = (f"EWC recovers {100 * (acc['ewc'] - acc['naive']):.1f} of the {100 * (acc['joint'] - acc['naive']):.1f} "
           "points that fine-tuning loses against joint training.")
    return {"results-table": "\n".join(rows), "results-source": source, "results-gap": gap,
            "example-line": f"```\n{line}\n```", "kfac-cost": kfac_cost(),
            "online-cost": online_cost()}


def _nearest_error(e: dict) -> str:
    """The constant-memory form's error against the exact sum, per layer, at a few task counts."""
    points = [t for t in (2, 5, 10, 20, 50) if t <= e["tasks"]]
    lines = [f"How far `--kron-sum nearest` drifts from the exact sum it replaces, on the {e['model']} learning "
             f"{e['tasks']} permuted-MNIST tasks ({e['epochs_per_task']} epoch each, {e['optimizer']}): the relative "
             "Frobenius error ‖Σ_t A_t ⊗ G_t − X ⊗ Y‖/‖Σ_t A_t ⊗ G_t‖ of the kept product X ⊗ Y after each task "
             "(in parentheses, the error of that task's step alone, what `results.json` records):", "",
             "| layer | " + " | ".join(f"after {t} tasks" for t in points) + " |", "|---|" + "---|" * len(points)]
    for layer, cum in e["cumulative_error"].items():
        step = e["step_error"][layer]
        lines.append(f"| {layer} | " + " | ".join(f"{100 * cum[t - 1]:.1f} % ({100 * step[t - 1]:.1f} %)" for t in points) + " |")
    return "\n".join(lines)


def online_cost() -> str:
    """The throughput table of benchmarks/results/online.json: samples per second, ours against a bare loop."""
    b = json.loads((ROOT / "benchmarks" / "results" / "online.json").read_text())
    lines = ["| method | lifelong (samples/s) | bare PyTorch loop (samples/s) | ratio | reads of the device per step |",
             "|---|---|---|---|---|"]
    for name, m in b["methods"].items():
        bare, ratio = m.get("bare_samples_per_second"), m.get("ratio")
        lines.append(f"| {name} | {m['ours_samples_per_second']:,.0f} | {'–' if bare is None else f'{bare:,.0f}'} | "
                     f"{'–' if ratio is None else f'{ratio:.2f}'} | {m['device_reads_per_step']:.3f} |")
    mc = b["machine"]
    return ("```bash\npython benchmarks/bench_online.py --samples 10000 --threads 1 --data-dir ../shared/data\n```\n\n"
            + "\n".join(lines)
            + f"\n\n{b['samples']} samples, batches of {b['batch']}, {b['threads']} thread, median of {b['repeats']} "
            f"interleaved repeats; torch {mc['torch']}, `{mc['platform']}`, load average {mc['loadavg_before'][0]:g} "
            "(`benchmarks/results/online.json`). The reads are the loss check every 50 steps and the parameters' check "
            "at the end (EWC++ adds none: its running Fisher stays on the device); a curve point adds one read.")


def kfac_cost() -> str:
    """The cost table of benchmarks/results/kfac.json: factors in epochs, the step's ratios, the state's bytes."""
    path = ROOT / "benchmarks" / "results" / "kfac.json"
    b = json.loads(path.read_text())
    mb = lambda x: f"{x / 1e6:.1f}"  # noqa: E731
    tasks = sorted({int(k.split("=")[1]) for m in b["models"].values() for k in m["step_ms"] if "T=" in k})
    lines = ["| model | factors of a task (epochs) | diagonal Fisher (epochs) | EWC step | "
             + " | ".join(f"kfac step, {t} term{'s' if t > 1 else ''}" for t in tasks) + " |",
             "|---|---|---|---|" + "---|" * len(tasks)]
    for name, m in b["models"].items():
        r, e = m["step_over_fine_tuning"], m["step_over_ewc"]
        lines.append(f"| {name} | {m['factors_over_epoch']:.2f} | {m['fisher_diag_over_epoch']:.2f} | {r['ewc']:.2f}× | "
                     + " | ".join(f"{r[f'kfac T={t}']:.2f}× ({e[f'kfac T={t}']:.2f}× EWC's)" for t in tasks) + " |")
    state = ["| model | EWC (any number of tasks) | kfac nearest (any) | "
             + " | ".join(f"kfac online exact, {t} task{'s' if t > 1 else ''} | kfac separate, {t} task{'s' if t > 1 else ''}"
                          for t in tasks) + " |",
             "|---|---|---|" + "---|---|" * len(tasks)]
    for name, m in b["models"].items():
        sb = m["state_bytes"]
        state.append(f"| {name} | {mb(sb['ewc (any T)'])} | {mb(sb['kfac nearest (any T)'])} | "
                     + " | ".join(f"{mb(sb[f'kfac online exact T={t}'])} | {mb(sb[f'kfac separate T={t}'])}" for t in tasks)
                     + " |")
    return ("```bash\npython benchmarks/bench_kfac.py --samples 10000 --threads 1 --data-dir ../shared/data\n```\n\n"
            "Time of one task's factors (exact Fisher, on the N samples) and of the diagonal Fisher, in epochs of "
            "fine-tuning on the same samples; the training step (forward, backward, the penalty's gradient, Adam) "
            "against fine-tuning's and, in parentheses, EWC's, with the penalty holding 1, 10 or 50 tasks' terms "
            "(online exact sum and separate anchors cost the same per term; `--kron-sum nearest` is always one):\n\n"
            + "\n".join(lines) + "\n\nThe state in MB (float32) against the number of tasks:\n\n" + "\n".join(state)
            + "\n\n" + _nearest_error(b["nearest_error"])
            + f"\n\nMeasured in one process, configurations timed round-robin ({b['rounds']} rounds, median), "
            f"N = {b['N']}, {b['threads']} thread, torch {b['torch']}, `{b['machine']['platform']}`, load average "
            f"{b['machine']['loadavg_before'][0]:g} (`benchmarks/results/kfac.json`).")


# ---- records of sweeps and reproductions ------------------------------------------------------------

REPRO = "lifelong reproduce {} --workers 2 --threads 1 --data-dir ../shared/data --out {}"
SWEEP = "lifelong sweep docs/sweeps/{0}.json --workers 2 --threads 1 --data-dir ../shared/data --out sweeps/{0}"
TUNE = ("lifelong tune --strategy {} {} --param lam --grid 1,10,100,1000,10000 --val-fraction 0.1 --workers 2 "
        "--threads 1 --data-dir ../shared/data --out runs/{}")
HSU_PROTOCOL = ("--benchmark split-mnist --tasks 5 --pad 2 --mean 0.1 --std 0.2752 --hidden 400,400 --epochs 4 "
                "--batch-size 128 --optimizer adam --lr 0.001 --optimizer-state keep")
HSU_ROWS = ["naive", "l2", "ewc", "online-ewc", "si", "mas", "joint"]
#: block name -> what it shows: a recipe's table ("reproduction": its rows), a comparison ("comparison":
#: compare's columns, plus parameters and capacity with ``capacity``), a tuned setting ("tune"), tuned
#: settings of several methods ("tunes"), or accuracy against the number of tasks with its figure ("curve")
RECORDS: dict[str, dict] = {
    "hsu2018-table2": dict(
        kind="reproduction", file="hsu2018-split-mnist.json", recipe="hsu2018-split-mnist", rows=HSU_ROWS,
        commands=[REPRO.format(f"hsu2018-split-mnist --methods {','.join(HSU_ROWS)} --seeds 5", "reproductions/hsu2018")]),
    "hsu2018-replay": dict(
        kind="reproduction", file="hsu2018-split-mnist.json", recipe="hsu2018-split-mnist",
        rows=["lwf", "gem", "rehearsal-1100", "rehearsal-4400"],
        commands=[REPRO.format("hsu2018-split-mnist --methods lwf,rehearsal-1100,rehearsal-4400 --seeds 5",
                               "reproductions/hsu2018"),
                  REPRO.format("hsu2018-split-mnist --methods gem --seeds 3", "reproductions/hsu2018")]),
    "vandeven2022-table2": dict(
        kind="reproduction", file="vandeven2022-split-mnist.json", recipe="vandeven2022-split-mnist", rows=None,
        commands=[REPRO.format("vandeven2022-split-mnist --seeds 5", "reproductions/vandeven2022")]),
    "isolation-split": dict(
        kind="comparison", file="isolation-split-mnist-task.json", capacity=True,
        commands=[SWEEP.format("isolation-split-mnist-task"), "lifelong compare sweeps/isolation-split-mnist-task --memory"]),
    "isolation-permuted": dict(
        kind="comparison", file="isolation-permuted-mnist-task.json", capacity=True,
        commands=[SWEEP.format("isolation-permuted-mnist-task"),
                  "lifelong compare sweeps/isolation-permuted-mnist-task --memory"]),
    "vandeven2019-xdg": dict(
        kind="comparison", file="vandeven2019-xdg-split-mnist.json", capacity=True,
        commands=[SWEEP.format("vandeven2019-xdg-split-mnist"), "lifelong compare sweeps/vandeven2019-xdg-split-mnist"]),
    "ewc-lambda": dict(
        kind="tune", file="permuted-mnist-ewc-lambda.json", param="lam", symbol="λ",
        commands=["lifelong tune --benchmark permuted-mnist --strategy ewc --param lam "
                  "--grid 1,10,30,100,300,1000,10000 --val-fraction 0.1 --workers 2 --threads 1 "
                  "--data-dir ../shared/data --out runs/tune-ewc"]),
    "kfac-lambda": dict(
        kind="tunes", file="kfac-permuted-mnist-lambda.json", param="lam", symbol="λ",
        commands=[f"lifelong tune --strategy {s} --param lam --grid 1,3,10,30,100,1000,10000 --tasks 10 --hidden 100,100 "
                  "--epochs 1 --val-fraction 0.1 --workers 2 --threads 1 --data-dir ../shared/data --out runs/tune-"
                  + s.replace("kfac --kron-sum nearest", "kfac-nearest")
                  for s in ("ewc", "online-ewc", "kfac", "kfac --kron-sum nearest")]),
    "kfac-permuted-50": dict(
        kind="curve", file="ritter2018-permuted-mnist.json", plot="kfac_permuted_mnist_50.png", at=(1, 10, 20, 30, 40, 50),
        commands=[SWEEP.format("ritter2018-permuted-mnist"), "lifelong compare sweeps/ritter2018-permuted-mnist --memory"]),
    "kfac-split-task": dict(
        kind="comparison", file="kfac-split-mnist-task.json",
        commands=[TUNE.format(s, HSU_PROTOCOL + " --scenario task", f"split-task-{s}") for s in ("ewc", "online-ewc", "kfac")]),
    "kfac-split-class": dict(
        kind="comparison", file="kfac-split-mnist-class.json",
        commands=[TUNE.format(s, HSU_PROTOCOL + " --scenario class --class-units seen", f"split-class-{s}")
                  for s in ("ewc", "online-ewc", "kfac")]),
    "kfac-cnn-task": dict(
        kind="comparison", file="kfac-cnn-split-mnist-task.json",
        commands=[TUNE.format(s, "--benchmark split-mnist --tasks 5 --model cnn --epochs 1 --scenario task", f"cnn-task-{s}")
                  for s in ("ewc", "online-ewc", "kfac")]),
    "task-free-lambda": dict(
        kind="tunes", file="task-free-lambda.json", param="lam", symbol="λ", task_free=True,
        what="Validation accuracy (%) at the stream's end (10 % of its training data held out)",
        commands=[f"lifelong tune --strategy {s} --hidden 100,100 --batch-size 10 --optimizer sgd --lr 0.1 --param lam "
                  f"--grid {g} --val-fraction 0.1 --workers 2 --threads 1 --data-dir ../shared/data --out runs/{o}"
                  for s, g, o in (
                      ("online-ewc --importance-every 10 --consolidate steps --consolidate-every 500 --benchmark "
                       "split-mnist --schedule gradual", "0.1,1,10,100", "tune-ewcpp"),
                      ("mas --consolidate plateau --benchmark split-mnist --schedule gradual", "0.01,0.1,1,10", "tune-mas"),
                      ("online-ewc --gamma 0 --importance-every 10 --consolidate steps --consolidate-every 500 "
                       "--benchmark permuted-mnist --schedule flat --train-samples 5000", "1,10,100,1000",
                       "tune-perm-ewcpp"))]),
    "task-free": dict(
        kind="anytime", file="task-free-mnist.json", plot="taskfree_curves.png", schedules="taskfree_schedules.png",
        commands=[SWEEP.format("task-free-mnist"), "lifelong compare sweeps/task-free-mnist"]),
}
RECORD_DIR = ROOT / "docs" / "data"


def _record_runs(spec: dict) -> list[dict]:
    from lifelong.experiments.record import read_record

    runs, notes = read_record(RECORD_DIR / spec["file"])
    if notes:
        raise SystemExit(f"{spec['file']}: {'; '.join(notes)}")
    return runs


def _minutes(seconds: float) -> str:
    if seconds < 5400:
        m = round(seconds / 60)
        return "under a minute" if m == 0 else f"{m} minute{'s' if m != 1 else ''}"
    return f"{seconds / 3600:.1f} hours"


def _source(spec: dict, runs: list[dict], docs: str) -> str:
    from lifelong.experiments.record import record_summary

    s = record_summary(runs)
    seeds = s["seeds"]
    seed_text = (f"seeds {seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1
                 else ("seeds " if len(seeds) > 1 else "seed ") + ", ".join(map(str, seeds)))
    one = lambda xs: ", ".join(str(x) for x in xs)  # noqa: E731
    threads = f"{one(s['threads'])} thread{'s' if s['threads'] != [1] else ''}"
    return (f"Recorded in `docs/data/{spec['file']}` ({s['runs']} runs, {seed_text}; {threads} "
            f"per run on {one(s['devices'])}; torch {one(s['torch'])}, lifelong {one(s['lifelong'])}; "
            f"`{one(s['platforms'])}`; {_minutes(s['seconds'])} of training in all), rendered by "
            f"`scripts/recorded_numbers.py`; see [Reliability]({docs}reliability.md) on what moves the last digits.")


def _commands(spec: dict) -> str:
    return "```bash\n" + "\n".join(spec["commands"]) + "\n```"


def _reproduction(spec: dict, runs: list[dict]) -> tuple[str, list[dict]]:
    from lifelong.experiments.recipes import RECIPES, rows_of_runs

    recipe = RECIPES[spec["recipe"]]
    found, _ = rows_of_runs(spec["recipe"], runs)
    chosen = list(spec["rows"] or recipe.PUBLISHED)
    found = {cell: rs for cell, rs in found.items() if cell[0] in chosen}
    rows = recipe.compare_table({cell: [r["results"]["metrics"]["average_accuracy"] for r in rs]
                                 for cell, rs in found.items()}, chosen)
    missing = [(r["method"], r["scenario"]) for r in rows if not r["n"]]
    if missing:
        raise SystemExit(f"{spec['file']} has no runs of {missing}: record them (see this script's docstring)")
    table = recipe.format_table(rows)
    hit = sum(r["meets_target"] for r in rows)
    text = f"{table}\n\n{hit} of {len(rows)} cells meet the target (ours ≥ published − max(2 × published std, 1 point))."
    return text, [r for rs in found.values() for r in rs]


def _comparison(spec: dict, runs: list[dict]) -> str:
    """compare's table of the record's runs (its grouping, labels and cells), in the columns a page shows."""
    from lifelong.experiments.collect import label_methods, methods_of
    from lifelong.report.table import _cell, build_table

    groups = methods_of(runs)
    label_methods(groups)
    table = build_table(groups, ["average_accuracy", "backward_transfer", "forgetting"], [], memory=True)
    head = "| method | average accuracy (%) | BWT (%) | forgetting (%) | strategy state (MB) |"
    sep = "|---|---|---|---|---|"
    if spec.get("capacity"):
        head += " parameters | used by task 1 → last | free |"
        sep += "---|---|---|"
    lines = [head + " n |", sep + "---|"]
    for row, group in zip(table["rows"], groups):
        v = row["values"]
        cells = [_cell(v[m], True, row["n"]) for m in ("average_accuracy", "backward_transfer", "forgetting")]
        cells.append(f"{v['extra_memory_bytes']['mean'] / 1e6:.3f}")
        if spec.get("capacity"):
            res = [r["results"] for r in group["runs"]]
            # every parameter a method trains and keeps: the capacity report's count (other networks, columns,
            # embeddings) where there is one, else the model's
            params = {(x.get("capacity") or {}).get("total_parameters") or x.get("n_parameters") for x in res}
            cells.append(f"{params.pop():,}" if len(params) == 1 else "varies")
            caps = [x.get("capacity") for x in res]
            if all(caps):
                mean = lambda xs: 100 * sum(xs) / len(xs)  # noqa: E731
                cells.append(f"{mean([c['used'][0] for c in caps]):.1f}% → {mean([c['used'][-1] for c in caps]):.1f}% "
                             f"of the {caps[0]['unit']}")
                frees = [c["free"] for c in caps]
                cells.append("–" if None in frees else f"{mean(frees):.1f}%")
            else:
                cells += ["–", "–"]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + f" | {row['n']} |")
    return "\n".join(lines) + "\n\nCells: mean ± sample std over seeds; capacity shares are means over seeds."


def _tune(spec: dict, runs: list[dict], lam: float) -> str:
    param = spec["param"]
    points = sorted(((r["config"].get(param), r["results"]["val_metrics"]["average_accuracy"]) for r in runs),
                    key=lambda p: p[0])
    best = max(points, key=lambda p: p[1])[0]
    fmt = lambda x: f"{x:g}"  # noqa: E731
    bold = lambda x, text: f"**{text}**" if x == best else text  # noqa: E731
    head = f"| {spec['symbol']} | " + " | ".join(bold(x, fmt(x)) for x, _ in points) + " |"
    sep = "|---|" + "---|" * len(points)
    row = "| validation ACC | " + " | ".join(bold(x, f"{100 * a:.2f}") for x, a in points) + " |"
    if spec["param"] == "lam" and best != lam:
        raise SystemExit(f"{spec['file']}: tune chose λ = {fmt(best)} but docs/data/permuted-mnist/ewc.json was run with "
                         f"λ = {fmt(lam)}: record the EWC run again with the chosen λ")
    return f"{head}\n{sep}\n{row}\n\n`lifelong tune` picks {spec['symbol']} = {fmt(best)}."


def _method(r: dict) -> str:
    """A run's method as the docs name it: the strategy, with the online precision's form for kfac."""
    c = r["config"]
    if c.get("strategy") == "kfac" and c.get("kron_sum") == "nearest":
        return "kfac (nearest Kronecker)"
    return c.get("strategy")


METHOD_ORDER = ["naive", "ewc", "online-ewc", "kfac", "kfac (nearest Kronecker)"]


def _ordered(d: dict) -> dict:
    return dict(sorted(d.items(), key=lambda kv: METHOD_ORDER.index(kv[0]) if kv[0] in METHOD_ORDER else len(METHOD_ORDER)))


def _tunes(spec: dict, runs: list[dict]) -> tuple[str, dict[str, float]]:
    """One row per method: its validation accuracy at each value of the grid, the best in bold; and the
    value each method's tune chose."""
    param, fmt = spec["param"], (lambda x: f"{x:g}")  # noqa: E731
    name = (lambda r: f"{_tf_method(r)} on {_stream_of(r)}") if spec.get("task_free") else _method  # noqa: E731
    by: dict[str, dict[float, float]] = {}
    for r in runs:
        by.setdefault(name(r), {})[r["config"][param]] = r["results"]["val_metrics"]["average_accuracy"]
    by = _ordered(by)
    grid = sorted({v for m in by.values() for v in m})
    chosen = {m: max(vals, key=vals.get) for m, vals in by.items()}
    lines = ["| method | " + " | ".join(f"{spec['symbol']} = {fmt(v)}" for v in grid) + " |", "|---|" + "---|" * len(grid)]
    for m, vals in by.items():
        cells = [("–" if v not in vals else (f"**{100 * vals[v]:.2f}**" if v == chosen[m] else f"{100 * vals[v]:.2f}"))
                 for v in grid]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    what = (spec.get("what") or "Validation average accuracy (%) after the 10th task (10 % of each task's training "
            "data held out)")
    dash = " (–: the run diverged)" if spec.get("task_free") else ""
    return "\n".join(lines) + f"\n\n{what}; `lifelong tune` picks the bold value{dash}.", chosen


def _mean_std(xs: list[float]) -> str:
    import statistics

    m = 100 * statistics.mean(xs)
    text = f"{m:.2f} ± {100 * statistics.stdev(xs):.2f}" if len(xs) > 1 else f"{m:.2f}"
    return text.replace("-", "−")


def average_over_seen(R: list[list[float]]) -> list[float]:
    """Ritter et al.'s curve: after task i, the mean accuracy over tasks 1..i (rows 1.. of the matrix)."""
    return [sum(row[: i + 1]) / (i + 1) for i, row in enumerate(R[1:])]


def _curve(spec: dict, runs: list[dict]) -> str:
    """The accuracy-vs-tasks table (mean ± std over seeds at the tasks ``at``), each method's λ checked against
    its tune's choice, and the figure (written unless --check)."""
    chosen = _tunes(RECORDS["kfac-lambda"], _record_runs(RECORDS["kfac-lambda"]))[1]
    curves: dict[str, list[list[float]]] = {}
    lam: dict[str, float | None] = {}
    last: dict[str, list[dict]] = {}
    for r in runs:
        m = _method(r)
        curves.setdefault(m, []).append(average_over_seen(r["results"]["accuracy_matrix"]))
        lam[m] = r["config"].get("lam")
        last.setdefault(m, []).append(r["results"])
    for m, v in lam.items():
        if m in chosen and v != chosen[m]:
            raise SystemExit(f"{spec['file']}: {m} ran with λ = {v:g} but its tune chose λ = {chosen[m]:g}: run it again")
    curves, at = _ordered(curves), spec["at"]
    lines = ["| method | λ | " + " | ".join(f"after {t} task{'s' if t > 1 else ''}" for t in at)
             + f" | task {at[-1]} just learned | BWT after {at[-1]} | state (MB) | seeds |",
             "|---|---|" + "---|" * len(at) + "---|---|---|---|"]
    for m, cs in curves.items():
        res = last[m]
        mb = sum(x["extra_memory_bytes"] for x in res) / len(res) / 1e6
        lines.append(f"| {m} | {'–' if lam[m] is None else f'{lam[m]:g}'} | "
                     + " | ".join(_mean_std([c[t - 1] for c in cs]) for t in at)
                     + f" | {_mean_std([x['accuracy_matrix'][-1][-1] for x in res])}"
                     + f" | {_mean_std([x['metrics']['backward_transfer'] for x in res])} | {mb:.1f} | {len(cs)} |")
    if "--check" not in sys.argv[1:]:
        _plot(curves, ROOT / "docs" / spec["plot"])
    elif not (ROOT / "docs" / spec["plot"]).exists():
        raise SystemExit(f"docs/{spec['plot']} is missing: run python scripts/recorded_numbers.py")
    return ("\n".join(lines) + "\n\nCells: average test accuracy (%) over the tasks learned so far, mean ± sample std over "
            "seeds; *just learned*: the accuracy on the last task right after learning it (low: the penalty is too stiff "
            "to learn, intransigence; high with a low average: forgetting).\n\n"
            f"![average accuracy over the tasks seen against the number of tasks]({spec['plot']})")


def _plot(curves: dict[str, list[list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for m, cs in curves.items():
        a = 100 * np.array(cs)
        x = np.arange(1, a.shape[1] + 1)
        ax.plot(x, a.mean(0), label=m)
        if len(a) > 1:
            ax.fill_between(x, a.min(0), a.max(0), alpha=0.2)
    ax.axhline(90, color="gray", linestyle=":", linewidth=1)
    ax.text(50, 91.2, "Ritter et al. 2018: over 90 % after 50 tasks (abstract)", fontsize=7, color="gray", ha="right")
    ax.set_xlabel("number of tasks learned")
    ax.set_ylabel("average test accuracy over them (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


# ---- task-free streams ------------------------------------------------------------------------------
STREAM_ORDER = ["gradual split-mnist", "blurry split-mnist", "rotating-mnist", "flat permuted-mnist"]
TF_METHODS = ["naive", "ewc++", "online-ewc (running Fisher)", "mas (plateaus)", "er", "derpp", "joint"]


def _stream_of(r: dict) -> str:
    c = r["config"]
    sched = c.get("schedule")
    return c["benchmark"] if sched in (None, "rotating") else f"{sched} {c['benchmark']}"


def _tf_method(r: dict) -> str:
    c = r["config"]
    s = c.get("strategy")
    if s == "online-ewc":
        return "ewc++" if c.get("gamma") == 0 else "online-ewc (running Fisher)"
    if s == "mas" and c.get("consolidate") == "plateau":
        return "mas (plateaus)"
    return s


def _anytime(spec: dict, runs: list[dict]) -> str:
    """Per stream and method: final accuracy, AUC and curve forgetting (mean ± std over seeds); the curves
    and the schedules (figures written unless --check)."""
    by: dict[str, dict[str, list[dict]]] = {}
    for r in runs:
        by.setdefault(_stream_of(r), {}).setdefault(_tf_method(r), []).append(r)
    streams = sorted(by, key=lambda k: STREAM_ORDER.index(k) if k in STREAM_ORDER else len(STREAM_ORDER))
    lines = ["| stream | method | λ | final accuracy (%) | AUC (%) | curve forgetting (%) | consolidations | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    for st in streams:
        methods = sorted(by[st], key=lambda m: TF_METHODS.index(m) if m in TF_METHODS else len(TF_METHODS))
        for m in methods:
            rs = [r["results"] for r in by[st][m]]
            cells = [_mean_std([x["metrics"][k] for x in rs]) for k in ("final_accuracy", "auc_accuracy", "curve_forgetting")]
            cons = [len(x["consolidations"]) for x in rs if x.get("consolidations") is not None]
            lams = {r["config"].get("lam") for r in by[st][m]}
            lam = "–" if lams == {None} else ", ".join(f"{v:g}" for v in sorted(lams))
            lines.append(f"| {st} | {m} | {lam} | " + " | ".join(cells)
                         + f" | {'–' if not cons else f'{sum(cons) / len(cons):.1f}'} | {len(rs)} |")
    if "--check" not in sys.argv[1:]:
        _plot_anytime(by, streams, ROOT / "docs" / spec["plot"])
        _plot_schedules(by, streams, ROOT / "docs" / spec["schedules"])
    else:
        for f in (spec["plot"], spec["schedules"]):
            if not (ROOT / "docs" / f).exists():
                raise SystemExit(f"docs/{f} is missing: run python scripts/recorded_numbers.py")
    return ("\n".join(lines) + "\n\nCells: mean ± sample std over seeds. *Final*: accuracy on the classes (or tasks) seen, at "
            "the end; *AUC*: the area under the accuracy curve over the samples seen (Koh et al. 2022, divided by the "
            "samples); *curve forgetting*: each group's best accuracy at an earlier point minus its last, averaged; "
            "*consolidations*: how often the regularizer consolidated (mean over seeds). Joint training shuffles the "
            "whole stream (one pass): its curve is not an online learner's, its final accuracy the upper bound.\n\n"
            f"![the schedules of the task-free streams]({spec['schedules']})\n\n"
            f"![accuracy on the groups seen against the samples seen, mean over seeds]({spec['plot']})")


def _plot_anytime(by: dict, streams: list[str], path: Path) -> None:
    """Each method's mean curve over seeds, a panel per stream: compare's figure of task-free runs."""
    import numpy as np

    from lifelong.report.plots import plot_anytime_comparison

    curves, panels = {}, {}
    for st in streams:
        for m in sorted(by[st], key=lambda m: TF_METHODS.index(m) if m in TF_METHODS else len(TF_METHODS)):
            pts = [r["results"]["anytime"]["points"] for r in by[st][m]]
            a = np.array([[np.nan if p["accuracy"] is None else p["accuracy"] for p in c] for c in pts])
            label = f"{st}: {m}"
            curves[label], panels[label] = (np.array([p["samples"] for p in pts[0]]), np.nanmean(a, 0)), st
    plot_anytime_comparison(curves, path, panels=panels, title="Accuracy on the groups seen (mean over seeds)")


def _plot_schedules(by: dict, streams: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from lifelong.report.plots import _schedule_axes

    fig, axes = plt.subplots(1, len(streams), figsize=(3.4 * len(streams), 2.4), dpi=100, squeeze=False)
    for ax, st in zip(axes[0], streams):
        a = next(iter(by[st].values()))[0]["results"]["anytime"]  # seed order: the first run's schedule
        _schedule_axes(ax, np.array(a["shares"]), a["groups"], a["samples"])
        ax.set_title(f"{st} ({a['unit']} shares)", fontsize=9)
        ax.set_xlabel("training samples", fontsize=8)
        ax.set_xlim(0, a["samples"])
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def record_parts(lam: float) -> dict[str, tuple[dict, str, list[dict]]]:
    """Each record block's spec, its commands and table, and the runs shown (each record read once)."""
    parts = {}
    for name, spec in RECORDS.items():
        if not (RECORD_DIR / spec["file"]).exists():
            raise SystemExit(f"docs/data/{spec['file']} is missing: record it (see this script's docstring)")
        runs = _record_runs(spec)
        if spec["kind"] == "reproduction":
            body, runs = _reproduction(spec, runs)
        elif spec["kind"] == "comparison":
            body = _comparison(spec, runs)
        elif spec["kind"] == "tunes":
            body = _tunes(spec, runs)[0]
        elif spec["kind"] == "curve":
            body = _curve(spec, runs)
        elif spec["kind"] == "anytime":
            body = _anytime(spec, runs)
        else:
            body = _tune(spec, runs, lam)
        parts[f"record:{name}"] = (spec, f"{_commands(spec)}\n\n{body}", runs)
    return parts


def record_blocks(parts: dict[str, tuple[dict, str, list[dict]]], docs: str = "") -> dict[str, str]:
    """The record blocks' text, with links to the docs pages prefixed by ``docs``."""
    return {name: f"{head}\n\n{_source(spec, runs, docs)}" for name, (spec, head, runs) in parts.items()}


def render(text: str, made: dict[str, str]) -> str:
    for name, body in made.items():
        text = re.sub(rf"(<!-- {name}:start -->\n)(?:.*?\n)?(<!-- {name}:end -->)",  # an empty block too
                      lambda m: m.group(1) + body + "\n" + m.group(2), text, flags=re.S)
    return text


def main() -> int:
    stale, placed = [], set()
    lam = ewc_lambda(records())
    parts = record_parts(lam)
    made = {"": {**blocks(), **record_blocks(parts)}, "docs/": {**blocks("docs/"), **record_blocks(parts, "docs/")}}
    for page in PAGES:
        text = page.read_text()
        marked = set(re.findall(r"<!-- (record:[\w-]+):start -->", text))
        unknown = marked - set(made[""])
        if unknown:
            print(f"{page.name} marks {sorted(unknown)}, which scripts/recorded_numbers.py does not make", file=sys.stderr)
            return 1
        placed |= marked
        for cmd in re.findall(r"lifelong run --benchmark permuted-mnist --strategy ewc --lambda (\S+)", text):
            if float(cmd) != lam:
                print(f"{page.name} runs EWC with --lambda {cmd}, the recorded run has λ = {lam:g}", file=sys.stderr)
                return 1
        new = render(text, made["docs/" if page.name == "README.md" else ""])
        if new != text:
            stale.append(page)
            if "--check" not in sys.argv[1:]:
                page.write_text(new)
    unplaced = {k for k in made[""] if k.startswith("record:")} - placed
    if unplaced:
        print(f"no page shows {sorted(unplaced)}: place its markers or drop it from RECORDS", file=sys.stderr)
        return 1
    if "--check" in sys.argv[1:] and stale:
        print(f"stale recorded numbers in {', '.join(p.name for p in stale)}: run python scripts/recorded_numbers.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
