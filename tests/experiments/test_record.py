"""Records (`lifelong compare PATHS --record FILE`): one file that gives back the table of the folders it
was made from, refuses numbers edited by hand, and never overwrites a file that is not a record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lifelong.cli import console_main
from lifelong.errors import UsageError
from lifelong.experiments.collect import compare
from lifelong.experiments.record import is_record, read_record, record_summary
from tests.experiments.test_collect import make_run, matrix


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for seed, (a, b) in enumerate([(0.9, 0.8), (0.8, 0.6), (0.7, 0.7)]):
        make_run(root, f"naive-{seed}", matrix(a, b), seed=seed, extra_memory_bytes=0)
    for seed, (a, b) in enumerate([(0.9, 0.9), (0.95, 0.85)]):
        make_run(root, f"ewc100-{seed}", matrix(a, b), strategy="ewc", seed=seed)
    make_run(root, "ewc10-0", matrix(0.9, 0.7), strategy="ewc", lam=10.0)
    make_run(root / "class", "naive-0", matrix(0.5, 0.9), scenario="class")
    return root


METRICS = [None, ["average_accuracy", "peak_memory_bytes", "timings.total_seconds"]]


@pytest.mark.parametrize("metrics", METRICS)
def test_a_record_gives_the_table_of_its_folders(runs, tmp_path, metrics):
    rec = tmp_path / "rec.json"
    direct = compare([runs], write=False, quiet=True, metrics=metrics, record=rec)
    again = compare([rec], write=False, quiet=True, metrics=metrics)
    assert is_record(rec) and again["text"] == direct["text"] and again["markdown"] == direct["markdown"]
    assert [r["values"] for r in again["rows"]] == [r["values"] for r in direct["rows"]]
    # the runs keep the folder they came from, relative to the compared root
    assert sorted(r["run_dirs"][0].split(":", 2)[2] for r in again["rows"]) == sorted(
        str(Path(r["run_dirs"][0]).relative_to(runs)) for r in direct["rows"])
    # one line per run; a record of a record is the same record
    text = rec.read_text()
    assert len(text.splitlines()) == 2 + 7
    assert str(runs) not in text and "/data" not in text  # the machine's paths stay out of a shared file
    rec2 = tmp_path / "rec2.json"
    compare([rec], write=False, quiet=True, record=rec2)
    assert rec2.read_text() == text


def test_a_record_beside_folders_and_its_summary(runs, tmp_path):
    rec = tmp_path / "rec.json"
    compare([runs / "class"], write=False, quiet=True, record=rec)
    both = compare([rec, runs / "naive-0", runs / "naive-1"], write=False, quiet=True)
    assert sorted(r["n"] for r in both["rows"]) == [1, 2]
    got, notes = read_record(rec)
    s = record_summary(got)
    assert s["runs"] == 1 and s["seeds"] == [0] and s["threads"] == [None] and s["seconds"] == 2.5 and not notes


def _edit(rec: Path, fn) -> None:
    head, *lines, tail = rec.read_text().splitlines()
    entries = [json.loads(line.rstrip(",")) for line in lines]
    fn(entries)
    rec.write_text(head + "\n" + ",\n".join(json.dumps(e) for e in entries) + "\n" + tail + "\n")


@pytest.mark.parametrize("edit, words", [
    (lambda es: es[0]["results"]["metrics"].update(average_accuracy=0.99), "left out 1 damaged"),
    (lambda es: es[0]["results"].update(run_id="other"), "two different runs"),
    (lambda es: es[0]["results"]["accuracy_matrix"].pop(), "left out 1 damaged"),
])
def test_numbers_edited_in_a_record_are_refused(runs, tmp_path, edit, words):
    rec = tmp_path / "rec.json"
    compare([runs], write=False, quiet=True, record=rec)
    _edit(rec, edit)
    table = compare([rec], write=False, quiet=True)
    assert sum(r["n"] for r in table["rows"]) == 6
    assert any(words in n for n in table["notes"]), table["notes"]


def test_bad_records_and_targets_are_one_line_errors(runs, tmp_path, capsys):
    other = tmp_path / "notes.json"
    other.write_text('{"mine": 1}')
    assert console_main(["compare", str(runs), "--record", str(other)]) == 2
    assert other.read_text() == '{"mine": 1}'  # left as it was
    assert "not a lifelong record" in capsys.readouterr().err
    assert console_main(["compare", str(other)]) == 2
    assert "not a run folder or a lifelong record" in capsys.readouterr().err
    assert console_main(["compare", str(runs), "--record", str(tmp_path / "rec.txt")]) == 2
    assert "ending in .json" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "lifelong-record", "version": 99, "runs": []}')
    with pytest.raises(UsageError, match="version 99"):
        read_record(bad)
    bad.write_text('{"format": "lifelong-record", "version": 1, "runs": [')
    with pytest.raises(UsageError, match="not a readable lifelong record"):
        read_record(bad)


def test_the_cli_writes_a_record_and_the_html_names_record_runs(runs, tmp_path, capsys):
    rec = tmp_path / "out" / "rec.json"
    rec.parent.mkdir()
    assert console_main(["compare", str(runs), "--record", str(rec), "--out", str(tmp_path / "out")]) == 0
    assert str(rec) in capsys.readouterr().out
    assert console_main(["compare", str(rec), "--html"]) == 0  # writes beside the record
    page = (rec.parent / "compare.html").read_text()
    assert "ewc100-0 (in rec.json)" in page
