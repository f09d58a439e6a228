"""Ours beside theirs: the comparison table every recipe prints.

A recipe module names its rows (``PUBLISHED``: row -> scenario -> (mean, spread)), their titles
(``TITLES``), its scenarios (``SCENARIOS``, ``SCENARIO_TITLES``), what its spread is (``SPREAD``: "std"
or "SEM", with ``N_PUBLISHED`` runs behind each published number) and ``config(row, scenario, seed)``.
The pass rule is the same everywhere: ours ≥ published − max(2 std, 1 point), the published std being
SEM·√n where the paper gives the standard error of the mean.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence


def published_std(recipe, row: str, scenario: str) -> float:
    _, spread = recipe.PUBLISHED[row][scenario]
    return spread * math.sqrt(recipe.N_PUBLISHED) if recipe.SPREAD == "SEM" else spread


def target(recipe, row: str, scenario: str) -> float:
    """The bar: our mean ≥ published mean − max(2 × published std, 1 point)."""
    mean, _ = recipe.PUBLISHED[row][scenario]
    return mean - max(2 * published_std(recipe, row, scenario), 1.0)


def summary(accs: Sequence[float], spread: str) -> tuple[float, float]:
    """(mean, std or SEM) of accuracies in percent; the spread is 0 for one run."""
    n = len(accs)
    if not n:
        return float("nan"), float("nan")
    mean = sum(accs) / n
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (n - 1)) if n > 1 else 0.0
    return mean, std / math.sqrt(n) if spread == "SEM" else std


def compare_table(recipe, accuracies: Mapping[tuple[str, str], Sequence[float]], rows: Sequence[str] | None = None,
                  scenarios: Sequence[str] | None = None) -> list[dict]:
    """One dict per (row, scenario) of ``recipe``: ``accuracies`` maps (row, scenario) to each seed's final
    average accuracy (a fraction)."""
    out = []
    for row in rows or list(recipe.PUBLISHED):
        for scenario in scenarios or recipe.SCENARIOS:
            if scenario not in recipe.PUBLISHED[row]:
                continue
            accs = [100.0 * a for a in accuracies.get((row, scenario), [])]
            mean, spread = summary(accs, recipe.SPREAD)
            pub_mean, pub_spread = recipe.PUBLISHED[row][scenario]
            bar = target(recipe, row, scenario)
            out.append({
                "method": row, "scenario": scenario, "n": len(accs), "ours_mean": mean, f"ours_{recipe.SPREAD.lower()}": spread,
                "published_mean": pub_mean, f"published_{recipe.SPREAD.lower()}": pub_spread,
                "difference": mean - pub_mean, "target": bar, "meets_target": bool(accs) and mean >= bar,
            })
    return out


def format_table(recipe, rows: list[dict]) -> str:
    """Markdown: one line per row, per scenario 'ours | published | Δ' with ✓/✗ against the target."""
    sp = recipe.SPREAD.lower()
    scenarios = [s for s in recipe.SCENARIOS if any(r["scenario"] == s for r in rows)]
    head = "| method | " + " | ".join(f"{recipe.SCENARIO_TITLES[s]} ours | published | Δ" for s in scenarios) + " |"
    lines = [head, "|---|" + "---|---|---|" * len(scenarios)]
    by = {(r["method"], r["scenario"]): r for r in rows}
    for row in dict.fromkeys(r["method"] for r in rows):
        cells = []
        for s in scenarios:
            r = by.get((row, s))
            if r is None:
                cells.append("| |")
                continue
            pub = f"{r['published_mean']:.2f} ± {r[f'published_{sp}']:.2f}"
            if r["n"] == 0:
                cells.append(f"– | {pub} | –")
                continue
            mark = "✓" if r["meets_target"] else "✗"
            cells.append(f"{r['ours_mean']:.2f} ± {r[f'ours_{sp}']:.2f} (n={r['n']}) | {pub} | {r['difference']:+.2f} {mark}")
        lines.append(f"| {recipe.TITLES[row]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
