"""``compare --html``: one self-contained page (no file or server beside it), its table and each run's
config in it, and a real headless browser (Chromium, when installed) renders its tables and decodes
its images."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from lifelong.cli import main
from tests.experiments.test_collect import make_run, matrix


@pytest.fixture
def page(tmp_path):
    for seed in (0, 1):
        make_run(tmp_path / "runs", f"naive-{seed}", matrix(0.9, 0.8 - 0.1 * seed), seed=seed)
        make_run(tmp_path / "runs", f"ewc-{seed}", matrix(0.95, 0.85), strategy="ewc", seed=seed)
    table = main(["compare", str(tmp_path / "runs"), "--out", str(tmp_path / "cmp"), "--html"])
    return table["files"]["html"]


def test_the_page_is_self_contained_and_holds_the_table_and_every_run(page):
    text = page.read_text()
    assert re.findall(r'src="([^"]+)"', text) and all(s.startswith("data:image/png;base64,")
                                                       for s in re.findall(r'src="([^"]+)"', text))
    assert "<link" not in text and "http://" not in text and "https://" not in text
    assert text.count("<tr>") == 1 + 2  # the header and two methods
    assert text.count("<details>") == 4 and "&quot;lam&quot;: 100.0" in text  # each run's config
    assert text.count('href="') == 4


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no Chromium here (apt-get install chromium)")
def test_a_headless_browser_renders_the_tables_and_decodes_every_image(page):
    r = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                        "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    dom = r.stdout
    assert r.returncode == 0 and '<body data-images="ok">' in dom, (dom[:300], r.stderr[-500:])
    assert dom.count("<tr>") == 3 and "<table>" in dom
