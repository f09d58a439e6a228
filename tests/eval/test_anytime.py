"""The anytime metrics on hand-computed curves (lifelong.eval.anytime)."""

from __future__ import annotations

import pytest

from lifelong.eval.anytime import anytime_metrics, auc, check_point, curve_forgetting, seen_accuracy


def test_seen_accuracy_weighs_the_seen_groups_by_their_evaluation_samples():
    assert seen_accuracy([0.5, 1.0, 0.2], [10, 30, 5], [True, True, False]) == pytest.approx((5 + 30) / 40)
    assert seen_accuracy([0.5, 1.0], [10, 30], [False, False]) is None
    assert seen_accuracy([0.5, None], [10, 0], [True, True]) == 0.5  # a group without test samples adds nothing


def test_the_area_under_the_curve_weighs_each_point_by_the_samples_since_the_last():
    # Δn = 10, 10, 20; the point before any group is seen counts 0
    assert auc([10, 20, 40], [0.5, None, 0.8]) == pytest.approx((0.5 * 10 + 0 * 10 + 0.8 * 20) / 40)
    assert auc([5, 10, 15, 20], [0.2, 0.4, 0.6, 0.8]) == pytest.approx(0.5)  # a constant period: the mean
    assert auc([], []) is None
    with pytest.raises(ValueError, match="decrease"):
        auc([10, 5], [0.1, 0.2])


def test_forgetting_from_the_curve_is_the_drop_from_the_best_earlier_point_while_seen():
    per = [[0.9, 0.0], [0.6, 0.4], [0.3, 0.8]]
    seen = [[True, False], [True, True], [True, True]]
    # group 0: 0.9 - 0.3; group 1 (seen from point 2): 0.4 - 0.8
    assert curve_forgetting(per, seen) == pytest.approx(((0.9 - 0.3) + (0.4 - 0.8)) / 2)
    assert curve_forgetting([[0.5]], [[True]]) is None
    assert curve_forgetting([[0.5], [0.4]], [[False], [True]]) is None  # seen only at the last point
    # a group the test split has no sample of has no accuracy: it is no group of the mean (not a drop of 0)
    assert curve_forgetting([[0.9, None], [0.3, None]], [[True, True], [True, True]]) == pytest.approx(0.6)


def test_the_metrics_of_a_curve_and_the_check_of_a_point():
    points = [{"samples": 10, "accuracy": 0.5, "groups": [0.5, 0.0], "seen": [True, False]},
              {"samples": 20, "accuracy": 0.7, "groups": [0.4, 1.0], "seen": [True, True]}]
    m = anytime_metrics(points)
    assert m == {"final_accuracy": 0.7, "auc_accuracy": pytest.approx(0.6), "curve_forgetting": pytest.approx(0.1)}
    assert anytime_metrics([]) == {"final_accuracy": None, "auc_accuracy": None, "curve_forgetting": None}
    assert check_point(points[0]) is None
    assert "samples" in check_point({**points[0], "samples": -1})
    assert "accuracy" in check_point({**points[0], "accuracy": 1.5})
    assert "groups" in check_point({**points[0], "seen": [True]})
