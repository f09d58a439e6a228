"""The replay and distillation family against brute-force references: the memory's selection rules,
A-GEM's projection, DER's stored logits, LwF's and ER-ACE's losses by hand, iCaRL's herding and
nearest-mean classifier, and every method's state through a checkpoint and an interrupted run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.cli import main
from lifelong.data import load_dataset
from lifelong.errors import UsageError
from lifelong.models import Heads
from lifelong.scenarios import Batch, batches, split_classes
from lifelong.strategies import AGEM, DER, ER, ERACE, Context, DERpp, GDumb, ICaRL, LwF, Step
from lifelong.strategies.replay import Buffer, balanced_selection, distillation, herding, reservoir_slots
from lifelong.strategies.replay.agem import project
from lifelong.strategies.replay.icarl import features
from lifelong.train import TrainSettings, run_stream

from tests.helpers_process import kill_mid_task, stop_after_checkpoint
from tests.helpers import TINY

FAST = ["--data-dir", str(TINY), "--no-download", "--no-progress", "--hidden", "32", "--threads", "1"]


# ---- the memory's selection rules ------------------------------------------------------------------------


def _reservoir_one_by_one(seen, n, capacity, u):
    """Algorithm R, one sample at a time, with the same uniform draws ``u``."""
    slots = {}
    for k in range(n):
        g = seen + k
        j = g if g < capacity else math.floor(u[k] * (g + 1))
        if j < capacity:
            slots[j] = k
    return slots


@pytest.mark.parametrize("seen, n, capacity", [(0, 10, 25), (20, 10, 25), (100, 64, 25), (3, 200, 7), (0, 1, 1)])
def test_vectorized_reservoir_is_the_one_by_one_algorithm(seen, n, capacity):
    gen = torch.Generator().manual_seed(seen + n)
    u = torch.rand(n, generator=torch.Generator().manual_seed(seen + n), dtype=torch.float64).tolist()
    src, slot = reservoir_slots(seen, n, capacity, gen)
    assert dict(zip(slot.tolist(), src.tolist())) == _reservoir_one_by_one(seen, n, capacity, u)
    assert len(set(slot.tolist())) == len(slot)


def test_reservoir_keeps_every_sample_with_probability_budget_over_stream_length():
    N, M, trials = 60, 10, 3000
    counts = torch.zeros(N)
    gen = torch.Generator().manual_seed(0)
    for _ in range(trials):
        buf = Buffer(M)
        for start in range(0, N, 8):  # batches of 8, the last one shorter
            ids = torch.arange(start, min(N, start + 8))
            buf.add_reservoir(Batch(ids.float()[:, None], ids, ids * 0), gen)
        counts[buf.y[: len(buf)]] += 1
    p = counts / trials
    # each sample stays with probability M / N = 1/6; 3000 trials: std ≈ 0.0068, so 5 std ≈ 0.034
    assert (p - M / N).abs().max() < 0.034, p
    assert len(buf) == M and buf.seen == N


def test_balanced_selection_gives_each_key_its_quota_keeps_the_first_old_ones_and_draws_new_ones_at_random():
    old = torch.tensor([0, 0, 0, 1, 1, 0, 1, 1])  # stored order
    new = torch.tensor([2, 3, 2, 3, 2, 3, 2, 2, 3])
    draws = set()
    for seed in range(30):
        keep, take = balanced_selection(old, new, 2, torch.Generator().manual_seed(seed))
        assert keep.tolist() == [0, 1, 3, 4]  # the first two of key 0 and of key 1
        assert sorted(new[take].tolist()) == [2, 2, 3, 3]
        draws.add(tuple(sorted(take.tolist())))
    assert len(draws) > 5  # random among each key's candidates
    _, take = balanced_selection(old[:0], new, 10, torch.Generator())  # fewer than the quota: all of them
    assert sorted(take.tolist()) == list(range(len(new)))


def _split_stream(scenario="class", tasks=((0, 1), (2, 3), (4, 5))):
    return split_classes(load_dataset("mnist", TINY, download=False), tasks, scenario, seed=0)


def step_at(ctx, strategy, x, y, t):
    """A step record through prepare_batch and forward (the model's own scores), as the driver makes it."""
    step = Step(Batch(x, y, t).with_source(), ctx.step, ctx.task_step)
    step.batch = step.inputs = strategy.prepare_batch(ctx, step).with_source()
    step.logits = ctx.model(step.inputs.x)
    return step


def test_class_balanced_memory_splits_the_budget_between_classes_and_stays_within_it():
    stream = _split_stream()
    buf, gen = Buffer(90, "class"), torch.Generator().manual_seed(0)
    for t in stream:
        buf.select(t, stream.n_outputs, gen)
        counts = torch.bincount(buf.y[: len(buf)], minlength=10)
        seen = [c for task in stream.tasks[: t.index + 1] for c in task.classes]
        assert all(counts[c] == min(90 // len(seen), int((t.train.targets == c).sum()) if c in t.classes else 99)
                   for c in seen)
        assert len(buf) <= 90
    per_task = Buffer(90, "task")
    for t in stream:
        per_task.select(t, stream.n_outputs, gen)
    assert torch.bincount(per_task.task).tolist() == [30, 30, 30]


def test_a_reservoir_memory_holds_budget_bytes_whatever_the_number_of_tasks(tmp_path):
    sizes = []
    for tasks in ("2", "5"):
        r = main(["run", "--benchmark", "split-mnist", "--tasks", tasks, "--scenario", "class", "--strategy", "er",
                  "--memory", "50", "--epochs", "1", "--out", str(tmp_path / tasks), *FAST])
        sizes.append(r.replay_memory)
    assert sizes[0] == sizes[1] == {"samples": 50, "budget": 50, "bytes": 50 * (28 * 28 * 4 + 8 + 8), "policy": "reservoir"}


# ---- the methods' arithmetic -----------------------------------------------------------------------------


def test_agem_projection_removes_the_conflict_and_leaves_agreeing_gradients_alone():
    torch.manual_seed(0)
    g = [torch.randn(5, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)]
    r = [-1.5 * g[0] + 0.1 * torch.randn(5, 3, dtype=torch.float64), -g[1]]  # conflicting
    flat_g, flat_r = torch.cat([x.flatten() for x in g]), torch.cat([x.flatten() for x in r])
    assert flat_g @ flat_r < 0
    want = flat_g - (flat_g @ flat_r) / (flat_r @ flat_r) * flat_r  # eq. 11
    proj = [x.clone() for x in g]
    project(proj, r)
    flat = torch.cat([x.flatten() for x in proj])
    torch.testing.assert_close(flat, want, rtol=0, atol=1e-12)
    assert abs(float(flat @ flat_r)) < 1e-10  # on the boundary of the cone: ⟨g̃, g_ref⟩ = 0 ≥ 0
    agree = [x.clone() for x in g]
    project(agree, [x.clone() for x in g])  # no conflict: unchanged to the bit
    assert all(torch.equal(a, b) for a, b in zip(agree, g))
    zero = [x.clone() for x in g]
    project(zero, [torch.zeros_like(x) for x in g])  # an empty reference gradient changes nothing (no nan)
    assert all(torch.equal(a, b) for a, b in zip(zero, g))


def _ctx(stream, model=None, task_index=1):
    model = model or nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 16), nn.ReLU(), nn.Linear(16, stream.n_outputs))
    ctx = Context(model, Heads.of(stream), stream=stream, generator=torch.Generator().manual_seed(0))
    ctx.task, ctx.task_index = stream[task_index], task_index
    return ctx


