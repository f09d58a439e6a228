"""The documentation site: it builds in strict mode (a broken link, anchor or reference fails), the CLI
reference is what the parser prints now, `--help` names pages that exist, the README stays a README
(short, every strategy in its table), and every Python block of every page at least compiles (the
named ones run in the tests that own them)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import README, ROOT

PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]


def test_the_site_builds_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").read_text().count("lifelong.Learner") > 0


def test_every_docs_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f" {page.name}" in nav, f"{page.name} is not in mkdocs.yml's nav"


def test_the_cli_reference_is_what_the_parser_prints():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_reference.py"), "--check"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_help_names_pages_that_exist():
    from lifelong.cli import DOCS, build_parser

    parser, _ = build_parser(("naive",))
    texts = [parser.format_help(), *(c.format_help() for c in parser._subparsers._group_actions[0].choices.values())]
    named = {p for t in texts for p in re.findall(r"docs/[\w/.-]+\.md", t)}
    assert named >= set(DOCS.values()) and named
    assert all((ROOT / p).is_file() for p in named), sorted(p for p in named if not (ROOT / p).is_file())


def test_the_readme_is_short_and_lists_every_strategy():
    from lifelong.strategies import registry

    text = README.read_text()
    assert len(text.splitlines()) <= 200
    table = {m.group(1): m.group(2) for m in re.finditer(r"^\| \[`([\w-]+)`\]\([^)]*\) \|[^|]*\|[^|]*\| (.*) \|$",
                                                           text, re.M)}
    assert set(table) == set(registry.STRATEGIES), sorted(set(table) ^ set(registry.STRATEGIES))
    for name, settings in table.items():  # the settings it names are the strategy's
        fields = {f.name for f in dataclasses.fields(registry.STRATEGIES[name].Settings)}
        assert set(re.findall(r"`(\w+)`", settings)) <= fields, (name, settings)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_python_block_compiles(page):
    for k, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.S)):
        compile(code, f"{page.name} block {k + 1}", "exec")


def test_one_version_string_named_by_the_changelog():
    import lifelong

    text = (ROOT / "CHANGELOG.md").read_text()
    first = re.search(r"^## (\S+)", text, re.M).group(1)
    assert first == lifelong.__version__
    assert "version =" not in (ROOT / "pyproject.toml").read_text().split("[tool.setuptools.dynamic]")[0]


def test_the_recorded_numbers_on_the_pages_are_those_of_their_records():
    """The README's and docs/results.md's results table, the EWC example line and the gap sentence are
    rendered from the committed results.json of their runs (scripts/recorded_numbers.py)."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "recorded_numbers.py"), "--check"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import json

    ewc = json.loads((ROOT / "docs" / "data" / "permuted-mnist" / "ewc.json").read_text())
    assert f"{100 * ewc['metrics']['average_accuracy']:.2f}%" in README.read_text()
    assert ewc["run_id"] in README.read_text()


def test_every_ratio_on_a_page_is_in_a_recorded_benchmark():
    """A speed ratio (``1.093×``) a page shows (README or docs/) must be a value, at the decimals shown, of
    a benchmark JSON committed in benchmarks/results/: a ratio typed by hand, or left over from an older
    run, fails. A target (``≤ 1.2×``) is a bound, not a measurement."""
    import json

    values = []

    def walk(o):
        if isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
        elif isinstance(o, (int, float)) and not isinstance(o, bool):
            values.append(float(o))

    for p in (ROOT / "benchmarks" / "results").glob("*.json"):
        walk(json.loads(p.read_text()))
    shown = [m.group(2) for page in [README, *sorted((ROOT / "docs").glob("*.md"))]
             for m in re.finditer(r"(≤ ?)?(\d+\.\d+)×", page.read_text()) if not m.group(1)]
    assert len(shown) > 50
    unsourced = [n for n in shown if not any(abs(round(v, len(n.split(".")[1])) - float(n)) < 1e-9 for v in values)]
    assert not unsourced, unsourced


def test_every_python_block_is_named_and_run_by_a_test():
    """Each ```python block of a page sits between ``<!-- NAME:start -->`` markers, and some test reads
    that block by its name (``readme_block("NAME")``, or extending's own reader): none is shown unrun."""
    tests_text = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("*.py"))
    for page in PAGES:
        text = page.read_text()
        blocks = len(re.findall(r"^```python$", text, re.M))
        named = re.findall(r"<!-- ([\w-]+):start -->\s*```python\n", text)
        assert len(named) == blocks, f"{page.name}: {blocks - len(named)} python block(s) without a name"
        for name in named:
            assert re.search(rf"""["']{re.escape(name)}["']""", tests_text), f"{page.name}: no test runs the {name} block"


def test_the_run_folder_table_lists_every_file_a_run_writes():
    """getting-started's table of a run folder names every file and folder a run may write (the names the
    folder check guards): a new output without a line there fails."""
    from lifelong.experiments.folder import LOCK_FILE, RUN_DIRS, RUN_FILES

    text = (ROOT / "docs" / "getting-started.md").read_text()
    missing = [n for n in (*RUN_FILES, *RUN_DIRS, LOCK_FILE) if f"`{n}" not in text]
    assert not missing, missing


def test_the_sweep_specs_the_docs_run_expand_to_the_runs_of_their_records():
    """Each spec in docs/sweeps/ is run by a block of scripts/recorded_numbers.py and makes exactly the runs
    its record in docs/data/ holds (same configs and seeds): the table a page shows is the one the command on
    that page gives."""
    import json

    from lifelong.experiments.config import RunConfig
    from lifelong.experiments.grid import expand, load_spec
    from lifelong.experiments.record import read_record

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import recorded_numbers
    finally:
        sys.path.pop(0)
    ran = {m for spec in recorded_numbers.RECORDS.values() for c in spec["commands"]
           for m in re.findall(r"lifelong sweep docs/sweeps/([\w-]+)\.json", c)}
    specs = sorted((ROOT / "docs" / "sweeps").glob("*.json"))
    assert {p.stem for p in specs} == ran
    for p in specs:
        made = expand(load_spec(p))
        runs, notes = read_record(ROOT / "docs" / "data" / p.name)
        assert not notes and len(made) == len(runs), p.name
        key = lambda c: (json.dumps(c.method_record(), sort_keys=True), c.seed)  # noqa: E731
        recorded = [RunConfig.from_record(r["raw_config"]).resolve() for r in runs]
        assert sorted(map(key, made)) == sorted(map(key, recorded)), p.name
