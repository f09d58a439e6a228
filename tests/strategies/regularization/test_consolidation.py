"""The boundary-free consolidation (lifelong.strategies.regularization.consolidation): the plateau detector
on synthetic loss curves, the running importance (EWC++) against a brute-force per-sample Fisher, and the
detector as the strategy runs it (consolidating exactly where the pure function says)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lifelong.strategies import STRATEGIES
from lifelong.strategies.regularization.consolidation import Plateau, plateau_step
from lifelong.train import Learner, TrainSettings
from tests.helpers import tiny_model, tiny_stream, user_step

pytestmark = pytest.mark.usefixtures("one_thread")


def hits(losses, length=3, mean=0.2, var=0.1) -> list[int]:
    state, out = Plateau(), []
    for i, v in enumerate(losses):
        state, hit = plateau_step(state, v, length, mean, var)
        if hit:
            out.append(i)
    return out


def test_a_plateau_after_a_fall_is_found_once_until_the_loss_rises_again():
    curve = [2.0, 1.5, 1.0, 0.15, 0.1, 0.12, 0.11, 0.1, 0.11, 1.5, 1.6, 1.4, 0.1, 0.1, 0.1, 0.1]
    # window [0.15, 0.1, 0.12] at 5: mean 0.123, var 0.0004; then quiet (no peak) until the rise at 9-11
    assert hits(curve) == [5, 14]


def test_a_high_flat_loss_and_a_noisy_low_one_are_no_plateaus():
    assert hits([1.0] * 30) == []
    noisy = [0.0, 0.35] * 10  # window mean 0.12-0.23, variance 0.027-0.03
    assert hits(noisy, var=0.01) == []
    assert hits(noisy, var=0.05) != []  # the variance gate is what held it


def test_the_window_must_be_full_and_the_peak_must_clear_the_last_plateau_by_its_std():
    assert hits([0.1, 0.1]) == []  # two blocks of three
    # a plateau at mean 0.11 (std 0.01): window means 0.115 and 0.12 are within one std (no peak, no
    # plateau); 0.135 clears it, and since it is low and quiet it is the next plateau at once (the reference
    # code sets the peak and tests for a plateau in the same update)
    assert hits([0.1, 0.12, 0.11, 0.13, 0.14], length=2) == [1, 4]
    # after a plateau with no spread at all, any rise is a peak
    assert hits([0.1, 0.1, 0.1, 0.15, 0.15, 0.15], length=3) == [2, 3, 5]


def exact_fisher(model, x, y_unused, mask=None) -> dict[str, torch.Tensor]:
    """Brute force: mean over samples of Σ_c p_c (∂ log p_c / ∂θ)², one sample and one class at a time."""
    params = dict(model.named_parameters())
    out = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
    for i in range(len(x)):
        logp = F.log_softmax(model(x[i : i + 1]), 1)[0]
        for c in range(logp.shape[0]):
            g = torch.autograd.grad(logp[c], list(params.values()), retain_graph=True)
            for (n, _), gi in zip(params.items(), g):
                out[n] += float(logp[c].detach().exp()) * gi.double() ** 2
    return {n: v / len(x) for n, v in out.items()}


def test_the_running_fisher_is_the_exponential_average_of_brute_force_batch_fishers():
    s = tiny_stream("split-mnist", "class", 2, schedule="flat", train_samples=40, eval_per_group=5)
    a, g = 0.3, 0.8
    strat = STRATEGIES["online-ewc"](lam=1.0, gamma=g, consolidate="steps", consolidate_every=2, importance_every=1,
                                     importance_decay=a)
    cl = Learner(tiny_model(s), strat, s, settings=TrainSettings(batch_size=6), seed=0)
    cl.start_task(0)
    opt = cl.optimizer = torch.optim.SGD(cl.parameters(), lr=0.1)
    want_run, want_imp, anchors = None, None, None
    for k, batch in enumerate(cl.batches()):
        user_step(cl, opt, batch)
        own = batch.select(batch.rows(0))
        Fk = exact_fisher(cl.model, own.x, own.y)
        want_run = Fk if want_run is None else {n: a * Fk[n] + (1 - a) * want_run[n] for n in Fk}
        for n in Fk:
            torch.testing.assert_close(strat.running[n].double(), want_run[n], rtol=1e-4, atol=1e-9)
        if (k + 1) % 2 == 0:  # a consolidation: Ω ← γ Ω + Ω̃, anchored here
            want_imp = dict(want_run) if want_imp is None else {n: g * want_imp[n] + want_run[n] for n in Fk}
            anchors = {n: p.detach().clone() for n, p in cl.model.named_parameters()}
            for n in Fk:
                torch.testing.assert_close(strat.state["importance"][n].double(), want_imp[n], rtol=1e-4, atol=1e-9)
                assert torch.equal(strat.state["anchor"][n], anchors[n])
        if k == 5:
            break
    assert strat.consolidations() == [2, 4, 6]


def test_the_strategy_consolidates_where_the_detector_says_on_its_block_means():
    s = tiny_stream("split-mnist", "class", 2, schedule="gradual", train_samples=100, eval_per_group=5)
    K, W = 3, 2
    strat = STRATEGIES["mas"](lam=0.1, consolidate="plateau", importance_every=K, plateau_window=W, plateau_mean=1.5,
                              plateau_var=0.5)
    cl = Learner(tiny_model(s), strat, s, settings=TrainSettings(batch_size=5), seed=0)
    cl.start_task(0)
    opt = cl.optimizer = torch.optim.SGD(cl.parameters(), lr=0.1)
    losses = []
    for batch in cl.batches():
        losses.append(float(user_step(cl, opt, batch).detach()))
    blocks = [sum(losses[i : i + K]) / K for i in range(0, len(losses) - K + 1, K)]
    want = [(b + 1) * K for b in hits(blocks, W, 1.5, 0.5)]
    assert want, "the synthetic thresholds should let the detector fire on this stream"
    assert strat.consolidations() == want


def test_with_task_boundaries_a_running_fisher_is_what_the_task_end_consolidates():
    """EWC++ proper: importance_every > 0 with consolidate='task' merges the running Fisher at θ* instead of
    a pass over the task's data."""
    s = tiny_stream("split-mnist", "task", 2, train_samples=30)
    strat = STRATEGIES["ewc"](lam=1.0, importance_every=2)
    cl = Learner(tiny_model(s), strat, s, settings=TrainSettings(batch_size=10), seed=0)
    cl.start_task(0)
    opt = cl.optimizer = torch.optim.SGD(cl.parameters(), lr=0.1)
    for batch in cl.batches():
        user_step(cl, opt, batch)
    running = {n: t.clone() for n, t in strat.running.items()}
    theta = {n: p.detach().clone() for n, p in cl.model.named_parameters()}
    cl.end_task()
    assert running and strat.consolidations() is None
    for n in running:
        assert torch.equal(strat.state["importance"][n], running[n]) and torch.equal(strat.state["anchor"][n], theta[n])