def test_agem_step_gradient_does_not_conflict_with_the_memory_gradient():
    stream = _split_stream()
    ctx = _ctx(stream)
    agem = AGEM(memory=40, ref_batch=40)
    agem.buffer.select(stream[0], stream.n_outputs, torch.Generator().manual_seed(0))
    x, y, t, _ = next(batches([stream[1]], "train", batch_size=32))
    loss = F.cross_entropy(ctx.heads.logits(ctx.model(x), t, 1), y)
    ctx.model.zero_grad()
    loss.backward()
    before = [p.grad.clone() for p in ctx.model.parameters()]
    agem.after_backward(ctx, Step(Batch(x, y, t).with_source(), 0, 0))
    mem = agem.buffer.batch(slice(0, 40))
    ref = torch.autograd.grad(F.cross_entropy(ctx.heads.logits(ctx.model(mem.x), mem.task, 1), mem.y),
                              list(ctx.model.parameters()))
    dot = lambda a, b: sum(float((u * v).sum()) for u, v in zip(a, b))  # noqa: E731
    after = [p.grad for p in ctx.model.parameters()]
    assert dot(after, ref) >= -1e-6 * (dot(before, before) * dot(ref, ref)) ** 0.5
    if dot(before, ref) >= 0:
        assert all(torch.equal(a, b) for a, b in zip(after, before))


