"""The bounds: naive fine-tuning trains on each task alone, joint training on every task seen so far."""

from __future__ import annotations

from lifelong.strategies import Context, Joint, Naive


def test_joint_trains_on_all_tasks_seen_so_far(permuted_stream):
    ctx = Context(None, None, stream=permuted_stream, task_index=1)
    assert [t.index for t in Joint().training_tasks(ctx)] == [0, 1]
    assert [t.index for t in Naive().training_tasks(ctx)] == [1]


def test_joint_end_trains_nothing_until_the_last_task_then_everything(permuted_stream):
    from lifelong.strategies import JointEnd

    stream = permuted_stream
    T = len(stream)
    for i in range(T):
        ctx = Context(None, None, stream=stream, task_index=i)
        assert [t.index for t in JointEnd().training_tasks(ctx)] == (list(range(T)) if i == T - 1 else [])


def test_the_accuracy_matrix_rows_of_each_joint_variant(tmp_path):
    """joint: every row trained (row i: joint training on tasks 1..i); joint-end: one trained row, the
    last, from the initial weights, with as many steps as epochs over the union of the tasks; rows before
    it are the untrained model's (equal to row 0) and the metrics measured from them are undefined."""
    import numpy as np

    from lifelong.cli import main
    from tests.helpers import TINY

    args = ["run", "--benchmark", "split-mnist", "--data-dir", str(TINY), "--epochs", "2", "--hidden", "32",
            "--batch-size", "16", "--quiet"]
    end, cum, naive = (main([*args, "--strategy", s, "--out", str(tmp_path / s)]).to_dict()
                       for s in ("joint-end", "joint", "naive"))
    R, C = np.array(end["accuracy_matrix"]), np.array(cum["accuracy_matrix"])
    T = R.shape[1]
    assert R.shape == C.shape == (T + 1, T)
    assert all(np.array_equal(R[i], R[0]) for i in range(1, T))  # nothing trained before the last task
    assert R[T].mean() > R[0].mean() + 0.2  # the one trained row
    assert end["steps_per_task"][:-1] == [0] * (T - 1)
    assert end["steps_per_task"][-1] >= sum(naive["steps_per_task"]) - T  # about the tasks' batches together
    assert end["steps_per_task"][-1] == cum["steps_per_task"][-1]  # 2 epochs over the union, as joint's last task
    assert all(C[i, :i].mean() > C[0, :i].mean() + 0.2 for i in range(1, T + 1))  # joint trains every row
    m = end["metrics"]
    assert m["backward_transfer"] is m["forward_transfer"] is m["forgetting"] is None
    assert "joint-end trains once" in end["undefined_metrics"]["backward_transfer"]
    assert m["average_accuracy"] == R[T].mean()
