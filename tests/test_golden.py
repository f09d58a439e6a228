"""Nothing moves: small fixed runs reproduce, bit for bit, the accuracy matrices and final weights
recorded before the core was reshaped (tests/golden/golden.json, by scripts/record_golden.py). The
weights' digest is exact on the machine that recorded them; on another CPU (other kernels, other last
bits) each tensor's norm must agree to a relative tolerance, and the accuracy matrices stay exact.

The two cases whose numbers changed on purpose are compared with tests/golden/changed.json instead,
each with its reason; the test also checks that they did change, so the list stays honest."""

from __future__ import annotations

import importlib.util
import json

import pytest
from tests.helpers import ROOT

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
    assert RECORDER.same_weights(got, want), (got["machine"], want["machine"])  # bytes here, norms elsewhere


def test_weights_check_is_exact_on_the_recording_machine_and_a_tolerance_elsewhere():
    want = {"machine": "m1", "weights": "abc", "weight_norms": {"w": 2.0, "b": 1.0}}
    here = {"machine": "m1", "weights": "abd", "weight_norms": {"w": 2.0, "b": 1.0}}
    assert not RECORDER.same_weights(here, want)  # same machine: one bit off is a change
    assert RECORDER.same_weights({**here, "weights": "abc"}, want)
    tol = RECORDER.NORM_RTOL
    elsewhere = {"machine": "m2", "weights": "zzz", "weight_norms": {"w": 2.0 * (1 + tol / 2), "b": 1.0}}
    assert RECORDER.same_weights(elsewhere, want)
    assert not RECORDER.same_weights({**elsewhere, "weight_norms": {"w": 2.0 * (1 + 2 * tol), "b": 1.0}}, want)
    assert not RECORDER.same_weights({**elsewhere, "weight_norms": {"w": 2.0}}, want)  # a tensor went missing


def test_the_cases_changed_on_purpose_are_listed_with_a_reason_and_did_change():
    assert set(CHANGED) == set(RECORDER.CHANGED) and set(CHANGED) <= set(GOLDEN)
    for name, new in CHANGED.items():
        assert new["why"] == RECORDER.CHANGED[name]
        old = GOLDEN[name]
        assert (new["accuracy_matrix"], new["weights"]) != (old["accuracy_matrix"], old["weights"])
