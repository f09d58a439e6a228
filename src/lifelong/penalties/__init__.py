"""Penalties: the shared quadratic penalty and the rules that merge a new task's importance into it."""

from .quadratic import (
    QuadraticState,
    detach_params,
    empty_state,
    merge_decay,
    merge_sum,
    quadratic_grad,
    quadratic_penalty,
    quadratic_penalty_reference,
    state_from_tensors,
    state_tensors,
)

__all__ = [
    "QuadraticState", "detach_params", "empty_state", "merge_decay", "merge_sum", "quadratic_grad", "quadratic_penalty",
    "quadratic_penalty_reference", "state_from_tensors", "state_tensors",
]
