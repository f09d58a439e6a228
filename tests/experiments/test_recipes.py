"""Reproduction runs on full MNIST (slow: `python -m pytest -m slow`, about 5 minutes here).

The README's permuted-MNIST table: 10 tasks, MLP 784-400-400-10, one epoch per task, batch 128, Adam
lr 1e-3, seed 0; EWC's λ = 30 was chosen by `lifelong tune` on a validation split (docs/results.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lifelong.cli import main

DATA = os.environ.get("LIFELONG_DATA_DIR", str(Path(__file__).parents[2] / "shared" / "data"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (Path(DATA) / "mnist").exists(), reason="full MNIST not found; set LIFELONG_DATA_DIR"),
]


def run(strategy: str, tmp_path, *extra: str) -> dict:
    return main(["run", "--benchmark", "permuted-mnist", "--strategy", strategy, "--data-dir", DATA,
                 "--no-progress", "--out", str(tmp_path / strategy), *extra])


def test_permuted_mnist_naive_ewc_joint(tmp_path):
    naive = run("naive", tmp_path)
    ewc = run("ewc", tmp_path, "--lambda", "30")  # the λ lifelong tune chose (docs/results.md)
    joint = run("joint", tmp_path)
    acc = {k: r["metrics"]["average_accuracy"] for k, r in (("naive", naive), ("ewc", ewc), ("joint", joint))}
    bwt = {k: r["metrics"]["backward_transfer"] for k, r in (("naive", naive), ("ewc", ewc), ("joint", joint))}
    print({k: round(100 * v, 2) for k, v in acc.items()}, {k: round(100 * v, 2) for k, v in bwt.items()})
    assert acc["ewc"] > acc["naive"] + 0.05  # EWC clearly beats fine-tuning
    assert bwt["ewc"] > bwt["naive"] + 0.05  # because it forgets less
    assert acc["joint"] > acc["ewc"]  # joint training is the ceiling
    assert np.array(ewc["accuracy_matrix"]).shape == (11, 10)


def test_hsu2018_split_mnist_table2(tmp_path):
    """Hsu et al. 2018, Table 2, all 11 rows, 5 seeds (about an hour here with 2 workers, GEM half of it): every
    cell of ours is at least the published mean minus max(2 × published std, 1 point) (docs/reproductions.md,
    rendered from the record docs/data/hsu2018-split-mnist.json)."""
    res = main(["reproduce", "hsu2018-split-mnist", "--seeds", "5", "--workers", "2", "--threads", "1",
                "--data-dir", DATA, "--out", str(tmp_path / "hsu")])
    missed = [(r["method"], r["scenario"], round(r["ours_mean"], 2)) for r in res["rows"] if not r["meets_target"]]
    assert not res["failed"]
    assert not missed, missed


def test_hsu2018_replay_rows(tmp_path):
    """Hsu et al. 2018, Table 2, the replay and distillation rows (LwF, GEM, naive rehearsal 1100 and
    4400), 5 seeds: `lifelong reproduce hsu2018-split-mnist --methods lwf,gem,rehearsal-1100,rehearsal-4400
    --seeds 5 --workers 2` (about an hour here, GEM most of it). Every cell meets the bar (3 GEM seeds and 5 of
    the others measured for the README)."""
    res = main(["reproduce", "hsu2018-split-mnist", "--methods", "lwf,gem,rehearsal-1100,rehearsal-4400", "--seeds", "5",
                "--workers", "2", "--threads", "1", "--data-dir", DATA, "--out", str(tmp_path / "hsu")])
    assert not res["failed"]
    missed = {(r["method"], r["scenario"]) for r in res["rows"] if not r["meets_target"]}
    assert missed <= KNOWN_HSU_REPLAY_MISSES, missed


def test_vandeven2022_split_mnist_class_il(tmp_path):
    """van de Ven et al. 2022, Table 2, split MNIST class-IL, 5 seeds:
    `lifelong reproduce vandeven2022-split-mnist --seeds 5 --workers 2` (about 30 minutes here)."""
    res = main(["reproduce", "vandeven2022-split-mnist", "--seeds", "5", "--workers", "2", "--threads", "1",
                "--data-dir", DATA, "--out", str(tmp_path / "vdv")])
    assert not res["failed"]
    missed = {r["method"] for r in res["rows"] if not r["meets_target"]}
    assert missed <= KNOWN_VDV_MISSES, missed
    acc = {r["method"]: r["ours_mean"] for r in res["rows"]}
    assert acc["er"] > acc["agem"] > acc["lwf"] - 5 and acc["er"] > 80 and acc["naive"] < 21  # replay is what works


# cells that miss the bar, with the reason in the README (filled in from the measured tables)
KNOWN_HSU_REPLAY_MISSES: set[tuple[str, str]] = set()
KNOWN_VDV_MISSES: set[str] = set()
