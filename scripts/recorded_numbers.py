"""The numbers the README and docs/results.md show, made from recorded runs (one source): the
results.json of each run, committed in docs/data/, rendered into the pages between
``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers. ``--check`` exits 1 when a page's text differs
from what the records give (a test runs it); without it the pages are rewritten.

Record again (about 3 minutes per run on 2 cores) with, for each strategy S of RUNS:
    lifelong run --benchmark permuted-mnist --strategy S ... --threads 2 --data-dir DATA --out runs/S
    cp runs/S/results.json docs/data/permuted-mnist/S.json
then ``python scripts/recorded_numbers.py``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "data" / "permuted-mnist"
PAGES = [ROOT / "README.md", ROOT / "docs" / "results.md", ROOT / "docs" / "getting-started.md"]
RUNS = [("naive", "naive (fine-tuning)", "--strategy naive"), ("ewc", "EWC, λ = 100", "--strategy ewc --lambda 100"),
        ("joint", "joint (upper bound)", "--strategy joint")]


def _pct(v, sign: bool = False) -> str:
    if v is None:
        return "n/a"
    v = 0.0 if round(100 * v, 2) == 0 else v  # no "−0.00"
    return (f"{100 * v:+.2f}" if sign else f"{100 * v:.2f}").replace("-", "−")


def records() -> dict[str, dict]:
    return {name: json.loads((DATA / f"{name}.json").read_text()) for name, _, _ in RUNS}


def blocks(docs: str = "") -> dict[str, str]:
    """Each marked block's text, from the records (``docs``: the prefix of links to the docs pages)."""
    from lifelong.cli.run import summary_line
    from lifelong.train import RunResult

    recs = records()
    rows = ["| strategy | final average accuracy | BWT | forgetting | FWT | task 1 at the end |", "|---|---|---|---|---|---|"]
    for name, label, _ in RUNS:
        r = recs[name]
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
            "example-line": f"```\n{line}\n```"}


def render(text: str, made: dict[str, str]) -> str:
    for name, body in made.items():
        text = re.sub(rf"(<!-- {name}:start -->\n).*?(\n<!-- {name}:end -->)",
                      lambda m: m.group(1) + body + m.group(2), text, flags=re.S)
    return text


def main() -> int:
    stale = []
    for page in PAGES:
        text = page.read_text()
        new = render(text, blocks("docs/" if page.name == "README.md" else ""))
        if new != text:
            stale.append(page)
            if "--check" not in sys.argv[1:]:
                page.write_text(new)
    if "--check" in sys.argv[1:] and stale:
        print(f"stale recorded numbers in {', '.join(p.name for p in stale)}: run python scripts/recorded_numbers.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
