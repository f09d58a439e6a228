"""Penalties: the shared quadratic penalty and the rules that merge a new task's importance into it."""

from .quadratic import (
    QuadraticState,
    add_quadratic_grad_,
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
    "QuadraticState", "add_quadratic_grad_", "detach_params", "empty_state", "merge_decay", "merge_sum", "quadratic_grad", "quadratic_penalty",
    "quadratic_penalty_reference", "state_from_tensors", "state_tensors",
]
