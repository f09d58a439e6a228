"""Shared fixtures: one thread for tiny problems, tiny streams and models (see ``tests/helpers.py``)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import tiny_model, tiny_stream


@pytest.fixture(scope="module")
def one_thread():
    """Tiny problems: one thread is fastest and leaves the shared machine's other core free."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def split_stream():
    """Split tiny MNIST, 2 tasks, task-incremental."""
    return tiny_stream()


@pytest.fixture(scope="module")
def permuted_stream():
    """Permuted tiny MNIST, 2 tasks, task-incremental."""
    return tiny_stream("permuted-mnist", "task", 2)


@pytest.fixture
def model_for():
    return tiny_model
