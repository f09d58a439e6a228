"""Hsu, Liu, Ramasamy & Kira 2018, "Re-evaluating Continual Learning Scenarios: A Categorization and
Case for Strong Baselines" (NeurIPS Continual Learning Workshop; arXiv:1810.12488), Table 2.

Split MNIST, 5 tasks of 2 classes, in the three scenarios. Their protocol, as reproduced here:
MNIST zero-padded to 32×32 and normalized with mean 0.1 and std 0.2752; an MLP 1024-400-400 with a
2-unit head per task (task-incremental, our masked heads), one shared 2-unit head (domain-incremental)
or one 10-unit head (class-incremental); 4 epochs per task, batch 128, Adam with lr 1e-3; mean ± std
over repetitions. EWC's Fisher uses the predicted label over the whole task (our ``--fisher
predicted``), online EWC accumulates one Fisher without decay (γ = 1), SI's damping is 0.1. In the
class-incremental scenario their code (``--incremental_class``) grows the head's live units task by task
(``add_valid_output_dim``): the softmax runs over the classes seen so far (our ``class_units="seen"``).

Their coefficient multiplies Σ Ω (θ − θ*)² with no ½, ours is λ/2 Σ Ω (θ − θ*)², so λ = 2 × theirs.
The coefficients are theirs (chosen by the authors); we do not tune them on the test set.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

from ..config import RunConfig

NAME = "hsu2018-split-mnist"
SCENARIOS = ("task", "domain", "class")
SCENARIO_TITLES = {"task": "Task-IL", "domain": "Domain-IL", "class": "Class-IL"}

# Table 2 of Hsu et al. 2018: (mean, std) of the final average accuracy in percent.
PUBLISHED: dict[str, dict[str, tuple[float, float]]] = {
    "naive": {"task": (93.46, 2.01), "domain": (55.16, 1.38), "class": (19.71, 0.08)},
    "l2": {"task": (98.18, 0.96), "domain": (66.00, 3.73), "class": (22.52, 1.08)},
    "ewc": {"task": (97.70, 0.81), "domain": (58.85, 2.59), "class": (19.80, 0.05)},
    "online-ewc": {"task": (98.04, 1.10), "domain": (57.33, 1.44), "class": (19.77, 0.04)},
    "si": {"task": (98.56, 0.49), "domain": (64.76, 3.09), "class": (19.67, 0.09)},
    "mas": {"task": (99.22, 0.21), "domain": (68.57, 6.85), "class": (19.52, 0.29)},
    "joint": {"task": (99.52, 0.16), "domain": (98.59, 0.15), "class": (97.53, 0.30)},
}
METHOD_TITLES = {
    "naive": "Adam (fine-tune)", "l2": "L2", "ewc": "EWC", "online-ewc": "Online EWC", "si": "SI",
    "mas": "MAS", "joint": "Offline (joint)",
}

# Their regularization coefficients (no ½), per scenario.
COEFFICIENTS: dict[str, dict[str, float]] = {
    "ewc": {"task": 100, "domain": 100, "class": 600},
    "online-ewc": {"task": 400, "domain": 700, "class": 100},
    "si": {"task": 300, "domain": 3000, "class": 600},
    "mas": {"task": 1, "domain": 10000, "class": 1},
    "l2": {"task": 0.01, "domain": 0.5, "class": 100},
}

BASE = dict(
    benchmark="split-mnist", tasks=5, pad=2, mean=0.1, std=0.2752, model="mlp", hidden=(400, 400),
    epochs=4, batch_size=128, optimizer="adam", lr=1e-3,
    class_units="seen",  # their --incremental_class: softmax over the classes seen so far (valid_out_dim)
)
# Settings of their methods besides the coefficient.
SETTINGS: dict[str, dict] = {
    "ewc": {"fisher": "predicted"},
    "online-ewc": {"fisher": "predicted", "gamma": 1.0},
    "si": {"xi": 0.1},
}


def config(method: str, scenario: str, seed: int, **overrides) -> RunConfig:
    """The RunConfig of one cell of Table 2 for one seed (λ = 2 × their coefficient)."""
    fields = dict(BASE, strategy=method, scenario=scenario, seed=seed, **SETTINGS.get(method, {}))
    if method in COEFFICIENTS:
        fields["lam"] = 2.0 * COEFFICIENTS[method][scenario]
    fields.update(overrides)
    return RunConfig.from_flat(fields).resolved()


def configs(seeds: Iterable[int], methods: Sequence[str] = tuple(PUBLISHED), scenarios: Sequence[str] = SCENARIOS, **overrides) -> list[RunConfig]:
    return [config(m, s, seed, **overrides) for s in scenarios for m in methods for seed in seeds]


def target(method: str, scenario: str) -> float:
    """The issue's bar: our mean ≥ published mean − max(2 × published std, 1 point)."""
    mean, std = PUBLISHED[method][scenario]
    return mean - max(2 * std, 1.0)


def compare_table(accuracies: Mapping[tuple[str, str], Sequence[float]]) -> list[dict]:
    """Rows of ours-vs-published per (method, scenario): ``accuracies`` maps (method, scenario) to the
    final average accuracies (fractions) of each seed."""
    rows = []
    for method in PUBLISHED:
        for scenario in SCENARIOS:
            accs = [100.0 * a for a in accuracies.get((method, scenario), [])]
            pub_mean, pub_std = PUBLISHED[method][scenario]
            if accs:
                mean = sum(accs) / len(accs)
                std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else 0.0
            else:
                mean = std = float("nan")
            rows.append({
                "method": method, "scenario": scenario, "n": len(accs), "ours_mean": mean, "ours_std": std,
                "published_mean": pub_mean, "published_std": pub_std, "difference": mean - pub_mean,
                "target": target(method, scenario), "meets_target": bool(accs) and mean >= target(method, scenario),
            })
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table: one row per method, per scenario 'ours | published | Δ' with ✓/✗ against the target."""
    head = "| method | " + " | ".join(f"{SCENARIO_TITLES[s]} ours | published | Δ" for s in SCENARIOS) + " |"
    sep = "|---|" + "---|---|---|" * len(SCENARIOS)
    lines = [head, sep]
    by = {(r["method"], r["scenario"]): r for r in rows}
    for method in PUBLISHED:
        cells = []
        for s in SCENARIOS:
            r = by[(method, s)]
            if r["n"] == 0:
                cells.append(f"– | {r['published_mean']:.2f} ± {r['published_std']:.2f} | –")
                continue
            mark = "✓" if r["meets_target"] else "✗"
            cells.append(
                f"{r['ours_mean']:.2f} ± {r['ours_std']:.2f} (n={r['n']}) | "
                f"{r['published_mean']:.2f} ± {r['published_std']:.2f} | {r['difference']:+.2f} {mark}"
            )
        lines.append(f"| {METHOD_TITLES[method]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

