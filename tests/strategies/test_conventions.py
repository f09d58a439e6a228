"""Loss conventions of the reference codes, as settings (issue: "Any paper's protocol"): the penalty
without the ½ (``convention='no-half'``) and iCaRL's binary cross-entropy averaged over the output units
(``bce='mean'``). Each is an identity with the library's own convention, checked for every strategy that
has the setting; a setting added this way leaves the ids of runs made before it alone."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lifelong.experiments.config import RunConfig
from lifelong.scenarios import batches
from lifelong.settings import meta
from lifelong.strategies import STRATEGIES
from tests.strategies.test_contract import learner, made, train

pytestmark = pytest.mark.usefixtures("one_thread")

WITH_CONVENTION = [n for n, cls in STRATEGIES.items() if "convention" in {f.name for f in dataclasses.fields(cls.Settings)}]


def test_every_importance_regularizer_has_the_convention():
    assert set(WITH_CONVENTION) == {"ewc", "online-ewc", "kfac", "si", "mas", "rwalk", "l2"}


@pytest.mark.parametrize("name", WITH_CONVENTION)
def test_no_half_with_lambda_is_half_with_twice_lambda(name):
    """λ Σ Ω (θ − θ*)² = (2λ)/2 Σ Ω (θ − θ*)²: the penalty and its gradient, mid-way through task 2, and
    the whole run to the bit (the same arithmetic)."""
    runs = {}
    for key, settings in (("no-half", {"lam": 3.0, "convention": "no-half"}), ("half", {"lam": 6.0})):
        cl = learner(made(name, settings), "class")
        assert not train(cl, stop_at=(1, 2))
        x, y, *_ = next(batches([cl.stream[1]], "train", batch_size=32))
        cl.model.zero_grad(set_to_none=True)
        penalty = cl.strategy.penalty(cl.ctx)
        penalty.backward()
        runs[key] = (penalty.detach(), [p.grad.clone() for p in cl.model.parameters() if p.grad is not None])
    (a, ga), (b, gb) = runs["no-half"], runs["half"]
    assert a > 0 and torch.equal(a, b) and all(torch.equal(u, v) for u, v in zip(ga, gb))


def test_icarl_mean_bce_is_the_sum_over_the_live_units_divided_by_their_number():
    losses = {}
    for bce in ("sum", "mean"):
        cl = learner(made("icarl", {"memory": 40, "bce": bce}), "class")
        assert not train(cl, stop_at=(1, 2))
        batch = next(iter(cl.batches()))
        cl.loss(batch)
        losses[bce] = cl.pending.losses["task"].detach()
        live = cl.ctx.heads.live(batch.task, cl.ctx.task_index)
        units = live.sum(1).double() if live is not None else torch.full((len(batch.y),), float(cl.stream.n_outputs))
    assert len(set(units.tolist())) == 1  # one task's batch: every sample has the same live units
    torch.testing.assert_close(losses["mean"].double() * units[0], losses["sum"].double(), rtol=1e-6, atol=0)


#: a valid use of each added setting that has no choices (the boundary-free consolidation's; they need
#: their mode)
USES = {"consolidate_every": {"consolidate": "steps", "consolidate_every": 5},
        "importance_every": {"importance_every": 5}, "importance_decay": {"importance_every": 5, "importance_decay": 0.5},
        "plateau_window": {"consolidate": "plateau", "plateau_window": 3},
        "plateau_mean": {"consolidate": "plateau", "plateau_mean": 0.5},
        "plateau_var": {"consolidate": "plateau", "plateau_var": 0.5}}
CONSOLIDATION = ("consolidate", *USES)
WITH_CONSOLIDATION = [n for n, cls in STRATEGIES.items() if "consolidate" in {f.name for f in dataclasses.fields(cls.Settings)}]


def added_settings() -> list[tuple[str, str, dict]]:
    out = []
    for name, cls in STRATEGIES.items():
        for f in dataclasses.fields(cls.Settings):
            if meta(f)["added"]:
                use = USES.get(f.name) or {f.name: next(c for c in meta(f)["choices"] if c != f.default)}
                out.append((name, f.name, use))
    return out


@pytest.mark.parametrize("name, field, other", added_settings())
def test_a_setting_added_later_changes_the_run_id_only_when_it_is_used(name, field, other):
    base = RunConfig.make(benchmark="split-mnist", strategy=name).resolve()
    same = RunConfig.make(benchmark="split-mnist", strategy=name, **{field: base.strategy.as_dict()[field]}).resolve()
    used = RunConfig.make(benchmark="split-mnist", strategy=name, **other).resolve()
    assert field not in base.method_record()["settings"]  # runs made before it keep their ids
    assert same.method_record() == base.method_record()
    assert used.method_record() != base.method_record() and used.method_record()["settings"][field] == other[field]


def test_the_added_settings_are_the_conventions_and_the_boundary_free_consolidation():
    assert {(n, f) for n, f, _ in added_settings()} == {
        *((n, "convention") for n in WITH_CONVENTION), ("icarl", "bce"),
        *((n, f) for n in WITH_CONSOLIDATION for f in CONSOLIDATION)}
    assert set(WITH_CONSOLIDATION) == {"ewc", "online-ewc", "mas"}
