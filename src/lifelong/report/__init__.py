"""Reports: run outputs on disk (JSON, CSV) and plots of the accuracy matrix.

``write_run_outputs(run_dir, results)`` writes everything a run leaves behind; the pieces are
public for reuse (e.g. comparing methods with ``plot_comparison``). ``compare(paths)`` aggregates
run folders into one table of methods × metrics (mean ± std over seeds; see
:mod:`lifelong.report.compare`).
"""

from __future__ import annotations

from lifelong.report.compare import DEFAULT_METRICS, compare, find_runs, format_markdown, format_text
from lifelong.report.files import (
    RUN_OUTPUT_FILES,
    read_matrix_csv,
    to_jsonable,
    write_json,
    write_matrix_csv,
    write_run_outputs,
)
from lifelong.report.plots import plot_accuracy_curves, plot_accuracy_matrix, plot_comparison

__all__ = [
    "DEFAULT_METRICS",
    "RUN_OUTPUT_FILES",
    "compare",
    "find_runs",
    "format_markdown",
    "format_text",
    "plot_accuracy_curves",
    "plot_accuracy_matrix",
    "plot_comparison",
    "read_matrix_csv",
    "to_jsonable",
    "write_json",
    "write_matrix_csv",
    "write_run_outputs",
]
