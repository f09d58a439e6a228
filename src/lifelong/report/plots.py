"""Plots of a run: per-task accuracy curves, the accuracy-matrix heatmap, capacity per task (parameter
isolation), method comparisons.

The curves follow Fig. 2A of Kirkpatrick et al., "Overcoming catastrophic forgetting in neural
networks", PNAS 2017 (EWC): one small panel per task, stacked over a shared "training stage" axis,
with the stage where that task is trained shaded. The matrix is ``R`` of
:mod:`lifelong.eval.metrics` (row 0 = before training, row ``i`` = after training task ``i``).

Figures are built with ``matplotlib.figure.Figure`` and an explicit Agg canvas, never ``pyplot``:
no global state, no GUI backend, safe in threads and tests. PNGs are written atomically.

Example
-------
>>> import tempfile, numpy as np
>>> R = np.array([[0.1, 0.1], [0.9, 0.2], [0.7, 0.8]])
>>> p = plot_accuracy_matrix(R, ["t1", "t2"], f"{tempfile.mkdtemp()}/R.png")
>>> p.read_bytes()[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
True
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import PercentFormatter
from numpy.typing import ArrayLike

from lifelong import _io
from lifelong.errors import UsageError
from lifelong.eval.metrics import average_accuracy_curve, check_accuracy_matrix

__all__ = ["plot_accuracy_curves", "plot_accuracy_matrix", "plot_anytime", "plot_capacity", "plot_comparison",
           "plot_schedule"]

DPI = 120
_MAX_LABEL = 18  # characters of a task name shown on an axis; longer names are shortened


def _check_task_names(task_names: Sequence[str], T: int) -> list[str]:
    """Return ``task_names`` as a list of ``T`` strings, or raise :class:`UsageError`."""
    if isinstance(task_names, str) or not isinstance(task_names, Sequence):
        raise UsageError(f"task_names must be a list of {T} strings; got {type(task_names).__name__}")
    names = list(task_names)
    if len(names) != T or not all(isinstance(n, str) for n in names):
        raise UsageError(
            f"task_names must be a list of {T} strings, one per matrix column; got {names!r}"
        )
    return names


def _short(name: str, n: int = _MAX_LABEL) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def _task_colors(T: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]  # cycled past 10: panels are separate, adjacent tasks still differ
    return [cmap(j % cmap.N) for j in range(T)]


def _plain_text(fn):
    """Labels are data (task names, strategy names, titles from config files): a ``$`` in them is text,
    never a mathtext formula (an unbalanced one would stop the plot)."""
    import functools

    import matplotlib

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context({"text.parse_math": False}):
            return fn(*args, **kwargs)

    return wrapper


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Render ``fig`` with an Agg canvas into ``path`` (PNG), atomically."""
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    return _io.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))