def test_der_stores_the_logits_the_model_gave_when_storing_and_matches_them():
    stream = _split_stream()
    ctx = _ctx(stream, task_index=0)
    der = DERpp(memory=64, alpha=0.7, beta=0.4)
    x, y, t, _ = next(batches([stream[0]], "train", batch_size=32))
    step = step_at(ctx, der, x, y, t)
    assert set(der.losses(ctx, step)) == {"task"}  # empty memory: plain cross-entropy
    der.after_step(ctx, step)
    torch.testing.assert_close(der.buffer.logits[:32], ctx.model(x).detach(), rtol=0, atol=0)
    # with a memory: CE(B) + β CE(B'') + α MSE(f(x'), z') by hand
    with torch.no_grad():
        ctx.model[1].weight.mul_(0.5)
    x2, y2, t2, _ = next(batches([stream[0]], "train", batch_size=16, shuffle=True, generator=torch.Generator()))
    step = step_at(ctx, der, x2, y2, t2)
    batch, logits = step.batch, step.logits
    assert len(batch.y) == 16 + 2 * 16 and batch.source.tolist() == [0] * 16 + [1] * 16 + [2] * 16
    terms = der.losses(ctx, step)
    assert list(terms) == ["task", "replay", "logits"]
    m1, m2 = slice(16, 32), slice(32, 48)
    idx1 = [int((der.buffer.x[:32] == batch.x[i]).flatten(1).all(1).nonzero()) for i in range(16, 32)]
    torch.testing.assert_close(terms["task"], F.cross_entropy(logits[:16], y2))
    torch.testing.assert_close(terms["logits"], 0.7 * ((logits[m1] - der.buffer.logits[idx1]) ** 2).mean())
    torch.testing.assert_close(terms["replay"], 0.4 * F.cross_entropy(logits[m2], batch.y[m2]))
    der.after_step(ctx, step)  # stores the current rows (source 0) only, with their logits
    assert der.buffer.seen == 48


def test_lwf_distillation_is_the_hand_computed_soft_cross_entropy():
    torch.manual_seed(0)
    s, t, T = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64), 2.0
    mask = torch.tensor([True, True, False, True, False])
    want = 0.0
    for i in range(4):
        p = [math.exp(t[i, k] / T) for k in range(5) if mask[k]]
        q = [math.exp(s[i, k] / T) for k in range(5) if mask[k]]
        want += -sum(pk / sum(p) * math.log(qk / sum(q)) for pk, qk in zip(p, q)) / 4
    assert abs(float(distillation(s, t, T, mask)) - want) < 1e-12
    assert abs(float(distillation(s, t, T)) - float(distillation(s, t, T, torch.ones(5, dtype=torch.bool)))) < 1e-12
    # the student over more units than the teacher: the teacher's probabilities padded with zeros
    wide = torch.tensor([True, True, True, True, False])
    want = 0.0
    for i in range(4):
        p = [math.exp(t[i, k] / T) for k in range(5) if mask[k]]
        q = [math.exp(s[i, k] / T) for k in range(5) if wide[k]]
        logq = {k: math.log(math.exp(s[i, k] / T) / sum(q)) for k in range(5) if wide[k]}
        want += -sum(pk / sum(p) * logq[k] for pk, k in zip(p, [k for k in range(5) if mask[k]])) / 4
    assert abs(float(distillation(s, t, T, mask, wide)) - want) < 1e-12


def test_lwf_in_a_stream_distils_the_model_of_the_previous_task_over_its_units():
    stream = _split_stream("task")
    ctx = _ctx(stream, task_index=0)
    lwf = LwF(alpha=2.0, temperature=3.0)
    x, y, t, _ = next(batches([stream[0]], "train", batch_size=8))
    assert lwf.losses(ctx, step_at(ctx, lwf, x, y, t)) == {}  # first task: nothing to distil
    ctx.task, ctx.task_index = stream[2], 2
    lwf.before_task(ctx)
    teacher = lwf.teacher.model
    with torch.no_grad():
        ctx.model[3].bias.add_(1.0)
    x, y, t, _ = next(batches([stream[2]], "train", batch_size=8))
    step = step_at(ctx, lwf, x, y, t)
    z = step.logits
    got = lwf.losses(ctx, step)["distill"]
    old = teacher(x)
    want = 2.0 * sum(distillation(z, old, 3.0, stream[j].mask) for j in (0, 1)) / 2
    torch.testing.assert_close(got, want)


def test_er_ace_masks_the_current_batch_to_its_classes_and_adds_the_memory_cross_entropy():
    stream = _split_stream()
    ctx = _ctx(stream, task_index=1)
    ace = ERACE(memory=20, policy="class")
    ace.buffer.select(stream[0], stream.n_outputs, torch.Generator().manual_seed(0))
    x, y, t, _ = next(batches([stream[1]], "train", batch_size=8))
    step = step_at(ctx, ace, x, y, t)
    batch, z = step.batch, step.logits
    terms = ace.losses(ctx, step)
    got = terms["task"] + terms["replay"]
    present = torch.zeros(stream.n_outputs, dtype=torch.bool)
    present[y.unique()] = True
    want = (F.cross_entropy(z[:8].masked_fill(~present, float("-inf")), y)
            + F.cross_entropy(z[8:], batch.y[8:]))
    torch.testing.assert_close(got, want)


