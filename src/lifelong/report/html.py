"""``lifelong compare DIR --html``: one self-contained HTML page of a comparison (the table, the plots
embedded as PNG data, each method's runs with their config and a link to their folder) that opens in a
browser from the file, without a server. It holds no script but a check that every image decoded
(``<body data-images="ok">`` once they have: what the headless-browser test reads)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Mapping

from .. import _io

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 0.3em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; height: auto; display: block; margin: 1em 0; }
details { margin: 0.3em 0; } pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 13px; }
.note { color: #555; }
"""

_CHECK = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const ok = imgs.every(i => i.complete && i.naturalWidth > 0);
  document.body.dataset.images = ok ? "ok" : "broken:" + imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;
});
</script>"""


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(table: Mapping[str, Any]) -> str:
    from .table import _cells

    header, body = _cells(dict(table))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _runs(table: Mapping[str, Any], groups: list[dict], out: Path) -> str:
    parts = []
    for row, g in zip(table["rows"], groups):
        items = []
        for r in g["runs"]:
            config = html.escape(json.dumps(r["config"], indent=2, sort_keys=True, default=str))
            if str(r["dir"]).startswith("record:"):  # read from a record file: no folder to link to
                _, file, name = str(r["dir"]).split(":", 2)
                items.append(f'<details><summary>seed {html.escape(str(r["config"].get("seed")))}: '
                             f'{html.escape(name)} (in {html.escape(Path(file).name)})</summary>'
                             f"<pre>{config}</pre></details>")
                continue
            folder = Path(r["dir"])
            try:
                href = folder.resolve().relative_to(out.resolve())
            except ValueError:
                href = folder.resolve()
            items.append(f'<details><summary>seed {html.escape(str(r["config"].get("seed")))}: '
                         f'<a href="{html.escape(href.as_posix())}">{html.escape(folder.name)}</a></summary>'
                         f"<pre>{config}</pre></details>")
        parts.append(f"<h3>{html.escape(row['label'])}</h3>{''.join(items)}")
    return "".join(parts)


def write_html(table: Mapping[str, Any], groups: list[dict], files: Mapping[str, Path], out: Path) -> Path:
    """``out/compare.html``: the table, the plots in ``files`` (embedded) and every run; returns its path."""
    images = "".join(_image(Path(files[k]), alt) for k, alt in (("png", "average accuracy along the stream"),
                                                                   ("memory_png", "accuracy against memory"))
                     if k in files)
    notes = "".join(f'<p class="note">Note: {html.escape(n)}.</p>' for n in table["notes"])
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>lifelong compare</title>'
            f"<style>{_STYLE}</style>{_CHECK}</head><body><h1>Comparison of {len(table['rows'])} methods</h1>"
            f"<p>Cells: mean ± sample standard deviation over seeds (n runs).</p>{_table(table)}{notes}{images}"
            f"<h2>Runs</h2>{_runs(table, groups, out)}</body></html>\n")
    return _io.atomic_write_text(out / "compare.html", page)