@_plain_text
def plot_accuracy_curves(
    R: ArrayLike, task_names: Sequence[str], path: str | os.PathLike, *, title: str | None = None
) -> Path:
    """Per-task test accuracy along the stream, one stacked panel per task (EWC paper, Fig. 2A).

    The x axis is the training stage: ``init`` (row 0), then after each task (rows 1..T). In task
    ``j``'s panel the accuracy is dotted before the task is trained and solid from then on; the
    stage where ``j`` is trained (x in ``[j, j+1]``) is shaded, and the final accuracy is printed
    at the right. The bottom panel shows the average accuracy over the tasks seen so far
    (:func:`~lifelong.eval.metrics.average_accuracy_curve`). Returns ``path``.
    """
    A = check_accuracy_matrix(R)  # (T+1, T)
    T = A.shape[1]
    names = _check_task_names(task_names, T)
    colors = _task_colors(T)
    small = T > 10
    panel_h = 0.42 if small else 0.6
    fs = 7 if small else 8

    fig = Figure(figsize=(7.5, 1.2 + panel_h * (T + 1.8)), layout="constrained")
    axes = fig.subplots(T + 1, 1, sharex=True, gridspec_kw={"height_ratios": [1] * T + [1.8]})
    x = np.arange(T + 1)  # training stages: 0 = init, i = after training the i-th task
    for j, ax in enumerate(axes[:T]):
        ax.axvspan(j, j + 1, color=colors[j], alpha=0.18, lw=0)
        ax.plot(x[: j + 1], A[: j + 1, j], ls=":", color="0.55", lw=1.0, marker=".", ms=3)
        ax.plot(x[j:], A[j:, j], color=colors[j], lw=1.6, marker="o", ms=2.5)
        ax.set_ylabel(_short(names[j]), rotation=0, ha="right", va="center", fontsize=fs)
        ax.text(1.01, A[T, j], f"{A[T, j]:.0%}", transform=ax.get_yaxis_transform(),
                va="center", fontsize=fs - 1, color=colors[j])
        ax.set_yticks([0, 1] if small else [0, 0.5, 1])
    avg = average_accuracy_curve(A)  # (T,)
    ax = axes[T]
    ax.plot(x[1:], avg, color="black", lw=1.8, marker="o", ms=3)
    ax.set_ylabel("average\n(seen tasks)", rotation=0, ha="right", va="center", fontsize=fs,
                  weight="bold")
    ax.text(1.01, avg[-1], f"{avg[-1]:.0%}", transform=ax.get_yaxis_transform(), va="center",
            fontsize=fs - 1)
    ax.set_yticks([0, 0.5, 1])
    for ax in axes:
        ax.set_ylim(-0.06, 1.06)
        ax.set_xlim(-0.25, T + 0.25)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.tick_params(labelsize=fs - 1, length=2)
        ax.grid(axis="x", color="0.9", lw=0.6)
        ax.spines[["top", "right"]].set_visible(False)
    axes[-1].set_xticks(x, ["init", *(_short(n) for n in names)])
    long_labels = T > 6 or max(len(n) for n in names) > 6
    axes[-1].tick_params(axis="x", labelsize=fs, rotation=40 if long_labels else 0)
    if long_labels:
        for lab in axes[-1].get_xticklabels():
            lab.set_ha("right")
            lab.set_rotation_mode("anchor")
    axes[-1].set_xlabel("training stage (accuracy measured after training the named task)",
                        fontsize=fs + 1)
    handles = [
        Patch(color="0.6", alpha=0.35, label="task being trained"),
        Line2D([], [], color="0.55", ls=":", marker=".", label="before its training"),
        Line2D([], [], color="0.2", lw=1.6, marker="o", ms=3, label="from its training on"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=fs, frameon=False)
    fig.suptitle(title or "Test accuracy per task along the stream", fontsize=fs + 3)
    return _save(fig, path)


@_plain_text
def plot_accuracy_matrix(
    R: ArrayLike, task_names: Sequence[str], path: str | os.PathLike, *, title: str | None = None
) -> Path:
    """Heatmap of the accuracy matrix ``R`` on a fixed 0..100 % color scale. Returns ``path``.

    Rows: ``init``, ``after <task 1>``, ...; columns: the task evaluated. Cells hold percentages
    when ``T <= 12``; the cells ``R[j+1, j]`` (task ``j`` just after training it) are outlined, so
    forgetting reads as the fading down each column below its outline.
    """
    A = check_accuracy_matrix(R)  # (T+1, T)
    T = A.shape[1]
    names = [_short(n) for n in _check_task_names(task_names, T)]
    fs = 8 if T <= 12 else 7
    width = max(4.8, 2.4 + (0.55 if T <= 12 else 0.45) * T)  # inches
    height = max(3.6, 1.6 + 0.42 * (T + 1))
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(A, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    if T <= 12:
        fmt = "{:.1f}" if T <= 6 else "{:.0f}"
        for i in range(T + 1):
            for j in range(T):
                ax.text(j, i, fmt.format(100 * A[i, j]), ha="center", va="center", fontsize=fs,
                        color="white" if A[i, j] < 0.55 else "black")
    for j in range(T):
        ax.add_patch(Rectangle((j - 0.5, j + 0.5), 1, 1, fill=False, edgecolor="#d62728", lw=1.6))
    ax.axhline(0.5, color="white", lw=2.0)  # separates the init row from the after-training rows
    ax.set_xticks(np.arange(T), names)
    ax.set_yticks(np.arange(T + 1), ["init", *(f"after {n}" for n in names)])
    ax.tick_params(labelsize=fs, length=0)
    if T > 6 or max(len(n) for n in names) > 6:
        for lab in ax.get_xticklabels():
            lab.set_rotation(40)
            lab.set_ha("right")
            lab.set_rotation_mode("anchor")
    ax.set_xlabel("evaluated on task", fontsize=fs + 1)
    ax.set_ylabel("after training", fontsize=fs + 1)
    cbar = fig.colorbar(im, ax=ax, shrink=0.9, format=PercentFormatter(1.0, decimals=0))
    cbar.set_label("test accuracy" + (" (cells in %)" if T <= 12 else ""), fontsize=fs + 1)
    cbar.ax.tick_params(labelsize=fs)
    fig.suptitle(title or "Accuracy matrix", fontsize=fs + 3)
    ax.set_title("outlined: accuracy on a task just after training it", fontsize=fs, color="0.3")
    return _save(fig, path)


def plot_comparison(
    curves: Mapping[str, ArrayLike],
    path: str | os.PathLike,
    *,
    task_names: Sequence[str] | None = None,
    title: str | None = None,
    panels: Mapping[str, str] | None = None,
) -> Path:
    """Average accuracy over seen tasks after each task, one line per run, on one axes.

    ``curves`` maps a run label (e.g. a method name) to its
    :func:`~lifelong.eval.metrics.average_accuracy_curve` (shape ``(T,)``; runs may differ in T).
    ``task_names`` labels the x ticks (default ``1..T``). ``panels`` maps a label to its panel (one axes
    per benchmark/scenario block; a label's ``"<panel>: "`` prefix is dropped there). Returns ``path``.
    """
    return _save(comparison_figure(curves, task_names=task_names, title=title, panels=panels), path)


def _checked_curves(curves: Mapping[str, ArrayLike]) -> dict[str, np.ndarray]:
    """Each curve as a float64 array of accuracies in [0, 1], or a UsageError naming the bad one."""
    if not curves:
        raise UsageError("plot_comparison needs at least one curve; got an empty mapping")
    checked: dict[str, np.ndarray] = {}
    for label, c in curves.items():
        y = np.asarray(c, dtype=np.float64)
        if y.ndim != 1 or y.size < 1 or not np.all(np.isfinite(y)) or y.min() < 0 or y.max() > 1:
            raise UsageError(
                f"curve {label!r} must be a 1-D array of accuracies in [0, 1] (one per task); "
                f"got shape {y.shape}"
            )
        checked[str(label)] = y
    return checked


def _curves_axes(ax, curves: Mapping[str, np.ndarray], ticks: Sequence[str], *, strip: str = "", width: int = 48,
                 ms: float = 3.5, lw: float = 1.6, slant: bool = True) -> None:
    """One axes of average-accuracy curves: a colour per run (tab20 past 10), its final value in its
    label (``strip`` dropped from the front), task names on x (slanted when ``slant``), percent on y."""
    from matplotlib import colormaps

    cmap = colormaps["tab20" if len(curves) > 10 else "tab10"]  # 20 methods stay 20 colours
    for k, (label, y) in enumerate(curves.items()):
        shown = label[len(strip):] if strip and label.startswith(strip) else label
        ax.plot(np.arange(1, y.size + 1), y, marker="o", ms=ms, lw=lw, color=cmap(k % cmap.N),
                label=f"{_short(shown, width)} ({y[-1]:.1%})")
    ax.set_xticks(np.arange(1, len(ticks) + 1), [_short(n) for n in ticks])
    if slant:
        for lab in ax.get_xticklabels():
            lab.set_rotation(40)
            lab.set_ha("right")
            lab.set_rotation_mode("anchor")
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.grid(color="0.92")
    ax.set_xlabel("after training task")


def _panel_figure(checked: dict[str, np.ndarray], panels: Mapping[str, str], ticks: Sequence[str], title) -> Figure:
    """One axes per panel side by side, each in its own subfigure so that its legend, beneath it, is laid
    out with it."""
    names = sorted(set(panels.values()))
    most = max(sum(1 for lab in checked if panels.get(lab) == p) for p in names)
    fig = Figure(figsize=(4.6 * len(names), 4.2 + 0.17 * most), layout="constrained")
    for i, (sub, p) in enumerate(zip(fig.subfigures(1, len(names), squeeze=False)[0], names)):
        ax = sub.subplots()
        _curves_axes(ax, {lab: y for lab, y in checked.items() if panels.get(lab) == p}, ticks, strip=f"{p}: ",
                     width=44, ms=3, lw=1.4)
        ax.set_title(p, fontsize=10)
        if i == 0:
            ax.set_ylabel("average accuracy over seen tasks")
        sub.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=7, frameon=False, ncols=1)
    fig.suptitle(title or "Average accuracy along the stream")
    return fig


def _legend_outside(fig: Figure, ax, n: int, **kw) -> None:
    """The legend right of the axes (never over the data), one column up to 14 entries, two beyond;
    the figure grows to hold it (constrained layout keeps it inside)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False,
              ncols=1 if n <= 14 else 2, **kw)


@_plain_text
def comparison_figure(curves: Mapping[str, ArrayLike], *, task_names: Sequence[str] | None = None,
                      title: str | None = None, panels: Mapping[str, str] | None = None) -> Figure:
    """The figure of :func:`plot_comparison` (tests measure its text); with ``panels``, one axes per panel
    side by side, each with its legend beneath."""
    checked = _checked_curves(curves)
    T = max(y.size for y in checked.values())
    names = [str(i) for i in range(1, T + 1)] if task_names is None else _check_task_names(task_names, T)
    if panels and len(set(panels.values())) > 1:
        return _panel_figure(checked, panels, names, title)
    n = len(checked)
    width = max(len(_short(lab, 48)) for lab in checked) + 8  # legend characters
    fig = Figure(figsize=(max(5.5, 2.5 + 0.35 * T) + 0.07 * width * (1 if n <= 14 else 2),
                          max(3.8, 1.6 + 0.2 * min(n, 14))), layout="constrained")
    ax = fig.subplots()
    longest = max(len(n) for n in names)
    _curves_axes(ax, checked, names, slant=longest > 6 or (T > 8 and longest > 3))
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_ylabel("average accuracy over seen tasks")
    _legend_outside(fig, ax, n, title="run (final)", fontsize=8, title_fontsize=8)
    ax.set_title(title or "Average accuracy along the stream")
    return fig


def plot_accuracy_vs_memory(points: Mapping[str, tuple[float, float]], path: str | os.PathLike, *,
                            panels: Mapping[str, str] | None = None) -> Path:
    """Final average accuracy against the extra memory a method keeps (bytes, log scale), one labelled
    point per method: methods of equal memory can be read off side by side. ``panels`` as in
    :func:`plot_comparison` (one axes per benchmark/scenario). Returns ``path``."""
    return _save(accuracy_vs_memory_figure(points, panels=panels), path)


def _mb(x: float, _pos=None) -> str:
    """A tick of the memory axis as a plain number (mathtext is off: labels are data)."""
    return "0" if x == 0 else f"{x:g}"


def _memory_axes(ax, points: Mapping[str, tuple[float, float]], strip: str = "") -> None:
    """One axes of accuracy against memory (symlog MB, plain tick labels), one coloured point per method."""
    from matplotlib import colormaps
    from matplotlib.ticker import FuncFormatter, SymmetricalLogLocator

    cmap = colormaps["tab20" if len(points) > 10 else "tab10"]
    for k, (label, (mem, acc)) in enumerate(points.items()):
        shown = label[len(strip):] if strip and label.startswith(strip) else label
        ax.scatter([float(mem) / 1e6], [100.0 * acc], s=30, color=cmap(k % cmap.N), label=_short(str(shown), 48))
    ax.set_xscale("symlog", linthresh=0.01)  # 0 bytes (fine-tuning) stays on the axis
    most = max(float(mem) / 1e6 for mem, _ in points.values())
    ax.set_xlim(-0.004, max(0.1, most * 3))  # from just left of 0 to a decade past the largest
    ax.xaxis.set_major_locator(SymmetricalLogLocator(linthresh=0.01, base=10))
    ax.xaxis.set_major_formatter(FuncFormatter(_mb))  # "0.01", "1", "100": not $10^{-2}$ spelled out
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, pos=None: ""))
    ax.set_xlabel("extra memory after the last task (MB, log above 0.01)")
    ax.grid(True, alpha=0.3)


@_plain_text
def accuracy_vs_memory_figure(points: Mapping[str, tuple[float, float]], *,
                              panels: Mapping[str, str] | None = None) -> Figure:
    """The figure of :func:`plot_accuracy_vs_memory` (tests measure its text)."""
    if not points:
        raise UsageError("plot_accuracy_vs_memory needs at least one (memory, accuracy) point")
    title = "Accuracy against the memory each method keeps"
    names = sorted(set(panels.values())) if panels else []
    if len(names) > 1:
        most = max(sum(1 for lab in points if panels.get(lab) == p) for p in names)
        fig = Figure(figsize=(4.6 * len(names), 4.2 + 0.17 * most), layout="constrained")
        for i, (sub, p) in enumerate(zip(fig.subfigures(1, len(names), squeeze=False)[0], names)):
            ax = sub.subplots()
            _memory_axes(ax, {lab: v for lab, v in points.items() if panels.get(lab) == p}, strip=f"{p}: ")
            ax.set_title(p, fontsize=10)
            if i == 0:
                ax.set_ylabel("final average accuracy (%)")
            sub.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=7, frameon=False)
        fig.suptitle(title)
        return fig
    n = len(points)
    width = max(len(_short(str(lab), 48)) for lab in points)
    fig = Figure(figsize=(5.0 + 0.07 * width * (1 if n <= 14 else 2), max(4.0, 1.6 + 0.2 * min(n, 14))),
                 layout="constrained")
    ax = fig.subplots()
    _memory_axes(ax, points)
    _legend_outside(fig, ax, n, fontsize=7)
    ax.set_ylabel("final average accuracy (%)")
    ax.set_title(title, fontsize=10)
    return fig


@_plain_text
def plot_capacity(capacity: Mapping, task_names: Sequence[str], path: str | os.PathLike, title: str | None = None) -> Path:
    """Parameter isolation's capacity (``results["capacity"]``, see
    :mod:`lifelong.strategies.isolation.base`): per task, the share of the network it computes with
    (``used``) and the share it claimed or added (``own``), with the free share and the bytes of masks
    and extra parameters in the title."""
    used, own = np.asarray(capacity["used"], float), np.asarray(capacity["own"], float)
    names = _check_task_names(task_names, len(used))
    if len(own) != len(used):
        raise UsageError(f"capacity: {len(used)} 'used' shares but {len(own)} 'own' shares")
    fig = Figure(figsize=(max(4.0, 0.7 * len(used) + 2), 3.2))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(used))
    ax.bar(x - 0.2, used, width=0.4, label="used at test time", color="#4C72B0")
    ax.bar(x + 0.2, own, width=0.4, label="claimed or added by the task", color="#DD8452")
    ax.set_xticks(x, [_short(n, 10) for n in names], rotation=45 if len(used) > 6 else 0, fontsize=8)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"share of the {capacity['unit']}")
    free = capacity.get("free")
    mb = (capacity.get("mask_bytes", 0) + capacity.get("extra_parameter_bytes", 0)) / 1e6
    detail = f"{'' if free is None else f'free {100 * free:.1f}%, '}masks + extra parameters {mb:.2f} MB, " \
             f"{capacity.get('total_parameters', 0):,} parameters"
    ax.set_title(f"{title + ': ' if title else ''}capacity per task\n{detail}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


# ---- task-free streams -----------------------------------------------------------------------------
def _check_anytime(anytime: Mapping) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    points = anytime.get("points") if isinstance(anytime, Mapping) else None
    groups = anytime.get("groups") if isinstance(anytime, Mapping) else None
    if not points or not isinstance(groups, list):
        raise UsageError("anytime must hold points and groups (results.json's anytime of a task-free run)")
    n = np.array([p["samples"] for p in points], dtype=float)
    acc = np.array([np.nan if p["accuracy"] is None else p["accuracy"] for p in points], dtype=float)
    per = np.array([[a if s else np.nan for a, s in zip(p["groups"], p["seen"])] for p in points], dtype=float)
    return n, acc, per, [str(g) for g in groups]


@_plain_text
def plot_anytime(anytime: Mapping, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """A task-free run's accuracy against the training samples seen (:mod:`lifelong.eval.anytime`): the
    accuracy over the groups seen so far (bold) and each group's once it is seen (thin), with the area
    under the curve in the legend; above it, when the record has them, the schedule's shares (each
    group's share of the training samples along the stream, in the same colours). Returns ``path``."""
    n, acc, per, names = _check_anytime(anytime)
    shares = anytime.get("shares")
    fig = Figure(figsize=(7.0, 4.6 if shares else 3.6), layout="constrained")
    if shares:
        top, ax = fig.subplots(2, 1, sharex=True, height_ratios=(1, 3))
        _schedule_axes(top, np.asarray(shares, dtype=float), names, int(anytime.get("samples") or n.max()))
    else:
        ax = fig.add_subplot(1, 1, 1)
    colors = _task_colors(len(names))
    for g, name in enumerate(names):
        ax.plot(n, 100 * per[:, g], color=colors[g], lw=0.8, alpha=0.6, label=_short(name))
    m = anytime.get("metrics") or {}
    auc = m.get("auc_accuracy")
    label = "seen so far" + (f" (AUC {100 * auc:.1f}%)" if isinstance(auc, (int, float)) else "")
    ax.plot(n, 100 * acc, color="black", lw=2.2, label=label)
    ax.set_xlabel("training samples seen")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(0, max(float(n.max()), 1.0))
    ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    _legend_outside(fig, ax, len(names) + 1, fontsize=7)
    return _save(fig, path)


