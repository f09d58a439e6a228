"""Golden tests of the continual-learning metrics on hand-computed accuracy matrices.

Convention: R has shape (T+1, T); row 0 = before training, row i = after training the i-th task.
Tolerances: 1e-12, i.e. float64 rounding of a handful of additions on values in [0, 1].
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

import lifelong.eval.metrics as metrics_module
from lifelong.errors import UsageError
from lifelong.eval import (
    undefined_metrics,
    average_accuracy,
    average_accuracy_curve,
    backward_transfer,
    check_accuracy_matrix,
    forgetting,
    forgetting_per_task,
    forward_transfer,
    intransigence,
    intransigence_per_task,
    summarize,
)

TOL = 1e-12

# ---- 3 tasks ---------------------------------------------------------------------------------
R3 = np.array(
    [
        [0.10, 0.20, 0.30],  # init
        [0.90, 0.25, 0.35],  # after task 0
        [0.80, 0.95, 0.40],  # after task 1
        [0.70, 0.85, 0.90],  # after task 2
    ]
)
# ACC   = (0.70 + 0.85 + 0.90) / 3                         = 2.45 / 3
# curve = [0.90, (0.80 + 0.95) / 2, 2.45 / 3]              = [0.90, 0.875, 0.81666...]
# BWT   = ((0.70 - 0.90) + (0.85 - 0.95)) / 2              = (-0.20 - 0.10) / 2 = -0.15
# FWT   = ((R[1,1] - R[0,1]) + (R[2,2] - R[0,2])) / 2
#       = ((0.25 - 0.20) + (0.40 - 0.30)) / 2              = (0.05 + 0.10) / 2 = 0.075
# f_0   = max(R[1,0], R[2,0]) - R[3,0] = max(0.90, 0.80) - 0.70 = 0.20
# f_1   = max(R[1,1], R[2,1]) - R[3,1] = max(0.25, 0.95) - 0.85 = 0.10
# F     = (0.20 + 0.10) / 2                                = 0.15
# reference a* = [0.95, 0.97, 0.92]:
# I     = [0.95 - R[1,0], 0.97 - R[2,1], 0.92 - R[3,2]] = [0.05, 0.02, 0.02], mean 0.03
REF3 = np.array([0.95, 0.97, 0.92])


def test_three_tasks_golden():
    assert average_accuracy(R3) == pytest.approx(2.45 / 3, abs=TOL)
    np.testing.assert_allclose(average_accuracy_curve(R3), [0.90, 0.875, 2.45 / 3], atol=TOL)
    assert backward_transfer(R3) == pytest.approx(-0.15, abs=TOL)
    assert forward_transfer(R3) == pytest.approx(0.075, abs=TOL)
    np.testing.assert_allclose(forgetting_per_task(R3), [0.20, 0.10], atol=TOL)
    assert forgetting(R3) == pytest.approx(0.15, abs=TOL)
    np.testing.assert_allclose(intransigence_per_task(R3, REF3), [0.05, 0.02, 0.02], atol=TOL)
    assert intransigence(R3, REF3) == pytest.approx(0.03, abs=TOL)


# ---- 2 tasks ---------------------------------------------------------------------------------
R2 = np.array(
    [
        [0.50, 0.50],  # init
        [1.00, 0.60],  # after task 0
        [0.75, 1.00],  # after task 1
    ]
)
# ACC = (0.75 + 1.00) / 2 = 0.875;  curve = [1.00, 0.875]
# BWT = R[2,0] - R[1,0] = 0.75 - 1.00 = -0.25
# FWT = R[1,1] - R[0,1] = 0.60 - 0.50 = 0.10
# F   = max(R[1,0]) - R[2,0] = 1.00 - 0.75 = 0.25


def test_two_tasks_golden():
    assert average_accuracy(R2) == pytest.approx(0.875, abs=TOL)
    np.testing.assert_allclose(average_accuracy_curve(R2), [1.0, 0.875], atol=TOL)
    assert backward_transfer(R2) == pytest.approx(-0.25, abs=TOL)
    assert forward_transfer(R2) == pytest.approx(0.10, abs=TOL)
    np.testing.assert_allclose(forgetting_per_task(R2), [0.25], atol=TOL)
    assert forgetting(R2) == pytest.approx(0.25, abs=TOL)


# ---- 1 task: transfer and forgetting are undefined -> NaN ------------------------------------
R1 = np.array([[0.1], [0.9]])


def test_one_task_undefined_metrics_are_nan_and_summarize_says_none_with_the_reason():
    assert average_accuracy(R1) == pytest.approx(0.9, abs=TOL)
    np.testing.assert_allclose(average_accuracy_curve(R1), [0.9], atol=TOL)
    assert math.isnan(backward_transfer(R1))
    assert math.isnan(forward_transfer(R1))
    assert math.isnan(forgetting(R1))
    assert forgetting_per_task(R1).shape == (0,)
    np.testing.assert_allclose(intransigence_per_task(R1, [1.0]), [0.1], atol=TOL)
    s = summarize(R1)
    assert s["average_accuracy"] == pytest.approx(0.9)
    undefined = ("backward_transfer", "forward_transfer", "forgetting")
    assert all(s[k] is None for k in undefined)
    assert set(undefined_metrics(R1)) == set(undefined) and "one task" in undefined_metrics(R1)["forgetting"]


def test_forward_transfer_is_undefined_in_the_class_scenario_only():
    R = [[0.1, 0.1], [0.9, 0.2], [0.7, 0.8]]
    assert summarize(R)["forward_transfer"] == pytest.approx(0.1)
    assert summarize(R, scenario="task")["forward_transfer"] == pytest.approx(0.1)
    s = summarize(R, scenario="class")
    assert s["forward_transfer"] is None and s["backward_transfer"] == pytest.approx(-0.2)
    assert set(undefined_metrics(R, "class")) == {"forward_transfer"}
    assert "initialization" in undefined_metrics(R, "class")["forward_transfer"]
    assert undefined_metrics(R, "task") == {}


def test_perfect_memory_has_zero_bwt_and_forgetting():
    # Each task is learned to acc[j] and kept exactly from then on; unseen tasks sit at chance.
    acc = np.array([0.9, 0.8, 0.95, 0.7])
    T = acc.size
    R = np.full((T + 1, T), 0.1)
    for i in range(1, T + 1):
        R[i, :i] = acc[:i]
    assert backward_transfer(R) == 0.0
    assert forgetting(R) == 0.0
    np.testing.assert_array_equal(forgetting_per_task(R), np.zeros(T - 1))
    assert average_accuracy(R) == pytest.approx(acc.mean(), abs=TOL)


def test_drop_to_chance_forgetting():
    # Each task reaches 1.0 when trained and falls to chance (0.1) as soon as the next one is.
    R = np.array(
        [
            [0.1, 0.1, 0.1],
            [1.0, 0.1, 0.1],
            [0.1, 1.0, 0.1],
            [0.1, 0.1, 1.0],
        ]
    )
    # f_0 = max(1.0, 0.1) - 0.1 = 0.9; f_1 = max(0.1, 1.0) - 0.1 = 0.9; F = 0.9; BWT = -0.9
    np.testing.assert_allclose(forgetting_per_task(R), [0.9, 0.9], atol=TOL)
    assert forgetting(R) == pytest.approx(0.9, abs=TOL)
    assert backward_transfer(R) == pytest.approx(-0.9, abs=TOL)
    assert average_accuracy(R) == pytest.approx(0.4, abs=TOL)  # (0.1 + 0.1 + 1.0) / 3


def test_forgetting_takes_max_over_intermediate_rows():
    # Task 0 keeps improving after it was trained (peak 0.9 after task 1, not 0.6 after task 0).
    R = np.array(
        [
            [0.1, 0.1, 0.1],
            [0.6, 0.1, 0.1],
            [0.9, 0.7, 0.1],
            [0.5, 0.6, 0.8],
        ]
    )
    # f_0 = max(0.6, 0.9) - 0.5 = 0.4 (the training-step value would give 0.1)
    # f_1 = max(0.1, 0.7) - 0.6 = 0.1;  F = 0.25
    # BWT uses the training step only: ((0.5 - 0.6) + (0.6 - 0.7)) / 2 = -0.1
    np.testing.assert_allclose(forgetting_per_task(R), [0.4, 0.1], atol=TOL)
    assert forgetting(R) == pytest.approx(0.25, abs=TOL)
    assert backward_transfer(R) == pytest.approx(-0.1, abs=TOL)


def test_forgetting_follows_paper_max_over_all_after_training_rows():
    # Chaudhry et al.'s max runs over rows 1..T-1, including rows before task j was trained:
    # task 1 is at 0.5 after task 0 (forward transfer), 0.3 once trained, 0.2 at the end.
    R = np.array(
        [
            [0.1, 0.1, 0.1],
            [0.9, 0.5, 0.1],
            [0.8, 0.3, 0.1],
            [0.7, 0.2, 0.9],
        ]
    )
    # f_1 = max(R[1,1], R[2,1]) - R[3,1] = max(0.5, 0.3) - 0.2 = 0.3 (not 0.3 - 0.2 = 0.1);
    # the init row 0 never enters: a huge R[0,0] would not change f_0 = max(0.9, 0.8) - 0.7.
    np.testing.assert_allclose(forgetting_per_task(R), [0.2, 0.3], atol=TOL)
    R_init_peak = R.copy()
    R_init_peak[0, 0] = 1.0
    np.testing.assert_allclose(forgetting_per_task(R_init_peak), [0.2, 0.3], atol=TOL)


def test_identities_on_random_matrices():
    rng = np.random.default_rng(0)
    for T in (1, 2, 3, 7):
        R = rng.uniform(size=(T + 1, T))
        curve = average_accuracy_curve(R)
        assert curve.shape == (T,)
        assert curve[-1] == pytest.approx(average_accuracy(R), abs=TOL)
        assert curve[0] == R[1, 0]
        if T > 1:
            # max over rows >= the training-step row, so F >= -BWT
            assert forgetting(R) >= -backward_transfer(R) - TOL
            # intransigence against a perfect reference is 1 - mean of the diagonal R[k+1, k]
            diag = R[np.arange(1, T + 1), np.arange(T)]
            assert intransigence(R, np.ones(T)) == pytest.approx(1 - diag.mean(), abs=TOL)


def test_summarize_keys_types_and_reference():
    s = summarize(R3)
    assert list(s) == ["average_accuracy", "backward_transfer", "forward_transfer", "forgetting"]
    assert all(type(v) is float for v in s.values())
    assert s["backward_transfer"] == pytest.approx(-0.15, abs=TOL)
    s = summarize(R3, reference=REF3)
    assert s["intransigence"] == pytest.approx(0.03, abs=TOL)


def test_accepts_lists_and_does_not_mutate():
    R = R3.copy()
    assert average_accuracy(R.tolist()) == average_accuracy(R)
    forgetting(R)
    summarize(R)
    np.testing.assert_array_equal(R, R3)
    assert check_accuracy_matrix(R.tolist()).dtype == np.float64


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((3, 3)),  # square: missing the init row
        np.zeros((2, 3)),
        np.zeros(3),  # 1-D
        np.zeros((1, 0)),  # T = 0
        np.zeros((2, 1, 1)),  # 3-D
        [[0.1, 0.2], [0.3]],  # ragged
        [["a"], ["b"]],  # not numeric
        np.array([[0.1], [np.nan]]),
        np.array([[0.1], [np.inf]]),
        np.array([[0.1], [1.5]]),
        np.array([[-0.1], [0.5]]),
        np.array([[10.0], [97.0]]),  # percentages
    ],
)
def test_invalid_matrix_raises_usage_error(bad):
    with pytest.raises(UsageError, match=r"shape \(T\+1, T\)") as info:
        summarize(bad)
    assert "\n" not in str(info.value)
    for f in (average_accuracy, average_accuracy_curve, backward_transfer, forgetting_per_task):
        with pytest.raises(UsageError):
            f(bad)


@pytest.mark.parametrize("ref", [[0.9, 0.9], [0.9, 0.9, 0.9, 0.9], [0.9, 0.9, 1.2], [0.9, np.nan, 0.9]])
def test_invalid_reference_raises_usage_error(ref):
    with pytest.raises(UsageError, match="reference"):
        intransigence(R3, ref)


def test_docstring_examples():
    result = doctest.testmod(metrics_module)
    assert result.attempted > 0 and result.failed == 0


def test_a_task_trained_in_no_step_before_the_last_makes_the_transfer_metrics_undefined():
    from lifelong.eval.metrics import UNTRAINED, summarize, undefined_metrics

    R = [[0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.9, 0.8, 0.7]]  # joint-end: one trained row
    m = summarize(R, steps_per_task=[0, 0, 12])
    assert m["average_accuracy"] == pytest.approx(0.8)
    assert m["backward_transfer"] is m["forward_transfer"] is m["forgetting"] is None
    assert undefined_metrics(R, "task", [0, 0, 12]) == dict.fromkeys(
        ("backward_transfer", "forward_transfer", "forgetting"), UNTRAINED)
    # every task trained, or only the last one untrained: defined as before
    assert summarize(R, steps_per_task=[5, 5, 5]) == summarize(R)
    assert summarize(R, steps_per_task=[5, 5, 0])["backward_transfer"] == summarize(R)["backward_transfer"]