def test_er_task_weighting_is_one_over_t_for_the_current_batch():
    stream = _split_stream()
    ctx = _ctx(stream, task_index=2)
    er = ER(memory=20, policy="class", weighting="tasks", replay_batch=6)
    er.buffer.select(stream[0], stream.n_outputs, torch.Generator().manual_seed(0))
    x, y, t, _ = next(batches([stream[2]], "train", batch_size=8))
    step = step_at(ctx, er, x, y, t)
    batch, z = step.batch, step.logits
    assert len(batch.y) == 14 and len(set(batch.x[8:].flatten(1).sum(1).tolist())) == 6  # 6 distinct samples
    terms = er.losses(ctx, step)
    torch.testing.assert_close(terms["task"], F.cross_entropy(z[:8], y) / 3)
    torch.testing.assert_close(terms["replay"], 2 / 3 * F.cross_entropy(z[8:], batch.y[8:]))


def test_herding_picks_the_sample_that_brings_the_running_mean_nearest_the_class_mean():
    torch.manual_seed(0)
    phi = F.normalize(torch.randn(30, 6, dtype=torch.float64), dim=1)
    mu = phi.mean(0)
    picks, total = [], torch.zeros(6, dtype=torch.float64)
    for k in range(1, 11):  # brute force: try every remaining sample
        best = min((i for i in range(30) if i not in picks), key=lambda i: float(((mu - (total + phi[i]) / k) ** 2).sum()))
        picks.append(best)
        total += phi[best]
    assert herding(phi, 10).tolist() == picks


def test_icarl_classifies_by_the_nearest_mean_of_exemplar_features():
    stream = _split_stream()
    ctx = _ctx(stream, task_index=1)
    icarl = ICaRL(memory=40)
    for i in (0, 1):
        ctx.task, ctx.task_index = stream[i], i
        icarl.after_task(ctx)
    assert sorted(torch.bincount(icarl.buffer.y, minlength=6).tolist()) == [0] * 2 + [10] * 4
    x, _, t, _ = next(batches([stream[1]], "test", batch_size=50))
    with torch.no_grad():
        phi, _ = features(ctx.model, x)
        means = {}
        for c in range(4):
            f, _ = features(ctx.model, icarl.buffer.x[icarl.buffer.y == c])
            means[c] = F.normalize(f.mean(0), dim=0)
        direct = torch.tensor([min(means, key=lambda c: float((phi[i] - means[c]).norm())) for i in range(50)])
        assert torch.equal(icarl.predict(ctx, x, t).argmax(1), direct)


def test_gdumb_trains_from_the_initial_weights_on_the_memory_alone():
    stream = _split_stream()
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 16), nn.ReLU(), nn.Linear(16, 6))
    init = {k: v.clone() for k, v in model.state_dict().items()}
    gd = GDumb(memory=30)
    ctx = _ctx(stream, model=model, task_index=0)
    gd.before_task(ctx)
    with torch.no_grad():
        model[1].weight.add_(1.0)
    ctx.task, ctx.task_index = stream[1], 1
    gd.before_task(ctx)
    assert all(torch.equal(v, init[k]) for k, v in model.state_dict().items())
    (mem,) = gd.training_tasks(ctx)
    assert sorted(mem.train.targets.unique().tolist()) == [0, 1, 2, 3] and len(mem.train) <= 30


def test_settings_that_cannot_work_together_are_one_line_errors():
    for bad, msg in [(dict(mixing="concat"), "er: mixing 'concat' needs a memory fixed during a task"),
                     (dict(per_class=5), "er: per_class needs policy='class'"),
                     (dict(memory=0), "er: memory must be")]:
        with pytest.raises(UsageError, match=msg):
            ER(**bad)
    with pytest.raises(UsageError, match="icarl: policy must be 'class'"):
        ICaRL(policy="reservoir")


# ---- every method's state: a checkpoint and an interrupted run --------------------------------------------

