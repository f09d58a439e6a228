"""Data-parallel runs (lifelong run --nproc N, torchrun): importances all-reduced over the ranks' shards
equal the single-process ones; a 2-rank run matches the 1-rank run; a killed 2-rank run resumes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lifelong import TaskStream
from lifelong.cli import main
from lifelong.importance import fisher_diag
from lifelong.importance.kfac import kron_factors
from lifelong.importance.mas import mas_importance
from lifelong.models import Heads
from lifelong.strategies import Context

from tests.helpers import ROOT, TINY

pytestmark = pytest.mark.process  # several processes each

HERE = Path(__file__).parent
ARGS = ["run", "--benchmark", "permuted-mnist", "--tasks", "2", "--iterations", "60", "--batch-size", "32",
        "--hidden", "32", "--data-dir", str(TINY), "--no-download", "--no-progress", "--threads", "1"]


def problem():
    """A float64 MLP and a 1-task stream of 23 samples (odd: the shards differ in size)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(23, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (23,), generator=g)
    stream = TaskStream.from_tensors([(x, y)], [(x, y)], scenario="domain")
    stream.tasks[0].train.images.data = x  # keep float64 (from_tensors stores float32 for the loop)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()
    return model, stream


def launch(cmd: list[str], n: int, cwd: Path) -> list[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "WORLD_SIZE": str(n), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen(cmd, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, cwd=cwd) for r in range(n)]
    return [p.wait(timeout=120) for p in procs]


