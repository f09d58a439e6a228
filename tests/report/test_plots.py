"""The plots of a task-free run: its accuracy curve with the schedule above it, and the schedule alone."""

from __future__ import annotations

import pytest

from lifelong.errors import UsageError


def test_the_task_free_plots_draw_a_recorded_curve_and_refuse_what_is_not_one(tmp_path):
    from lifelong.report.plots import plot_anytime, plot_schedule

    anytime = {"groups": ["class 0", "class 1"], "samples": 40, "shares": [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]],
               "points": [{"samples": 20, "accuracy": 0.9, "groups": [0.9, 0.0], "seen": [True, False]},
                          {"samples": 40, "accuracy": 0.6, "groups": [0.4, 0.8], "seen": [True, True]}],
               "metrics": {"auc_accuracy": 0.75}}
    for out in (plot_anytime(anytime, tmp_path / "a.png"), plot_anytime({**anytime, "shares": None}, tmp_path / "b.png"),
                plot_schedule(anytime["shares"], anytime["groups"], tmp_path / "s.png", samples=40)):
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UsageError, match="points and groups"):
        plot_anytime({"groups": ["a"]}, tmp_path / "c.png")
    with pytest.raises(UsageError, match="shares must be"):
        plot_schedule([[1.0]], ["a", "b"], tmp_path / "d.png")
