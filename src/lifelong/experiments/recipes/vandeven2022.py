"""van de Ven, Tuytelaars & Tolias 2022, "Three types of incremental learning" (Nature Machine
Intelligence 4, 1185-1197), Table 2: split MNIST, class-incremental, mean ± SEM over 20 seeds.

Their protocol, from their code (GMvandeVen/continual-learning, ``params/param_values.py`` and
``params/options.py``), as reproduced here: MNIST 28×28 in [0, 1], not normalized; the ten digits
assigned to the five tasks in a random order drawn anew for every seed (``--shuffle-classes``); an MLP
784-400-400-10 with ReLU; 2000 iterations per task, batch 128, Adam lr 1e-3 (one optimizer for the
whole stream); every output unit live
from the start (their default ``--active-classes all``: our ``class_units="all"``).

- EWC: λ = 10⁹ (their ``reg_strength`` multiplies ½ Σ F (θ − θ*)², as our λ), the Fisher over all
  training samples of the task with every label weighted by the model's probability (our ``--fisher
  exact``), one term per task.
- SI: c = 5000 multiplies Σ Ω (θ − θ*)² without ½, so λ = 2c = 10⁴; damping ξ = 0.1.
- LwF: distillation at temperature 2 on the current inputs, losses weighted 1/t and 1 − 1/t.
- ER: 100 samples per class chosen at random at each task's end; each step adds a batch of 128 memory
  samples; losses weighted 1/t (current) and 1 − 1/t (replay).
- A-GEM: the same memory; the reference batch is 128 memory samples (their replay batch).
- Joint: our cumulative joint training (each task trains on all data so far, 2000 iterations), where
  theirs trains once on all data; None: fine-tuning.

Adam is made once for the whole stream, as theirs (``--optimizer-state keep``). Known differences
that remain: their class-to-task draws come from NumPy's generator, ours from our seeded one (the same
distribution, other draws); their SI path integral uses the gradient of the whole loss, ours the task
loss's (Zenke et al.'s definition).
"""

from __future__ import annotations

import sys
from typing import Iterable, Mapping, Sequence

from ..config import RunConfig

NAME = "vandeven2022-split-mnist"
SCENARIOS = ("class",)
SCENARIO_TITLES = {"class": "Class-IL"}

# Table 2 of van de Ven et al. 2022, split MNIST, class-incremental: (mean, SEM) over 20 seeds.
PUBLISHED: dict[str, dict[str, tuple[float, float]]] = {
    "naive": {"class": (19.89, 0.02)},
    "joint": {"class": (98.17, 0.04)},
    "ewc": {"class": (20.64, 0.52)},
    "si": {"class": (21.20, 0.57)},
    "lwf": {"class": (21.89, 0.32)},
    "er": {"class": (88.79, 0.20)},
    "agem": {"class": (65.10, 3.64)},
}
SPREAD, N_PUBLISHED = "SEM", 20
TITLES = {"naive": "None (fine-tune)", "joint": "Joint", "ewc": "EWC", "si": "SI", "lwf": "LwF",
          "er": "ER (100 per class)", "agem": "A-GEM (100 per class)"}

BASE = dict(
    benchmark="split-mnist", tasks=5, shuffle_classes=True, model="mlp", hidden=(400, 400), iterations=2000,
    batch_size=128, optimizer="adam", lr=1e-3, class_units="all",
    optimizer_state="keep",  # their Adam is made once (optim_type "adam", not "adam_reset")
)
ROWS: dict[str, dict] = {
    "naive": {"strategy": "naive"},
    "joint": {"strategy": "joint"},
    "ewc": {"strategy": "ewc", "lam": 1e9, "fisher": "exact"},
    "si": {"strategy": "si", "lam": 1e4, "xi": 0.1},
    "lwf": {"strategy": "lwf", "temperature": 2.0, "lwf_weighting": "tasks"},
    "er": {"strategy": "er", "policy": "class", "per_class": 100, "weighting": "tasks"},
    "agem": {"strategy": "agem", "policy": "class", "per_class": 100, "ref_batch": 128},
}


def config(method: str, scenario: str, seed: int, **overrides) -> RunConfig:
    """The RunConfig of one cell of Table 2 for one seed."""
    fields = dict(BASE, scenario=scenario, seed=seed, **ROWS[method])
    fields.update(overrides)
    return RunConfig.from_flat(fields).resolve()


def configs(seeds: Iterable[int], methods: Sequence[str] = tuple(PUBLISHED), scenarios: Sequence[str] = SCENARIOS,
            **overrides) -> list[tuple[str, RunConfig]]:
    """(row, config) of every cell and seed."""
    return [(m, config(m, s, seed, **overrides)) for s in scenarios for m in methods for seed in seeds]


def compare_table(accuracies: Mapping[tuple[str, str], Sequence[float]], methods: Sequence[str] | None = None) -> list[dict]:
    from . import table

    return table.compare_table(sys.modules[__name__], accuracies, methods)


def format_table(rows: list[dict]) -> str:
    from . import table

    return table.format_table(sys.modules[__name__], rows)
