"""Identities of the quadratic penalty and of the EWC merge rules, in float64."""

from __future__ import annotations

import pytest
import torch

from lifelong.penalties import (
    empty_state,
    merge_decay,
    merge_sum,
    quadratic_penalty,
    quadratic_penalty_reference,
    state_from_tensors,
    state_tensors,
)

SHAPES = {"w1": (5, 3), "b1": (5,), "w2": (2, 5)}


def rand_params(seed: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: scale * torch.randn(s, generator=g, dtype=torch.float64) for n, s in SHAPES.items()}


def rand_importance(seed: int, zero_fraction: float = 0.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n, s in SHAPES.items():
        f = torch.rand(s, generator=g, dtype=torch.float64)
        out[n] = torch.where(torch.rand(s, generator=g, dtype=torch.float64) < zero_fraction, 0.0, f)
    return out


def leaf(params):
    return {n: p.clone().requires_grad_(True) for n, p in params.items()}


def value_and_grad(fn, params):
    p = leaf(params)
    v = fn(p)
    grads = torch.autograd.grad(v, list(p.values()))
    return v.detach(), dict(zip(p, grads))


@pytest.mark.parametrize("lam", [0.0, 1.0, 37.5])
def test_penalty_and_gradient_are_zero_at_the_anchor(lam):
    anchor = rand_params(0)
    state = merge_sum(empty_state(), rand_importance(1), anchor)
    v, g = value_and_grad(lambda p: quadratic_penalty(p, state, lam), anchor)
    assert v == 0
    assert all(torch.count_nonzero(t) == 0 for t in g.values())


def test_all_ones_importance_is_half_squared_distance():
    theta, anchor = rand_params(2), rand_params(3)
    ones = {n: torch.ones(s, dtype=torch.float64) for n, s in SHAPES.items()}
    state = merge_sum(empty_state(), ones, anchor)
    expected = 0.5 * sum(((theta[n] - anchor[n]) ** 2).sum() for n in SHAPES)
    v, g = value_and_grad(lambda p: quadratic_penalty(p, state, 1.0), theta)
    torch.testing.assert_close(v, expected, rtol=1e-14, atol=0)
    for n in SHAPES:  # d/dθ ½‖θ−θ*‖² = θ − θ*
        torch.testing.assert_close(g[n], theta[n] - anchor[n], rtol=1e-14, atol=0)


def test_fast_penalty_matches_the_plain_reference():
    theta = rand_params(4)
    state = merge_sum(merge_sum(empty_state(), rand_importance(5), rand_params(6)), rand_importance(7), rand_params(8))
    v, g = value_and_grad(lambda p: quadratic_penalty(p, state, 3.0), theta)
    v_ref, g_ref = value_and_grad(lambda p: quadratic_penalty_reference(p, state, 3.0), theta)
    torch.testing.assert_close(v, v_ref, rtol=1e-13, atol=0)
    for n in SHAPES:
        torch.testing.assert_close(g[n], g_ref[n], rtol=1e-13, atol=1e-15)


def separate_terms(params, fishers, anchors, lam):
    """Σ_t λ/2 Σ_i F_t,i (θ_i − θ*_t,i)²: T separate EWC penalties, written out."""
    return sum(
        0.5 * lam * sum((f[n] * (params[n] - a[n]) ** 2).sum() for n in SHAPES) for f, a in zip(fishers, anchors)
    )


@pytest.mark.parametrize("T", [1, 2, 5, 12])
@pytest.mark.parametrize("zero_fraction", [0.0, 0.3])
def test_merged_state_equals_T_separate_penalties(T, zero_fraction):
    """Running sums (constant memory) give the value and gradient of T separate terms, anywhere."""
    fishers = [rand_importance(100 + t, zero_fraction) for t in range(T)]
    anchors = [rand_params(200 + t) for t in range(T)]
    state = empty_state()
    for f, a in zip(fishers, anchors):
        state = merge_sum(state, f, a)
    assert sum(t.numel() for t in state_tensors(state).values()) == 2 * sum(f.numel() for f in fishers[0].values()) + 1
    for probe in range(3):
        theta = rand_params(300 + probe, scale=2.0)
        v, g = value_and_grad(lambda p: quadratic_penalty(p, state, 7.0), theta)
        v_ref, g_ref = value_and_grad(lambda p: separate_terms(p, fishers, anchors, 7.0), theta)
        torch.testing.assert_close(v, v_ref, rtol=1e-12, atol=1e-12)
        for n in SHAPES:
            torch.testing.assert_close(g[n], g_ref[n], rtol=1e-12, atol=1e-12)


def test_merged_value_has_no_cancellation_near_the_anchor_in_float32():
    """Naive running sums ΣFθ² − 2θΣFθ* + ΣFθ*² lose everything to cancellation when θ ≈ θ* and the
    anchors are large; the completed-square form keeps full relative precision."""
    big = {n: 1000.0 + torch.zeros(s) for n, s in SHAPES.items()}
    f = {n: torch.ones(s) for n, s in SHAPES.items()}
    state = merge_sum(empty_state(), f, big)
    theta = {n: t + 1e-3 for n, t in big.items()}
    v = quadratic_penalty(theta, state, 1.0)
    # exact value of the stored float32 numbers, computed in float64
    expected = 0.5 * sum(((theta[n].double() - big[n].double()) ** 2).sum() for n in SHAPES)
    assert abs(float(v) - float(expected)) / float(expected) < 1e-5
    # the running-sum form evaluated in float32 is far off (this is what the test guards against)
    naive = 0.5 * sum((f[n] * theta[n] ** 2 - 2 * theta[n] * f[n] * big[n] + f[n] * big[n] ** 2).sum() for n in SHAPES)
    assert abs(float(naive) - float(expected)) / float(expected) > 0.1


def test_online_ewc_with_gamma_one_after_one_task_equals_separate_ewc():
    f, a, theta = rand_importance(9), rand_params(10), rand_params(11)
    sep = merge_sum(empty_state(), f, a)
    onl = merge_decay(empty_state(), f, a, gamma=1.0)
    v1, g1 = value_and_grad(lambda p: quadratic_penalty(p, sep, 2.0), theta)
    v2, g2 = value_and_grad(lambda p: quadratic_penalty(p, onl, 2.0), theta)
    torch.testing.assert_close(v1, v2, rtol=1e-14, atol=0)
    for n in SHAPES:
        torch.testing.assert_close(g1[n], g2[n], rtol=1e-14, atol=0)


def test_online_ewc_decays_old_fisher_and_anchors_at_newest_parameters():
    f1, f2, a1, a2 = rand_importance(12), rand_importance(13), rand_params(14), rand_params(15)
    state = merge_decay(merge_decay(empty_state(), f1, a1, 0.5), f2, a2, 0.5)
    for n in SHAPES:
        torch.testing.assert_close(state["importance"][n], 0.5 * f1[n] + f2[n], rtol=1e-15, atol=0)
        torch.testing.assert_close(state["anchor"][n], a2[n], rtol=0, atol=0)


def test_a_decay_of_zero_keeps_the_newest_importance_alone_as_ewc_plus_plus():
    f1, f2, a1, a2 = rand_importance(21), rand_importance(22), rand_params(23), rand_params(24)
    state = merge_decay(merge_decay(empty_state(), f1, a1, 0.0), f2, a2, 0.0)
    for n in SHAPES:
        assert torch.equal(state["importance"][n], f2[n]) and torch.equal(state["anchor"][n], a2[n])


def test_state_round_trips_through_flat_tensors():
    state = merge_sum(merge_sum(empty_state(), rand_importance(16), rand_params(17)), rand_importance(18), rand_params(19))
    back = state_from_tensors(state_tensors(state))
    theta = rand_params(20)
    assert quadratic_penalty(theta, back, 1.5) == quadratic_penalty(theta, state, 1.5)


def test_empty_state_gives_zero_penalty():
    assert float(quadratic_penalty(rand_params(21), empty_state(), 5.0)) == 0.0


def test_quadratic_grad_matches_autograd():
    from lifelong.penalties import quadratic_grad

    state = merge_sum(merge_sum(empty_state(), rand_importance(22), rand_params(23)), rand_importance(24), rand_params(25))
    theta = rand_params(26)
    _, g = value_and_grad(lambda p: quadratic_penalty(p, state, 4.0), theta)
    got = quadratic_grad(theta, state, 4.0)
    for n in SHAPES:
        torch.testing.assert_close(got[n], g[n], rtol=1e-14, atol=1e-15)


def test_add_quadratic_grad_matches_autograd_in_float64():
    from lifelong.penalties import add_quadratic_grad_

    state = merge_sum(merge_sum(empty_state(), rand_importance(27), rand_params(28)), rand_importance(29), rand_params(30))
    theta = leaf(rand_params(31))
    for n, p in theta.items():
        p.grad = torch.full_like(p, 0.25)  # an existing gradient (the task loss's) is added to
    add_quadratic_grad_(theta, state, 5.0)
    _, g = value_and_grad(lambda p: quadratic_penalty(p, state, 5.0), rand_params(31))
    for n in SHAPES:
        torch.testing.assert_close(theta[n].grad, g[n] + 0.25, rtol=1e-14, atol=1e-14)


# ---- parameters that are frozen, newly trainable or reshaped between tasks -------------------------


def _separate(terms, params, lam=1.0):
    """Σ_t λ/2 Σ F_t (θ − θ*_t)² over the parameters each term names: the reference."""
    return sum(0.5 * lam * sum((f[n] * (params[n] - a[n]) ** 2).sum() for n in f) for f, a in terms)


@pytest.mark.parametrize("merge", ["sum", "decay"])
def test_a_parameter_missing_from_the_new_importance_keeps_its_old_term(merge):
    """Frozen in task 2, so it has no new importance: its task-1 term must stay in the penalty."""
    f1, a1 = rand_importance(1), rand_params(2)
    f2 = {n: v for n, v in rand_importance(3).items() if n != "w1"}  # w1 frozen in task 2
    a2 = {n: v for n, v in rand_params(4).items() if n != "w1"}
    s1 = merge_sum(empty_state(), f1, a1)
    theta = rand_params(5)
    if merge == "sum":
        merged, terms = merge_sum(s1, f2, a2), [(f1, a1), (f2, a2)]
    else:  # online: γΩ + F at the newest anchor; w1 keeps γ·F1 at its old anchor
        g = 0.5
        merged = merge_decay(s1, f2, a2, g)
        terms = [({"w1": g * f1["w1"]}, a1), ({n: g * f1[n] + f2[n] for n in f2}, a2)]
    assert set(merged["importance"]) == set(SHAPES)
    torch.testing.assert_close(quadratic_penalty(theta, merged, 1.0), _separate(terms, theta), rtol=1e-12, atol=0)


def test_a_newly_trainable_parameter_joins_the_penalty():
    f1 = {n: v for n, v in rand_importance(1).items() if n != "b1"}  # b1 frozen in task 1
    a1 = {n: v for n, v in rand_params(2).items() if n != "b1"}
    f2, a2 = rand_importance(3), rand_params(4)
    merged = merge_sum(merge_sum(empty_state(), f1, a1), f2, a2)
    theta = rand_params(5)
    torch.testing.assert_close(quadratic_penalty(theta, merged, 2.0), _separate([(f1, a1), (f2, a2)], theta, 2.0),
                               rtol=1e-12, atol=0)


def test_a_parameter_that_changed_shape_is_named():
    from lifelong.errors import UsageError
    from lifelong.penalties import add_quadratic_grad_

    state = merge_sum(empty_state(), rand_importance(1), rand_params(2))
    wide = {**rand_importance(3), "w2": torch.ones(3, 5, dtype=torch.float64)}
    for merge in (lambda: merge_sum(state, wide, {**rand_params(4), "w2": torch.ones(3, 5)}),
                  lambda: merge_decay(state, wide, {**rand_params(4), "w2": torch.ones(3, 5)}, 1.0)):
        with pytest.raises(UsageError, match=r"'w2' has shape \(3, 5\) now but \(2, 5\)"):
            merge()
    theta = {**rand_params(5), "w2": torch.zeros(3, 5, dtype=torch.float64, requires_grad=True)}
    with pytest.raises(UsageError, match=r"parameter 'w2' has shape \(3, 5\) but its penalty was built for \(2, 5\)"):
        quadratic_penalty(theta, state, 1.0)
    with pytest.raises(UsageError, match="'w2'"):
        add_quadratic_grad_(theta, state, 1.0)


def test_the_closed_form_gradient_leaves_frozen_parameters_alone():
    from lifelong.penalties import add_quadratic_grad_

    state = merge_sum(empty_state(), rand_importance(1), rand_params(2))
    theta = {n: p.clone().requires_grad_(n != "w1") for n, p in rand_params(3).items()}
    add_quadratic_grad_(theta, state, 1.0)
    assert theta["w1"].grad is None and theta["b1"].grad is not None