def _schedule_axes(ax, S: np.ndarray, names: Sequence[str], samples: int) -> None:
    if S.ndim != 2 or S.shape[1] != len(names):
        raise UsageError(f"shares must be (windows, {len(names)} groups), got {S.shape}")
    x = (np.arange(S.shape[0]) + 0.5) / S.shape[0] * samples
    ax.stackplot(x, 100 * S.T, colors=_task_colors(len(names)))
    ax.set_ylim(0, 100)
    ax.set_ylabel("share (%)", fontsize=8)
    ax.tick_params(labelsize=7)


@_plain_text
def plot_anytime_comparison(curves: Mapping[str, tuple[ArrayLike, ArrayLike]], path: str | os.PathLike, *,
                            panels: Mapping[str, str] | None = None, title: str | None = None) -> Path:
    """Task-free runs side by side: each method's accuracy on the groups seen against the samples seen
    (``label -> (samples, accuracy)``, accuracy as a fraction), one axes per panel when ``panels`` names
    several. Returns ``path``."""
    from matplotlib import colormaps

    if not curves:
        raise UsageError("plot_anytime_comparison needs at least one curve; got an empty mapping")
    names = list(dict.fromkeys((panels or {}).values())) or [""]  # in the order the curves come
    most = max(sum(1 for lab in curves if not panels or panels.get(lab) == p) for p in names)
    fig = Figure(figsize=(4.6 * len(names), 4.0 + 0.17 * most), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, p in zip(axes, names):
        mine = {lab: c for lab, c in curves.items() if not panels or panels.get(lab) == p}
        prefix = p.rsplit(": ", 1)[0] + ": "  # the label's benchmark/scenario, which the panel's title says
        for k, (label, (n, a)) in enumerate(mine.items()):
            shown = label[len(prefix):] if label.startswith(prefix) else label
            a = np.asarray(a, dtype=float)
            ax.plot(np.asarray(n, dtype=float), 100 * a, lw=1.5, color=colormaps["tab20" if len(mine) > 10 else "tab10"](k % 20),
                    label=f"{_short(shown, 40)} ({100 * a[-1]:.1f}%)")
        ax.set_ylim(0, 100)
        ax.set_xlabel("training samples seen")
        ax.grid(alpha=0.3)
        if p:
            ax.set_title(p, fontsize=10)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    axes[0].set_ylabel("accuracy on the groups seen (%)")
    fig.suptitle(title or "Accuracy along the stream")
    return _save(fig, path)


@_plain_text
def plot_schedule(shares: ArrayLike, group_names: Sequence[str], path: str | os.PathLike, *, samples: int | None = None,
                  title: str | None = None) -> Path:
    """A task-free stream's schedule: each group's share of the training samples (rows: windows of the
    stream in order; :meth:`lifelong.scenarios.taskfree.Timeline.shares`) as stacked areas. Returns ``path``."""
    S = np.asarray(shares, dtype=float)
    fig = Figure(figsize=(7.0, 2.6), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    _schedule_axes(ax, S, list(group_names), samples or S.shape[0])
    ax.set_xlim(0, samples or S.shape[0])
    ax.set_xlabel("training samples" if samples else "window of the stream")
    if title:
        ax.set_title(title, fontsize=10)
    from matplotlib.patches import Patch as _Patch

    colors = _task_colors(len(group_names))
    ax.legend(handles=[_Patch(color=c, label=_short(g)) for c, g in zip(colors, group_names)], loc="upper left",
              bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=7, ncols=1 if len(group_names) <= 14 else 2)
    return _save(fig, path)