METHODS = [
    ["er"], ["er", "--memory-policy", "task", "--replay-mixing", "concat"], ["er", "--replay-weighting", "tasks"],
    ["er-ace"], ["agem"], ["gem"], ["gem", "--replay-mixing", "concat"], ["der"], ["derpp"], ["lwf"], ["icarl", "--memory", "60"], ["gdumb"], ["ewc+er"],
]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: "-".join(m))
def test_an_interrupted_replay_run_resumes_to_the_same_matrix_and_memory(tmp_path, monkeypatch, method):
    memory = [] if "--memory" in method or method == ["lwf"] else ["--memory", "40"]
    args = ["run", "--benchmark", "split-mnist", "--tasks", "3", "--scenario", "class", "--strategy", *method,
            *memory, "--iterations", "12", "--batch-size", "16", "--checkpoint-every", "5", *FAST]
    whole = main([*args, "--out", str(tmp_path / "whole")])
    stop_after_checkpoint(monkeypatch, args, tmp_path / "cut", task=2, step=10)
    resumed = main(["run", "--resume", str(tmp_path / "cut"), "--no-progress", "--threads", "1"])
    assert resumed.accuracy_matrix == whole.accuracy_matrix
    assert resumed.replay_memory == whole.replay_memory
    assert resumed.extra_memory_bytes == whole.extra_memory_bytes > 0  # LwF: the previous model


@pytest.mark.process
def test_a_replay_run_killed_mid_task_resumes_bit_exactly(tmp_path):
    args = ["run", "--benchmark", "split-mnist", "--tasks", "3", "--scenario", "class", "--strategy", "derpp",
            "--memory", "100", "--iterations", "300", "--checkpoint-every", "7", *FAST]
    whole = main([*args, "--out", str(tmp_path / "whole")])
    out = tmp_path / "killed"
    kill_mid_task(args, out, task=1, min_step=30)
    resumed = main(["run", "--resume", str(out), "--no-progress", "--threads", "1"])
    assert resumed.accuracy_matrix == whole.accuracy_matrix


def test_a_replay_strategy_runs_in_a_plain_python_stream():
    stream = _split_stream()
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 32), nn.ReLU(), nn.Linear(32, 6))
    r = run_stream(model, stream, DER(memory=50), TrainSettings("adam", 1e-3, iterations=10), device="cpu")
    # inputs, target, task id and 6 logits per sample, plus the reservoir's count
    assert r.replay_memory["samples"] == 50 and r.extra_memory_bytes == 50 * (28 * 28 * 4 + 16 + 24) + 8


# ---- --train-samples ----------------------------------------------------------------------------------------


def test_train_samples_keeps_a_seeded_subset_of_each_task_in_order_and_leaves_the_run_id_of_others_alone():
    from lifelong.experiments.config import RunConfig
    from lifelong.scenarios import subsample_train

    stream = _split_stream()
    a, b, c = (subsample_train(stream, 50, seed) for seed in (0, 0, 1))
    for t, ta, tb, tc in zip(stream, a, b, c):
        assert len(ta.train) == 50 and torch.equal(ta.train.images, tb.train.images)
        assert not torch.equal(ta.train.images, tc.train.images)
        assert torch.equal(ta.test.images, t.test.images)
        # a subset of the original training samples, in their original order
        flat = t.train.images.flatten(1)
        pos = [int((flat == row).all(1).nonzero()[0]) for row in ta.train.images.flatten(1)]
        assert pos == sorted(pos) and torch.equal(t.train.targets[pos], ta.train.targets)
    with pytest.raises(UsageError, match="more than task 'classes 0-1''s"):
        subsample_train(stream, 10**6)
    published = {"dataset": "mnist", "md5": {}, "canonical": True}
    plain = RunConfig.make(benchmark="split-mnist", strategy="er").resolve().with_data(published)
    assert "train_samples" not in plain.id_record()  # a field added later leaves the ids of runs without it alone
    sub = RunConfig.make(benchmark="split-mnist", strategy="er", train_samples=1000).resolve().with_data(published)
    assert sub.run_id != plain.run_id


# ---- GEM ------------------------------------------------------------------------------------------------


def _gem_problem(t: int, seed: int, collinear: bool = False):
    gen = torch.Generator().manual_seed(seed)
    G = torch.randn(t, 40, generator=gen, dtype=torch.float64)
    if collinear and t > 1:  # memories whose gradients nearly coincide: P close to singular but for the ridge
        G[1:] = G[:1] + 1e-4 * G[1:]
    g = -G.sum(0) * torch.rand(1, generator=gen, dtype=torch.float64) + torch.randn(40, generator=gen, dtype=torch.float64)
    return G @ G.T + 1e-3 * torch.eye(t, dtype=torch.float64), G @ g  # the dual's P (with GEM's ridge) and c


