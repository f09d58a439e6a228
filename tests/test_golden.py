"""Nothing moves: small fixed runs reproduce, bit for bit, the accuracy matrices and final weights
recorded before the core was reshaped (tests/golden/golden.json, by scripts/record_golden.py).

The two cases whose numbers changed on purpose are compared with tests/golden/changed.json instead,
each with its reason; the test also checks that they did change, so the list stays honest."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
GOLDEN = json.loads((ROOT / "tests" / "golden" / "golden.json").read_text())
CHANGED = json.loads((ROOT / "tests" / "golden" / "changed.json").read_text())


def _recorder():
    spec = importlib.util.spec_from_file_location("record_golden", ROOT / "scripts" / "record_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RECORDER = _recorder()


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_run_is_reproduced_exactly(name, one_thread):
    case = GOLDEN[name]
    got = RECORDER.run_case(case["args"])
    want = {**case, **CHANGED.get(name, {})}
    assert got["accuracy_matrix"] == want["accuracy_matrix"]  # every float, exactly
    assert got.get("val_accuracy_matrix") == want.get("val_accuracy_matrix")
    assert got["weights"] == want["weights"]  # a digest of every parameter's bytes


def test_the_cases_changed_on_purpose_are_listed_with_a_reason_and_did_change():
    assert set(CHANGED) == set(RECORDER.CHANGED) and set(CHANGED) <= set(GOLDEN)
    for name, new in CHANGED.items():
        assert new["why"] == RECORDER.CHANGED[name]
        old = GOLDEN[name]
        assert (new["accuracy_matrix"], new["weights"]) != (old["accuracy_matrix"], old["weights"])
