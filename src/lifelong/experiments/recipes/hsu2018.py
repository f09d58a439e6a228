"""Hsu, Liu, Ramasamy & Kira 2018, "Re-evaluating Continual Learning Scenarios: A Categorization and
Case for Strong Baselines" (NeurIPS Continual Learning Workshop; arXiv:1810.12488), Table 2.

Split MNIST, 5 tasks of 2 classes, in the three scenarios. Their protocol, as reproduced here:
MNIST zero-padded to 32×32 and normalized with mean 0.1 and std 0.2752; an MLP 1024-400-400 with a
2-unit head per task (task-incremental, our masked heads), one shared 2-unit head (domain-incremental)
or one 10-unit head (class-incremental); 4 epochs per task, batch 128, Adam with lr 1e-3; mean ± std
over repetitions. Their Adam is made once and kept across tasks (``agents/default.py``:
``reset_optimizer = False``; our ``--optimizer-state keep``). EWC's Fisher uses the predicted label over the whole task (our ``--fisher
predicted``), online EWC accumulates one Fisher without decay (γ = 1), SI's damping is 0.1. In the
class-incremental scenario their code (``--incremental_class``) grows the head's live units task by task
(``add_valid_output_dim``): the softmax runs over the classes seen so far (our ``class_units="seen"``).

Their coefficient multiplies Σ Ω (θ − θ*)² with no ½, ours is λ/2 Σ Ω (θ − θ*)², so λ = 2 × theirs.
The coefficients are theirs (chosen by the authors); we do not tune them on the test set.
"""

from __future__ import annotations

import sys
from typing import Iterable, Mapping, Sequence

from ..config import RunConfig

NAME = "hsu2018-split-mnist"
SCENARIOS = ("task", "domain", "class")
SCENARIO_TITLES = {"task": "Task-IL", "domain": "Domain-IL", "class": "Class-IL"}

# Table 2 of Hsu et al. 2018: (mean, std) of the final average accuracy in percent (10 runs).
PUBLISHED: dict[str, dict[str, tuple[float, float]]] = {
    "naive": {"task": (93.46, 2.01), "domain": (55.16, 1.38), "class": (19.71, 0.08)},
    "l2": {"task": (98.18, 0.96), "domain": (66.00, 3.73), "class": (22.52, 1.08)},
    "ewc": {"task": (97.70, 0.81), "domain": (58.85, 2.59), "class": (19.80, 0.05)},
    "online-ewc": {"task": (98.04, 1.10), "domain": (57.33, 1.44), "class": (19.77, 0.04)},
    "si": {"task": (98.56, 0.49), "domain": (64.76, 3.09), "class": (19.67, 0.09)},
    "mas": {"task": (99.22, 0.21), "domain": (68.57, 6.85), "class": (19.52, 0.29)},
    "lwf": {"task": (99.60, 0.03), "domain": (71.02, 1.26), "class": (24.17, 0.33)},
    "gem": {"task": (98.42, 0.10), "domain": (96.16, 0.35), "class": (92.20, 0.12)},
    "rehearsal-1100": {"task": (99.40, 0.08), "domain": (95.16, 0.49), "class": (90.78, 0.85)},
    "rehearsal-4400": {"task": (99.57, 0.07), "domain": (97.11, 0.34), "class": (95.59, 0.49)},
    "joint": {"task": (99.52, 0.16), "domain": (98.59, 0.15), "class": (97.53, 0.30)},
}
SPREAD, N_PUBLISHED = "std", 10
TITLES = {
    "naive": "Adam (fine-tune)", "l2": "L2", "ewc": "EWC", "online-ewc": "Online EWC", "si": "SI",
    "mas": "MAS", "lwf": "LwF", "gem": "GEM (memory 1100)", "rehearsal-1100": "Naive rehearsal (1100)",
    "rehearsal-4400": "Naive rehearsal-C (4400)", "joint": "Offline (joint)",
}
METHOD_TITLES = TITLES

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
    optimizer_state="keep",  # their agents/default.py: reset_optimizer = False, one optimizer for the stream
)
# their --incremental_class: in the class scenario, a softmax over the classes seen so far (valid_out_dim)
CLASS_SCENARIO = dict(class_units="seen")
# Each row: its strategy and what it sets besides BASE (settings and run fields).
ROWS: dict[str, dict] = {
    "naive": {"strategy": "naive"},
    "l2": {"strategy": "l2"},
    "ewc": {"strategy": "ewc", "fisher": "predicted"},
    "online-ewc": {"strategy": "online-ewc", "fisher": "predicted", "gamma": 1.0},
    "si": {"strategy": "si", "xi": 0.1},
    "mas": {"strategy": "mas"},
    # Their LwF row is not in their code (GT-RIPL/Continual-Learning-Benchmark); its numbers match van de
    # Ven & Tolias's LwF (T = 2, losses weighted 1/t and 1 - 1/t), which is what runs here, in this protocol.
    "lwf": {"strategy": "lwf", "temperature": 2.0, "lwf_weighting": "tasks"},
    # agents/exp_replay.py GEM_1100: SGD lr 0.01 (their scripts), margin (reg_coef) 0.5, memory split
    # equally between the tasks seen, each task's whole memory a constraint every step; their GEM subclasses
    # Naive_Rehearsal without skipping its concatenation, so the memory also joins the training set
    "gem": {"strategy": "gem", "memory": 1100, "policy": "task", "margin": 0.5, "mixing": "concat",
            "optimizer": "sgd", "lr": 0.01},
    # agents/exp_replay.py Naive_Rehearsal_1100 / _4400: memory split equally between the tasks seen,
    # repeated so that old and new data are about 1:1, concatenated with the task's data and shuffled
    "rehearsal-1100": {"strategy": "er", "memory": 1100, "policy": "task", "mixing": "concat"},
    "rehearsal-4400": {"strategy": "er", "memory": 4400, "policy": "task", "mixing": "concat"},
    "joint": {"strategy": "joint"},
}
# (kept for callers of version 0.2: the settings of each method besides the coefficient)
SETTINGS: dict[str, dict] = {k: {f: v for f, v in r.items() if f != "strategy"} for k, r in ROWS.items()}


def config(method: str, scenario: str, seed: int, **overrides) -> RunConfig:
    """The RunConfig of one cell of Table 2 for one seed (λ = 2 × their coefficient)."""
    fields = dict(BASE, scenario=scenario, seed=seed, **ROWS[method], **(CLASS_SCENARIO if scenario == "class" else {}))
    if method in COEFFICIENTS:
        fields["lam"] = 2.0 * COEFFICIENTS[method][scenario]
    fields.update(overrides)
    return RunConfig.from_flat(fields).resolve()


def configs(seeds: Iterable[int], methods: Sequence[str] = tuple(PUBLISHED), scenarios: Sequence[str] = SCENARIOS,
            **overrides) -> list[tuple[str, RunConfig]]:
    """(row, config) of every cell and seed."""
    return [(m, config(m, s, seed, **overrides)) for s in scenarios for m in methods for seed in seeds]


def target(method: str, scenario: str) -> float:
    """The issue's bar: our mean ≥ published mean − max(2 × published std, 1 point)."""
    from . import table

    return table.target(sys.modules[__name__], method, scenario)


def compare_table(accuracies: Mapping[tuple[str, str], Sequence[float]], methods: Sequence[str] | None = None) -> list[dict]:
    from . import table

    return table.compare_table(sys.modules[__name__], accuracies, methods)


def format_table(rows: list[dict]) -> str:
    from . import table

    return table.format_table(sys.modules[__name__], rows)
