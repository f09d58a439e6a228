"""The bounds: naive fine-tuning trains on each task alone, joint training on every task seen so far."""

from __future__ import annotations

from lifelong.strategies import Context, Joint, Naive


def test_joint_trains_on_all_tasks_seen_so_far(permuted_stream):
    ctx = Context(None, None, stream=permuted_stream, task_index=1)
    assert [t.index for t in Joint().training_tasks(ctx)] == [0, 1]
    assert [t.index for t in Naive().training_tasks(ctx)] == [1]
