"""The per-sample engine (``lifelong.importance.persample``) against a brute-force loop, in float64.

``sum_sq_grads`` (the Fisher's) and ``sum_abs_grads`` (MAS's) with K = 3 random directions per
sample, by each path (hooks, torch.func, the per-sample loop), on every problem of the one table
(tests/problems.py); a tiny ``max_elements`` makes every chunked loop run in several pieces. In
float64 the engine and the loop differ by rounding only (~1e-15 relative), so 1e-8 is a tight yet
safe bound."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from lifelong.errors import UsageError
from lifelong.importance import sum_abs_grads, sum_sq_grads
from tests.problems import PROBLEMS, reference_per_sample, rel_err

RTOL = 1e-8

pytestmark = pytest.mark.usefixtures("one_thread")

ENGINES = {"sum_sq_grads": (sum_sq_grads, Tensor.square), "sum_abs_grads": (sum_abs_grads, Tensor.abs)}


@pytest.mark.parametrize("method", ["hooks", "func", "loop"])
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", PROBLEMS)
def test_the_engine_matches_a_loop_over_samples_and_directions(name: str, engine: str, method: str) -> None:
    fn, elementwise = ENGINES[engine]
    pr = PROBLEMS[name]()
    with torch.no_grad():
        C = pr.model.eval()(pr.x).shape[-1]
    v = torch.randn(3, pr.x.shape[0], C, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    if method == "hooks" and not pr.hooks:
        with pytest.raises(UsageError, match="method='auto'"):
            fn(pr.model, pr.x, v, method="hooks")
        return
    got = fn(pr.model, pr.x, v, method=method, max_elements=64)
    assert rel_err(got, reference_per_sample(pr.model, pr.x, v, elementwise)) <= RTOL