@pytest.mark.parametrize("t", [1, 2, 3, 5, 8, 13, 20, 35, 50])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("collinear", [False, True])
def test_gem_dual_solution_satisfies_the_kkt_conditions(t, seed, collinear):
    from lifelong.strategies.replay import gem_dual

    P, c = _gem_problem(t, 1000 * t + seed, collinear)
    margin = 0.5
    v = gem_dual(P, c, margin)
    grad = P @ v + c  # of ½ vᵀPv + cᵀv
    tol = 1e-9 * float(P.abs().max() + c.abs().max())
    assert (v >= margin - 1e-12).all()  # primal feasibility
    assert (grad >= -tol).all()  # dual feasibility: no descent direction into the feasible set
    assert float(((v - margin) * grad).abs().max()) < tol * max(1.0, float(v.abs().max()))  # complementarity
    gen = torch.Generator().manual_seed(seed)
    obj = lambda u: float(0.5 * u @ P @ u + c @ u)  # noqa: E731
    for _ in range(50):  # and no random feasible point does better
        u = margin + torch.rand(t, generator=gen, dtype=torch.float64) * 3
        assert obj(v) <= obj(u) + 1e-9 * abs(obj(u))


@pytest.mark.parametrize("t", range(1, 9))
def test_gem_dual_equals_the_enumeration_of_every_active_set(t):
    from lifelong.strategies.replay.agem import gem_dual, gem_dual_enumerate

    for seed in range(12):
        P, c = _gem_problem(t, 7 * seed + t, collinear=seed % 3 == 0)
        for margin in (0.0, 0.5):
            assert torch.allclose(gem_dual(P, c, margin), gem_dual_enumerate(P, c, margin), rtol=0, atol=1e-9)


def test_the_nonnegative_qp_refuses_to_loop_forever():
    from lifelong.strategies.replay.agem import nonnegative_qp

    P, c = _gem_problem(6, 3)
    with pytest.raises(RuntimeError, match="did not converge in 1 passes"):
        nonnegative_qp(P, c - 10 * P.sum(1), max_iter=1)


def test_gem_step_gradient_agrees_with_every_earlier_tasks_memory():
    from lifelong.strategies import GEM

    stream = _split_stream()
    ctx = _ctx(stream, task_index=2)
    gem = GEM(memory=60, margin=0.0)
    for i in (0, 1):
        gem.buffer.select(stream[i], stream.n_outputs, torch.Generator().manual_seed(i))
    x, y, t, _ = next(batches([stream[2]], "train", batch_size=32))
    ctx.model.zero_grad()
    F.cross_entropy(ctx.heads.logits(ctx.model(x), t, 2), y).backward()
    before = [p.grad.clone() for p in ctx.model.parameters()]
    gem.after_backward(ctx, Step(Batch(x, y, t).with_source(), 0, 0))
    after = [p.grad for p in ctx.model.parameters()]
    for k in (0, 1):
        mem = gem.buffer.batch((gem.buffer.task == k).nonzero().squeeze(1))
        ref = torch.autograd.grad(F.cross_entropy(ctx.heads.logits(ctx.model(mem.x), mem.task, 2), mem.y),
                                  list(ctx.model.parameters()))
        dot = sum(float((a * r).sum()) for a, r in zip(after, ref))
        scale = sum(float((r * r).sum()) for r in ref) ** 0.5 * sum(float((b * b).sum()) for b in before) ** 0.5
        # ⟨g̃, g_k⟩ = (Pv + Gg)_k − 10⁻³ v_k ≥ −10⁻³ v_k: GEM's ridge relaxes the constraint by that much
        assert dot >= -1e-3 * scale


# ---- memory-matched comparison ---------------------------------------------------------------------------


def test_compare_memory_shows_each_methods_extra_bytes_and_plots_accuracy_against_them(tmp_path):
    from lifelong.experiments.collect import compare

    results = {}
    for method in (["ewc"], ["er", "--memory", "30"], ["naive"]):
        r = main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--scenario", "class", "--strategy", *method,
                  "--iterations", "3", "--out", str(tmp_path / "runs" / method[0]), *FAST])
        results[method[0]] = r.extra_memory_bytes
    # EWC: importance and anchor of every parameter (float32) and the penalty's float64 offset; naive:
    # nothing; ER: 30 samples (float32 inputs, int64 target and task) and the reservoir's int64 count
    n_params = (28 * 28 * 32 + 32) + (32 * 4 + 4)
    assert results == {"ewc": 2 * 4 * n_params + 8, "er": 30 * (28 * 28 * 4 + 16) + 8, "naive": 0}
    table = compare([tmp_path / "runs"], memory=True, quiet=True, out=tmp_path / "cmp")
    got = {r["strategy"]: r["values"]["extra_memory_bytes"]["mean"] for r in table["rows"]}
    assert got == results
    assert "memory (MB)" in table["text"] and "memory = extra_memory_bytes" in table["text"] and (tmp_path / "cmp" / "compare-memory.png").stat().st_size > 0


