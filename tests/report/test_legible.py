"""compare's plots stay legible from 1 to 20 methods: every text element lies inside the figure, no
two tick labels overlap, the legend is outside the axes, and a log axis shows plain numbers; the
terminal table fits in 120 columns and labels name what varies (issue: compare a researcher can read)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from lifelong.report.plots import accuracy_vs_memory_figure, comparison_figure

LONG = "derpp+lwf (derpp.alpha=0.3, derpp.beta=0.5, lwf.temperature=2, lr=0.001, hidden=400,400)"


def _labels(n: int, long: bool) -> list[str]:
    return [f"{LONG} #{k}" if long and k % 2 else f"method {k}" for k in range(n)]


def _texts_inside_and_apart(fig) -> None:
    FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    box = fig.bbox
    hidden = set()  # tick labels of ticks outside the view limits are not drawn
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                if not lo - 1e-9 <= tick.get_loc() <= hi + 1e-9:
                    hidden |= {id(tick.label1), id(tick.label2)}
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_window_extent"))
             if t.get_visible() and t.get_text() and id(t) not in hidden]
    assert texts
    for t in texts:
        e = t.get_window_extent(renderer)
        assert e.x0 >= box.x0 - 1 and e.x1 <= box.x1 + 1 and e.y0 >= box.y0 - 1 and e.y1 <= box.y1 + 1, t.get_text()
        assert "$" not in t.get_text() and "mathdefault" not in t.get_text()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text() and id(t) not in hidden]
            for a, b in zip(labels, labels[1:]):
                angle = np.deg2rad(a.get_rotation() % 180)
                if angle == 0:
                    assert not a.get_window_extent(renderer).overlaps(b.get_window_extent(renderer)), a.get_text()
                else:  # parallel slanted lines of text: their distance across must hold one line's height
                    step = abs(np.subtract(a.get_transform().transform(a.get_position()),
                                           b.get_transform().transform(b.get_position()))).max()
                    height = a.get_fontsize() * fig.dpi / 72
                    assert step * np.sin(angle) >= height, (a.get_text(), step, height)
        legend = ax.get_legend()
        if legend is not None:  # beside the data, never over it
            assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


@pytest.mark.parametrize("n", [1, 2, 7, 20])
@pytest.mark.parametrize("long", [False, True])
def test_the_comparison_plot_is_legible(n, long):
    rng = np.random.default_rng(n)
    curves = {lab: np.sort(rng.random(10))[::-1] for lab in _labels(n, long)}
    fig = comparison_figure(curves, task_names=[f"task {k} of the stream" for k in range(10)], title="t")
    _texts_inside_and_apart(fig)
    assert fig.get_figwidth() <= 16 and fig.get_figheight() <= 8


@pytest.mark.parametrize("n", [1, 7, 20])
def test_the_memory_plot_is_legible_with_plain_log_ticks(n):
    points = {lab: (10 ** (k % 7), 0.5 + 0.02 * k) for k, lab in enumerate(_labels(n, True))}
    points[f"naive {n}"] = (0, 0.4)
    fig = accuracy_vs_memory_figure(points)
    _texts_inside_and_apart(fig)
    FigureCanvasAgg(fig)
    fig.draw(fig.canvas.get_renderer())
    lo, hi = fig.axes[0].get_xlim()
    shown = [t.get_text() for t in fig.axes[0].xaxis.get_major_ticks() and fig.axes[0].xaxis.get_ticklabels()
             if t.get_text() and lo <= t.get_position()[0] <= hi]
    assert "0" in shown and all(s.replace(".", "").replace("-", "").isdigit() for s in shown), shown


@pytest.mark.parametrize("per_panel", [1, 11, 20])
def test_several_scenarios_get_one_panel_each_and_stay_legible(per_panel):
    """A sweep over three scenarios (Hsu et al.'s table: 11 methods each) draws one panel per
    benchmark/scenario, each with its own legend beneath, none cut off."""
    rng = np.random.default_rng(per_panel)
    curves, panels = {}, {}
    for block in ("split-mnist/class", "split-mnist/domain", "split-mnist/task"):
        for k in range(per_panel):
            label = f"{block}: er (optimizer=adam, lr=0.001, memory={1100 * (k + 1)})"
            curves[label], panels[label] = np.sort(rng.random(5))[::-1], block
    fig = comparison_figure(curves, task_names=[f"classes {2 * k}-{2 * k + 1}" for k in range(5)], panels=panels)
    assert len(fig.axes) == 3
    _texts_inside_and_apart(fig)


def test_the_memory_plot_of_several_scenarios_has_one_panel_each():
    points, panels = {}, {}
    for block in ("split-mnist/class", "split-mnist/domain", "split-mnist/task"):
        for k in range(11):
            label = f"{block}: er (optimizer=adam, lr=0.001, memory={1100 * (k + 1)})"
            points[label], panels[label] = (10 ** (k % 7) * 1000, 0.5 + 0.02 * k), block
    fig = accuracy_vs_memory_figure(points, panels=panels)
    assert len(fig.axes) == 3
    _texts_inside_and_apart(fig)


RECORDS = __import__("pathlib").Path(__file__).resolve().parents[2] / "docs" / "data"


@pytest.mark.parametrize("subset", ["all", "two"])
def test_the_recorded_hsu_sweep_compares_legibly(tmp_path, subset, monkeypatch):
    """The real thing: the 11 rows of Hsu et al.'s Table 2 in its three scenarios (33 methods, 159 runs,
    docs/data/hsu2018-split-mnist.json) and a comparison of 2 runs from it, through `compare` as a user
    runs it: the terminal table fits 120 columns, and each figure compare writes passes the checks above."""
    import json

    import matplotlib.pyplot as plt

    from lifelong.experiments.collect import compare
    from lifelong.report import plots

    figures = []
    for name in ("comparison_figure", "accuracy_vs_memory_figure"):
        made = getattr(plots, name)
        monkeypatch.setattr(plots, name, lambda *a, _made=made, **k: figures.append(_made(*a, **k)) or figures[-1])
    monkeypatch.setattr(plt, "close", lambda *a, **k: None)
    source = RECORDS / "hsu2018-split-mnist.json"
    if subset == "two":  # one naive and one EWC run, task-incremental, seed 0
        head, *lines, tail = source.read_text().splitlines()
        runs = [json.loads(line.rstrip(",")) for line in lines]
        two = [r for r in runs if r["config"]["seed"] == 0 and r["config"]["stream"]["scenario"] == "task"
               and r["config"]["strategy"]["name"] in ("naive", "ewc")]
        source = tmp_path / "two.json"
        source.write_text(head + "\n" + ",\n".join(json.dumps(r) for r in two) + "\n" + tail + "\n")
    table = compare([source], out=tmp_path / "cmp", memory=True, quiet=True)
    assert len(table["rows"]) == (33 if subset == "all" else 2)
    assert max(len(line) for line in table["text"].splitlines()) <= 120
    assert {"png", "memory_png"} <= set(table["files"]) and len(figures) == 2
    for fig in figures:
        _texts_inside_and_apart(fig)
