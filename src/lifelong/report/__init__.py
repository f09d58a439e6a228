"""Reports: run outputs on disk (JSON, CSV) and plots of the accuracy matrix.

``write_run_outputs(run_dir, results)`` writes everything a run leaves behind; the pieces are
public for reuse (e.g. comparing methods with ``plot_comparison``).
"""

from __future__ import annotations

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
    "RUN_OUTPUT_FILES",
    "plot_accuracy_curves",
    "plot_accuracy_matrix",
    "plot_comparison",
    "read_matrix_csv",
    "to_jsonable",
    "write_json",
    "write_matrix_csv",
    "write_run_outputs",
]