def test_icarl_refuses_a_model_without_a_linear_output_layer_before_training():
    stream = _split_stream()

    class NoLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 6, 28)

        def forward(self, x):
            return self.conv(x).flatten(1)

    with pytest.raises(UsageError, match="icarl needs a model whose output layer is an nn.Linear"):
        run_stream(NoLinear(), stream, ICaRL(memory=20), TrainSettings(iterations=2), device="cpu")


# ---- the recipes' new rows ------------------------------------------------------------------------------


def test_recipe_rows_that_share_a_strategy_are_kept_apart_and_carry_their_own_run_fields(tmp_path):
    from lifelong.experiments.recipes import hsu2018, reproduce, vandeven2022

    gem = hsu2018.config("gem", "class", 0)
    assert (gem.strategy_name, gem.train.optimizer, gem.train.lr, gem.strategy.memory, gem.strategy.policy,
            gem.strategy.mixing) == ("gem", "sgd", 0.01, 1100, "task", "concat")
    small, big = hsu2018.config("rehearsal-1100", "task", 0), hsu2018.config("rehearsal-4400", "task", 0)
    assert (small.strategy.memory, big.strategy.memory, small.strategy.mixing) == (1100, 4400, "concat")
    er = vandeven2022.config("er", "class", 3)
    assert (er.strategy.per_class, er.strategy.weighting, er.stream.shuffle_classes, er.train.iterations,
            er.stream.pad) == (100, "tasks", True, 2000, 0)
    res = reproduce("hsu2018-split-mnist", [0, 1], out=tmp_path / "r", methods=["rehearsal-1100", "rehearsal-4400", "gem"],
                    scenarios=["class"], data_dir=str(TINY), download=False, epochs=1, hidden=(16,), threads=1, quiet=True)
    rows = {r["method"]: r for r in res["rows"]}
    assert set(rows) == {"rehearsal-1100", "rehearsal-4400", "gem"} and all(r["n"] == 2 for r in rows.values())
    by_id = {r["id"]: r for r in res["runs"]}
    assert len(by_id) == 6 and {r["config"]["train"]["optimizer"] for r in by_id.values()} == {"adam", "sgd"}
    assert "GEM (memory 1100)" in res["table"] and "Naive rehearsal-C (4400)" in res["table"]
    # the same table from a record of the folder: each run found its row by its config alone
    from lifelong.experiments.collect import compare
    from lifelong.experiments.recipes import rows_of_runs
    from lifelong.experiments.record import read_record

    compare([tmp_path / "r"], write=False, quiet=True, record=tmp_path / "r.json")
    runs, _ = read_record(tmp_path / "r.json")
    found, other = rows_of_runs("hsu2018-split-mnist", runs, epochs=1, hidden=(16,))
    assert not other and set(found) == {(m, "class") for m in rows} and all(len(rs) == 2 for rs in found.values())
    assert all(rows[m]["ours_mean"] == pytest.approx(50 * sum(r["results"]["metrics"]["average_accuracy"]
                                                              for r in found[(m, "class")])) for m in rows)
    assert sorted(r["id"] for r in rows_of_runs("hsu2018-split-mnist", runs)[1]) == sorted(by_id)  # not rows without them


def test_a_restored_memory_that_does_not_fit_the_model_is_refused():
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 8), nn.ReLU(), nn.Linear(8, 6))
    good = {"memory.x": torch.zeros(4, 1, 28, 28), "memory.y": torch.tensor([0, 1, 2, 3]),
            "memory.task": torch.zeros(4, dtype=torch.long), "memory.seen": torch.tensor(4)}
    er = ER(memory=10)
    er.load_state_dict(good, model)
    for change, msg in [({"memory.x": torch.zeros(4, 1, 5, 5)}, "do not fit the model"),
                        ({"memory.y": torch.tensor([0, 1, 2, 9])}, "not units of the model"),
                        ({"memory.y": torch.tensor([0, 1])}, "one per stored input"),
                        ({"memory.seen": torch.tensor(2)}, "reservoir memory holds 4 samples after 2 offered")]:
        er = ER(memory=10)
        with pytest.raises(ValueError, match=msg):
            er.load_state_dict({**good, **change}, model)
    der = DER(memory=10)
    with pytest.raises(ValueError, match="logits must be stored with DER"):
        der.load_state_dict(good, model)


