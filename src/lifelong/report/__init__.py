"""Reports: run outputs on disk (JSON, CSV), plots of the accuracy matrix, and the comparison table.

``write_run_outputs(run_dir, results)`` writes everything a run leaves behind; ``build_table`` turns
methods (grouped by :mod:`lifelong.experiments.collect`) into one table of methods × metrics (mean ± std
over seeds). Reporting imports nothing of orchestration and no library module imports it.
"""

from __future__ import annotations

from .files import RUN_OUTPUT_FILES, read_matrix_csv, to_jsonable, write_json, write_matrix_csv, write_run_outputs
from .plots import plot_accuracy_curves, plot_accuracy_matrix, plot_comparison
from .table import DEFAULT_METRICS, build_table, format_markdown, format_text, write_table

__all__ = [
    "DEFAULT_METRICS", "RUN_OUTPUT_FILES", "build_table", "format_markdown", "format_text", "plot_accuracy_curves",
    "plot_accuracy_matrix", "plot_comparison", "read_matrix_csv", "to_jsonable", "write_json", "write_matrix_csv",
    "write_run_outputs", "write_table",
]