def test_all_reduced_fisher_mas_kronecker_factors_and_gradients_equal_the_single_process_ones(tmp_path):
    out = tmp_path / "ranks.pt"
    assert launch([sys.executable, str(HERE / "ddp_worker.py"), str(out)], 2, tmp_path) == [0, 0]
    got = torch.load(out)
    model, stream = problem()
    ctx = Context(model, Heads.of(stream), stream=stream, task=stream[0], task_index=0)
    want_f = fisher_diag(model, ctx.task_batches(batch_size=23), "exact")
    want_m = mas_importance(model, ctx.task_batches(batch_size=23))
    want_k, _, n = kron_factors(model, ctx.task_batches(batch_size=23), "exact")
    assert got["kron_n"] == n == 23  # the sample counts are all-reduced with the sums
    for layer, f in want_k.items():
        for part in ("A", "G"):
            torch.testing.assert_close(got["kron"][layer][part], f[part], rtol=1e-12, atol=1e-15)
    x, y, _ = next(iter(ctx.task_batches(batch_size=11)))  # (x, y, live units)
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert got["world"] == 2
    for name in want_f:
        torch.testing.assert_close(got["fisher"][name], want_f[name], rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(got["mas"][name], want_m[name], rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(got["grads"][name], dict(model.named_parameters())[name].grad, rtol=1e-12, atol=1e-15)
        assert float(want_f[name].abs().max()) > 0


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """strategy -> its 2-rank run of ARGS (made once: several tests compare against it)."""
    done = {}

    def get(strategy: str) -> dict:
        if strategy not in done:
            done[strategy] = main([*ARGS, "--strategy", strategy, "--nproc", "2", "--checkpoint-every", "10",
                                   "--out", str(tmp_path_factory.mktemp("two") / strategy)])
        return done[strategy]

    return get


@pytest.mark.parametrize("strategy", ["ewc", "er", "derpp"])
def test_a_two_rank_run_matches_the_one_rank_run(tmp_path, strategy, two_ranks):
    """DER++ stores with each sample the logits its rank computed: gathered, the memory is the same on
    every rank and the run matches one process's."""
    one = main([*ARGS, "--strategy", strategy, "--out", str(tmp_path / "one")])
    two = two_ranks(strategy)
    assert two.run_id == one.run_id and two.processes == 2 and one.processes is None
    # the same global batches and gradient up to summation order: equal accuracies here, within noise always
    diff = abs(two.metrics["average_accuracy"] - one.metrics["average_accuracy"])
    assert diff <= 0.02, (one.accuracy_matrix, two.accuracy_matrix)
    assert one.accuracy_matrix[1][0] > 0.5 and two.accuracy_matrix[1][0] > 0.5
    events = [json.loads(x) for x in (Path(two.run_dir) / "events.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "step" for e in events) == 120  # rank 0 alone logs


def test_torchrun_and_nproc_are_the_same_run(tmp_path, two_ranks):
    a = two_ranks("ewc")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port),
           "-m", "lifelong", *ARGS, "--strategy", "ewc", "--out", str(tmp_path / "b")]  # as the README writes it
    assert subprocess.run(cmd, capture_output=True, timeout=180).returncode == 0
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert b["accuracy_matrix"] == a.accuracy_matrix and b["processes"] == 2


def _spawned(pid: int) -> list[int]:
    """The ranks a launcher started (its descendants running multiprocessing's spawn), in pid order."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            continue
        todo += kids
        out += [k for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]
    return sorted(out)


def test_one_rank_killed_ends_every_rank_in_one_line_and_the_run_resumes(tmp_path, two_ranks):
    """SIGKILL to one rank of a 2-rank run mid-task: the other stops, the command ends with one line naming
    the rank and the signal (no gloo traceback, no hang), and the resume from the last checkpoint reaches
    the uninterrupted run's matrix (a kill of the whole run leaves the same folder: see test_folder's
    kill fuzzer)."""
    import signal
    import time

    from lifelong.train.checkpoint import CHECKPOINT_FILE

    whole = two_ranks("ewc")
    out = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "lifelong", *ARGS, "--strategy", "ewc", "--checkpoint-every", "10",
                             "--nproc", "2", "--quiet", "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not (out / CHECKPOINT_FILE).exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
        ranks = _spawned(proc.pid)
        assert len(ranks) == 2 and proc.poll() is None
        os.kill(ranks[-1], signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    lines = err.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, err
    assert "data-parallel rank" in lines[0] and "killed by SIGKILL" in lines[0] and "--resume" in lines[0]
    assert _spawned(proc.pid) == []
    resumed = main(["run", "--resume", str(out), "--nproc", "2", "--no-progress", "--threads", "1"])
    assert resumed.accuracy_matrix == whole.accuracy_matrix


def test_rank_0_ending_before_training_never_leaves_the_others_waiting(tmp_path, two_ranks, capsys):
    """A finished run resumed with --nproc 2 reports its results; a folder rank 0 refuses is one line:
    both end at once instead of the other rank waiting forever for rank 0."""
    from lifelong.cli import console_main

    finished = two_ranks("ewc")
    again = main(["run", "--resume", finished.run_dir, "--nproc", "2", "--no-progress"])
    assert again.accuracy_matrix == finished.accuracy_matrix
    code = console_main([*ARGS, "--strategy", "si", "--nproc", "2", "--out", finished.run_dir])
    err = capsys.readouterr().err
    assert code == 2 and "holds another run" in err and err.count("\n") == 1


@pytest.mark.parametrize("args, says", [
    ([*ARGS, "--strategy", "mas", "--consolidate", "plateau", "--consolidate-every", "5", "--out", "{tmp}/out"],
     "--consolidate-every applies to --consolidate steps"),   # refused in every rank, before any joins the group
    (["run", "--resume", "{tmp}/out", "--no-progress"], "no config.json there"),  # a follower cannot read it
])
def test_an_error_every_rank_meets_before_the_run_starts_is_one_line_not_a_hang(tmp_path, capsys, args, says):
    """Each rank refused the command before rank 0 announced the run: the ranks > 0 take their part in rank
    0's release instead of leaving it waiting for them, and the command says the single process's line."""
    from lifelong.cli import console_main

    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    two = subprocess.run([sys.executable, "-m", "lifelong", *args, "--nproc", "2"], capture_output=True, text=True,
                         timeout=120)  # a hang fails here
    assert console_main(args) == two.returncode == 2
    one = capsys.readouterr().err
    assert two.stderr.count("\n") == 1 and says in two.stderr and two.stderr == one, (two.stderr, one)
    assert not (tmp_path / "out").exists()


def test_a_two_rank_task_free_run_matches_the_one_rank_run(tmp_path):
    """A task-free stream learned in its order by 2 ranks (EWC++): the same batches split, the same anytime
    points, the running Fisher all-reduced and consolidated at the same steps as one process's."""
    args = ["run", "--benchmark", "split-mnist", "--schedule", "gradual", "--batch-size", "10", *ARGS[9:], "--strategy",
            "online-ewc", "--gamma", "0", "--importance-every", "10", "--consolidate", "steps", "--consolidate-every", "50"]
    one = main([*args, "--out", str(tmp_path / "one")])
    two = main([*args, "--nproc", "2", "--out", str(tmp_path / "two")])
    assert two.run_id == one.run_id and two.processes == 2
    a, b = one.anytime["points"], two.anytime["points"]
    assert [p["samples"] for p in a] == [p["samples"] for p in b] and len(a) == 20
    assert max(abs(p["accuracy"] - q["accuracy"]) for p, q in zip(a, b)) <= 0.02, (a, b)
    assert one.consolidations == two.consolidations == [50, 100, 150, 200]  # every 50 of the stream's 200 steps