def test_lwf_with_seen_units_distils_old_classes_against_every_live_unit():
    stream = _split_stream().with_class_units("seen")
    ctx = _ctx(stream, task_index=2)
    lwf = LwF(temperature=2.0)
    lwf.before_task(ctx)
    with torch.no_grad():
        ctx.model[3].bias.add_(0.5)
    x, y, t, _ = next(batches([stream[2]], "train", batch_size=8))
    step = step_at(ctx, lwf, x, y, t)
    want = distillation(step.logits, lwf.teacher.model(x), 2.0, ctx.heads.seen(1), ctx.heads.seen(2))
    torch.testing.assert_close(lwf.losses(ctx, step)["distill"], want)
    assert ctx.heads.seen(1).sum() == 4 and ctx.heads.seen(2).sum() == 6


# ---- the per-task memories of the reference codes: slots and rings ------------------------------------


def _numbered(values, task: int) -> Batch:
    v = torch.tensor(values)
    return Batch(v.float().view(-1, 1), v, torch.full_like(v, task))


def test_a_ring_per_task_keeps_each_tasks_newest_samples():
    """Budget 10 over 2 tasks: 5 slots each. Hand-worked: task 0 offers 1..7 in two batches, its ring
    keeps 3..7 (1 and 2 overwritten, slot order 6 7 3 4 5); task 1 offers 10, 11 then 20..31 in one
    batch that wraps the ring twice: 27..31 stay, and task 0's rows are untouched throughout."""
    from lifelong.strategies.replay.buffer import ring_positions

    assert [x.tolist() for x in ring_positions(4, 3, 5)] == [[0, 1, 2], [4, 0, 1]]
    assert [x.tolist() for x in ring_positions(0, 7, 5)] == [[2, 3, 4, 5, 6], [2, 3, 4, 0, 1]]
    b = Buffer(10, "ring")
    b.add_ring(_numbered([1, 2, 3], 0), 0, 2)
    assert b.y[: len(b)].tolist() == [1, 2, 3]
    b.add_ring(_numbered([4, 5, 6, 7], 0), 0, 2)
    assert b.y[: len(b)].tolist() == [6, 7, 3, 4, 5]
    b.add_ring(_numbered([10, 11], 1), 1, 2)
    assert b.y[: len(b)].tolist() == [6, 7, 3, 4, 5, 10, 11] and b.task[: len(b)].tolist() == [0] * 5 + [1] * 2
    b.add_ring(_numbered(list(range(20, 32)), 1), 1, 2)
    assert b.y[: len(b)].tolist() == [6, 7, 3, 4, 5, 28, 29, 30, 31, 27]
    again = Buffer(10, "ring")  # a memory restored mid-task continues the same ring
    again.load_state_dict(b.state_dict())
    b.add_ring(_numbered([40, 41], 1), 1, 2)
    again.add_ring(_numbered([40, 41], 1), 1, 2)
    assert torch.equal(b.y[: len(b)], again.y[: len(again)])
    assert b.y[5:10].tolist() == [41, 29, 30, 31, 40]  # 14 offered so far: slots 14 % 5 = 4, then 0


def test_slots_per_task_are_filled_at_each_tasks_end_and_never_re_split(permuted_stream):
    """Budget 10 over the stream's T tasks: each task adds ⌊10 / T⌋ random samples of its own at its
    end; the earlier tasks' samples are the same tensors afterwards (A-GEM's episodic memory)."""
    T = len(permuted_stream)
    b = Buffer(10, "slots")
    gen = torch.Generator().manual_seed(0)
    before = None
    for i in range(T):
        b.add_slots(permuted_stream[i], T, gen)
        assert len(b) == (i + 1) * (10 // T)
        assert b.task[: len(b)].tolist() == sum(([k] * (10 // T) for k in range(i + 1)), [])
        if before is not None:
            assert torch.equal(b.x[: len(before)], before)  # never re-split
        before = b.x[: len(b)].clone()
    from lifelong.scenarios import gather

    task0 = permuted_stream[0]
    data = gather(task0, "train", torch.arange(len(task0.train.targets))).x.flatten(1)
    rows = b.x[: 10 // T].flatten(1)
    assert all((data == r).all(1).any() for r in rows)  # they are task 1's own samples, as it saw them


@pytest.mark.parametrize("policy", ["slots", "ring"])
def test_a_per_task_memory_too_small_for_one_sample_per_task_is_refused(policy, tmp_path, capsys):
    from lifelong.cli import console_main

    code = console_main(["run", "--benchmark", "split-mnist", "--strategy", "er", "--memory-policy", policy,
                         "--memory", "4", "--data-dir", str(TINY), "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 2 and "keeps no sample of each: give --memory at least 5" in capsys.readouterr().err
