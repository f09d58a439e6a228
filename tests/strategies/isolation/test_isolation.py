"""The parameter-isolation family: zero forgetting to the last bit, PackNet's pruning counts and frozen
weights, HAT's gradient masks and annealing by hand, XdG's gates (exact counts, the same after a
resume, acting inside EWC's Fisher), progressive columns against a hand-written Eq. 1, capacity in
results.json, and the one-line errors where these methods do not apply."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from lifelong.cli import main
from lifelong.data import load_dataset
from lifelong.errors import UsageError
from lifelong.models import Heads, small_cnn
from lifelong.scenarios import batches, split_classes
from lifelong.strategies import HAT, STRATEGIES, Compose, Context, EWC, PackNet, Progressive, Separate, XdG
from lifelong.strategies.isolation.hat import slope
from lifelong.strategies.isolation.layers import analyze
from lifelong.strategies.isolation.packnet import FREE, prune_free
from lifelong.strategies.isolation.progressive import columns_forward
from lifelong.train import TrainSettings, run_stream

from tests.helpers_process import stop_after_checkpoint
from tests.helpers import TINY

FAST = ["--data-dir", str(TINY), "--no-download", "--no-progress", "--hidden", "32", "--threads", "1"]
ZERO_FORGETTING = ("separate", "packnet", "hat", "progressive")


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _stream(tasks=((0, 1), (2, 3), (4, 5)), scenario="task"):
    return split_classes(load_dataset("mnist", TINY, download=False), tasks, scenario, seed=0)


def _mlp(hidden=24, out=6):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, out))


def _cnn(out=6):
    torch.manual_seed(0)
    return small_cnn((1, 28, 28), out, channels=(4, 6), hidden=12)


class Recorder:
    """Wraps a strategy: after each task's end, the scores every finished task gets on fixed inputs."""

    def __init__(self, strategy, stream):
        self.strategy, self.stream, self.scores = strategy, stream, []
        real = strategy.after_task

        def after_task(ctx):
            real(ctx)
            with torch.no_grad():
                was = ctx.model.training
                ctx.model.eval()
                row = {}
                for t in range(ctx.task_index + 1):
                    x, _, ids, _ = next(batches([ctx.stream[t]], "test", batch_size=40))
                    row[t] = strategy.predict(ctx, x, ids).clone()
                ctx.model.train(was)
            self.scores.append(row)

        strategy.after_task = after_task


# ---- zero forgetting, exactly ---------------------------------------------------------------------------


STRATEGY_CASES = [
    ("separate", lambda: Separate()),
    ("packnet", lambda: PackNet(prune=0.5, retrain_epochs=1)),
    ("packnet-even", lambda: PackNet(prune_schedule="even", retrain_epochs=0)),
    ("hat", lambda: HAT()),
    ("progressive", lambda: Progressive()),
]


@pytest.mark.parametrize("name, make", STRATEGY_CASES, ids=[c[0] for c in STRATEGY_CASES])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_old_tasks_scores_and_accuracies_do_not_move_by_one_bit(name, make, model):
    stream = _stream()
    strategy = make()
    rec = Recorder(strategy, stream)
    net = _mlp() if model == "mlp" else _cnn()
    r = run_stream(net, stream, strategy, TrainSettings("sgd", 0.1, momentum=0.9, batch_size=16, epochs=2), device="cpu")
    R = r.accuracy_matrix
    T = len(stream)
    for j in range(T):  # each column constant below the diagonal
        assert all(R[i][j] == R[j + 1][j] for i in range(j + 1, T + 1)), (j, [row[j] for row in R])
    assert r.metrics["backward_transfer"] == 0.0 and r.metrics["forgetting"] == 0.0
    for k, row in enumerate(rec.scores):  # the scores themselves, bit for bit
        for t, s in row.items():
            for later in rec.scores[k + 1:]:
                units = list(stream[t].classes)  # the task's own (live) units; the others are masked
                assert torch.equal(later[t][:, units], s[:, units]), (name, t)
    if model == "mlp":  # it learned something, so the invariance is not vacuous (the tiny CNN learns slowly)
        assert max(R[T][j] for j in range(T)) > 0.7


def test_naive_and_xdg_do_forget_on_the_same_problem():
    """The check above is not vacuous: without isolation, the old tasks' scores move."""
    for strategy in (STRATEGIES["naive"](), XdG()):
        stream = _stream()
        rec = Recorder(strategy, stream)
        run_stream(_mlp(), stream, strategy, TrainSettings("sgd", 0.1, batch_size=16, epochs=2), device="cpu")
        assert not torch.equal(rec.scores[0][0][:, :2], rec.scores[-1][0][:, :2])


# ---- PackNet ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.5, 0.75, 0.999])
def test_pruning_releases_exactly_the_fraction_of_free_weights_with_the_smallest_magnitude(fraction):
    g = torch.Generator().manual_seed(1)
    w = torch.randint(-3, 4, (17, 23), generator=g).float()  # many ties
    owner = torch.full(w.shape, FREE, dtype=torch.uint8)
    owner[torch.rand(w.shape, generator=g) < 0.4] = 0  # an earlier task owns 40 %
    new = prune_free(w, owner, 1, fraction)
    free_before = owner == FREE
    n = int(free_before.sum())
    released = (new == FREE) & free_before
    assert int(released.sum()) == int(fraction * n + 0.5)
    assert torch.equal(new[~free_before], owner[~free_before])  # an earlier task's weights keep their owner
    assert set(new[free_before].unique().tolist()) <= {1, FREE}
    if 0 < int(released.sum()) < n:  # every released |w| <= every kept |w| among the task's
        assert w[released].abs().max() <= w[free_before & (new == 1)].abs().min()


def test_packnet_never_touches_frozen_weights_and_zeroes_the_released_ones():
    stream = _stream()
    strategy = PackNet(prune=0.6, retrain_epochs=1)
    snaps = []
    real = strategy.after_task

    def after_task(ctx):
        real(ctx)
        snaps.append({k: (ctx.model.state_dict()[k].clone(), o.clone()) for k, o in strategy.owner.items()})

    strategy.after_task = after_task
    model = _mlp()
    run_stream(model, stream, strategy, TrainSettings("adam", 1e-2, batch_size=16, epochs=1), device="cpu")
    final = model.state_dict()
    for t, snap in enumerate(snaps):
        for k, (w, owner) in snap.items():
            mine = owner == t
            assert torch.equal(final[k][mine], w[mine])  # frozen after its task, to the bit
            assert bool((w[owner == FREE] == 0).all())  # released weights are 0 right after pruning
            n_free_before = int((snaps[t - 1][k][1] == FREE).sum()) if t else owner.numel()
            assert int(mine.sum()) == n_free_before - int(0.6 * n_free_before + 0.5)
    cap = strategy.report(Context(model, Heads.of(stream), stream=stream))["capacity"]
    assert cap["unit"] == "weights" and cap["own"][0] == pytest.approx(0.4, abs=1e-3)
    assert cap["used"][-1] + cap["free"] == pytest.approx(1.0)


# ---- HAT -------------------------------------------------------------------------------------------------------


def test_hat_slope_goes_from_one_over_s_max_to_s_max_across_an_epoch():
    assert slope(400, 0, 10) == pytest.approx(1 / 400)
    assert slope(400, 9, 10) == pytest.approx(400)
    assert slope(400, 4, 9) == pytest.approx(1 / 400 + (400 - 1 / 400) * 0.5)
    assert slope(400, 0, 1) == 400


def _hat_with_cumulative(model, stream, seed=0):
    hat = HAT()
    ctx = Context(model, Heads.of(stream), stream=stream, task=stream[1], task_index=1)
    hat.before_task(ctx)
    g = torch.Generator().manual_seed(seed)
    hat.cumulative = [torch.rand(c.shape, generator=g) < 0.5 for c in hat.cumulative]
    return hat, ctx


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_hat_gradient_masks_are_zero_exactly_where_earlier_tasks_claimed_both_units(model):
    stream = _stream()
    net = _mlp() if model == "mlp" else _cnn()
    hat, ctx = _hat_with_cumulative(net, stream)
    layers = hat.layers(ctx)
    params, masks = hat._gradient_masks(ctx)
    by = {id(p): m for p, m in zip(params, masks)}
    for l in range(layers.hidden):
        m = layers.layer(l)
        W = by[id(m.weight)]
        post = hat.cumulative[l]
        for i in range(W.shape[0]):
            for j in range(W.shape[1]):
                if l == 0:
                    claimed = bool(post[i])
                else:
                    if isinstance(m, nn.Linear) and isinstance(layers.layer(l - 1), nn.Conv2d):
                        hw = m.in_features // layers.units[l - 1]  # Flatten after pooling: channel-major
                        unit = j // hw
                    else:
                        unit = j
                    claimed = bool(post[i]) and bool(hat.cumulative[l - 1][unit])
                want = 0.0 if claimed else 1.0
                assert bool((W[i, j] == want).all()), (l, i, j)
        assert torch.equal(by[id(m.bias)], (~post).float())
    head = layers.layer(layers.hidden)
    earlier = stream[0].classes
    assert bool((by[id(head.weight)][list(earlier)] == 0).all()) and bool((by[id(head.weight)][[2, 3]] == 1).all())


def test_hat_protected_weights_get_exactly_zero_gradient_in_a_real_step_and_compensation_matches_the_formula():
    stream = _stream()
    net = _mlp()
    hat, ctx = _hat_with_cumulative(net, stream)
    ctx.settings = TrainSettings(batch_size=16)
    ctx.task_step, ctx.steps_per_epoch = 3, -(-len(stream[1].train) // 16)
    x, y, ids, _ = next(batches([stream[1]], "train", batch_size=16))
    from lifelong.scenarios import Batch
    from lifelong.strategies import Step, cross_entropy

    step = Step(Batch(x, y, ids).with_source(), 3, 3)
    step.inputs = step.batch
    step.logits = hat.forward(ctx, step)
    terms = hat.losses(ctx, step)
    assert list(terms) == ["capacity"]
    loss = cross_entropy(ctx, step.logits, step.batch) + terms["capacity"]
    loss.backward()
    raw = [e.grad.clone() for e in hat.embedding]
    hat.before_step(ctx, step)
    layers = hat.layers(ctx)
    first = layers.layer(0)
    assert bool((first.weight.grad[hat.cumulative[0]] == 0).all())
    assert bool((first.weight.grad[~hat.cumulative[0]] != 0).any())
    s, s_max = step.aux["hat.slope"], 400.0
    B = ctx.steps_per_epoch
    assert s == pytest.approx(slope(s_max, 3 % B, B))
    e = hat.embedding[0].detach()[1]
    want = raw[0][1] * s_max / s * (torch.cosh(torch.clamp(s * e, -50, 50)) + 1) / (torch.cosh(e) + 1)
    torch.testing.assert_close(hat.embedding[0].grad[1], want)
    assert bool((hat.embedding[0].grad[0] == 0).all())  # other tasks' embeddings do not train


def test_hat_capacity_regularizer_is_eq_5_by_hand():
    stream = _stream()
    hat, ctx = _hat_with_cumulative(_mlp(), stream)
    ctx.settings = TrainSettings(batch_size=16)
    x, y, ids, _ = next(batches([stream[1]], "train", batch_size=8))
    from lifelong.scenarios import Batch
    from lifelong.strategies import Step

    step = Step(Batch(x, y, ids).with_source(), 0, 0)
    step.inputs = step.batch
    hat.forward(ctx, step)
    a = [g.detach() for g in step.aux["hat.gates"]]
    num = sum(float((ai * (~c).float()).sum()) for ai, c in zip(a, hat.cumulative))
    den = sum(float((~c).sum()) for c in hat.cumulative)
    assert float(hat.losses(ctx, step)["capacity"].detach()) == pytest.approx(0.75 * num / den, rel=1e-6)


# ---- XdG ---------------------------------------------------------------------------------------------------------


def test_xdg_gates_exactly_the_fraction_of_each_layers_units_and_differ_between_tasks():
    stream = _stream()
    xdg = XdG(gate_fraction=0.8)
    ctx = Context(_mlp(hidden=25), Heads.of(stream), stream=stream, task=stream[0], task_index=0)
    xdg.draw(ctx)
    for g in xdg.gate:
        assert g.shape == (3, 25) and (g.sum(1) == 25 - round(0.8 * 25)).all()
        assert not torch.equal(g[0], g[1])


def test_xdg_gate_multiplies_the_activations_and_is_inside_ewc_fisher():
    """xdg+ewc: the Fisher of the first layer's rows for units gated off in task 0 is exactly 0 (their
    weights cannot change the gated network), and the other rows are not all 0."""
    stream = _stream()
    xdg, ewc = XdG(gate_fraction=0.5), EWC(100.0, fisher="exact")
    model = _mlp()
    run_stream(model, stream, Compose(xdg, ewc), TrainSettings("sgd", 0.1, batch_size=16, iterations=5), device="cpu")
    fisher = ewc.state["importance"]["1.weight"]  # (24, 784): row i = unit i of the first hidden layer
    # the last task's gates (the merged importance sums every task's Fisher; a row is 0 only if off in all)
    off_everywhere = ~xdg.gate[0].any(0)
    assert bool((fisher[off_everywhere] == 0).all())
    assert bool((fisher[~off_everywhere] != 0).any())


def test_xdg_gates_are_the_same_after_a_resume(tmp_path, monkeypatch):
    args = ["run", "--benchmark", "split-mnist", "--tasks", "3", "--scenario", "task", "--strategy", "xdg+si",
            "--iterations", "12", "--batch-size", "16", "--checkpoint-every", "5", *FAST]
    whole = main([*args, "--out", str(tmp_path / "whole")])
    stop_after_checkpoint(monkeypatch, args, tmp_path / "cut", task=1, step=10)
    import lifelong.experiments.runs as runs_module
    from lifelong.train.checkpoint import load_checkpoint

    before = load_checkpoint(tmp_path / "cut" / "checkpoint.safetensors")[0]
    saved = []
    real = runs_module.save_checkpoint
    monkeypatch.setattr(runs_module, "save_checkpoint", lambda path, t, meta: (saved.append(t), real(path, t, meta)))
    resumed = main(["run", "--resume", str(tmp_path / "cut"), "--no-progress", "--threads", "1"])
    assert resumed.accuracy_matrix == whole.accuracy_matrix
    assert resumed.capacity == whole.capacity
    gates = [k for k in before if ".gate." in k]
    assert len(gates) == 1 and saved and all(torch.equal(before[k], saved[-1][k]) for k in gates)


# ---- progressive networks -------------------------------------------------------------------------------------------


def test_progressive_columns_have_the_documented_lateral_connections_and_compute_eq_1():
    stream = _stream()
    prog = Progressive()
    model = _mlp(hidden=7).double()
    ctx = Context(model, Heads.of(stream), stream=stream)
    for k in range(3):
        ctx.task, ctx.task_index = stream[k], k
        prog.before_task(ctx)
        with torch.no_grad():
            for v in prog.parameters():
                v.normal_()  # non-zero laterals, as after training
            for p in model.parameters():
                p.add_(0.1 * k)  # each column its own weights
    # column k has a lateral from every j < k into every parametric layer but the first
    assert sorted(prog.laterals) == [(k, j, l) for k in range(3) for j in range(k) for l in (1, 2)]
    layers = [m for m in model if isinstance(m, nn.Linear)]
    assert all(tuple(v.shape) == tuple(layers[l].weight.shape) for (_, _, l), v in prog.laterals.items())
    assert [set(p.data_ptr() for p in prog.parameters())] == [{prog.laterals[k].data_ptr() for k in prog.laterals if k[0] == 2}]
    x = torch.randn(5, 1, 28, 28, dtype=torch.float64)
    cols = [*prog.columns, dict(model.named_parameters())]

    def by_hand(k):  # Eq. 1 written out for the 784-7-7-10 MLP
        h = [x.flatten(1)] * (k + 1)
        for l, name in enumerate(["1", "3", "5"]):
            new = []
            for c in range(k + 1):
                z = h[c] @ cols[c][f"{name}.weight"].T + cols[c][f"{name}.bias"]
                if l >= 1:
                    z = z + sum(h[j] @ prog.laterals[(c, j, l)].T for j in range(c))
                new.append(torch.relu(z) if l < 2 else z)
            h = new
        return h[k]

    lay = analyze(model, x, "test")
    for k in range(3):
        torch.testing.assert_close(columns_forward(lay, cols[: k + 1], prog.laterals, x, frozen=k), by_hand(k))
        torch.testing.assert_close(prog.predict(ctx, x, torch.full((5,), k)), by_hand(k))


def test_a_new_progressive_column_starts_from_the_initial_weights_with_zero_laterals():
    stream = _stream()
    prog = Progressive()
    model = _mlp()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = Context(model, Heads.of(stream), stream=stream, task=stream[0], task_index=0)
    prog.before_task(ctx)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ctx.task, ctx.task_index = stream[1], 1
    prog.before_task(ctx)
    assert all(torch.equal(model.state_dict()[k], init[k]) for k in init)
    assert all(bool((v == 0).all()) for v in prog.parameters())
    x = next(batches([stream[1]], "test", batch_size=4))[0]
    from lifelong.scenarios import Batch
    from lifelong.strategies import Step

    step = Step(Batch(x, torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)).with_source(), 0, 0)
    step.inputs = step.batch
    torch.testing.assert_close(prog.forward(ctx, step), model(x))


# ---- every isolation method through the CLI: resume, capacity, and where it applies -------------------------------


@pytest.mark.parametrize("strategy", ["separate", "xdg", "packnet", "hat", "progressive"])
def test_an_interrupted_isolation_run_resumes_bit_exactly_and_reports_its_capacity(strategy, tmp_path, monkeypatch):
    args = ["run", "--benchmark", "split-mnist", "--tasks", "3", "--scenario", "task", "--strategy", strategy,
            "--iterations", "12", "--batch-size", "16", "--checkpoint-every", "5", *FAST]
    whole = main([*args, "--out", str(tmp_path / "whole")])
    stop_after_checkpoint(monkeypatch, args, tmp_path / "cut", task=2, step=5)
    resumed = main(["run", "--resume", str(tmp_path / "cut"), "--no-progress", "--threads", "1"])
    assert resumed.accuracy_matrix == whole.accuracy_matrix
    cap = json.loads((tmp_path / "whole" / "results.json").read_text())["capacity"]
    assert cap == resumed.capacity and len(cap["used"]) == 3 and len(cap["own"]) == 3
    assert all(0 < u <= 1 for u in cap["used"]) and cap["total_parameters"] >= whole.n_parameters
    assert (tmp_path / "whole" / "capacity.png").stat().st_size > 1000
    if strategy in ZERO_FORGETTING:
        assert whole.metrics["forgetting"] == 0.0
    if strategy in ("separate", "progressive"):
        assert cap["extra_parameter_bytes"] > 2 * whole.n_parameters * 4  # frozen columns / networks, θ₀


@pytest.mark.parametrize("strategy", ["separate", "xdg", "packnet", "hat", "progressive"])
@pytest.mark.parametrize("scenario", ["domain", "class"])
def test_isolation_outside_task_il_is_a_one_line_usage_error(strategy, scenario, tmp_path, capsys):
    from lifelong.cli import console_main

    code = console_main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--scenario", scenario, "--strategy",
                         strategy, "--iterations", "2", *FAST, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "needs the task identity at test time" in err and "--scenario task" in err
    assert not (tmp_path / "r").exists()  # refused before the run folder was made


def test_isolation_errors_name_the_fix():
    with pytest.raises(UsageError, match="run hat alone"):
        Compose(HAT(), EWC(1.0))
    stream = _stream()
    for s in (PackNet(), HAT(), Progressive(), Separate()):
        with pytest.raises(UsageError, match="use optimizer_state='reset'"):
            run_stream(_mlp(), stream, s, TrainSettings(iterations=1, optimizer_state="keep"), device="cpu")
    run_stream(_mlp(), stream, XdG(), TrainSettings(iterations=1, optimizer_state="keep"), device="cpu")  # XdG freezes nothing
    from lifelong.models.resnet import ReducedResNet18

    with pytest.raises(UsageError, match="cannot isolate tasks in a network with|nn.Sequential"):
        run_stream(ReducedResNet18(1, 6), stream, HAT(), TrainSettings(iterations=1), device="cpu")
    bad = nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.Linear(8, 6))
    with pytest.raises(UsageError, match="followed directly by its activation"):
        run_stream(bad, stream, XdG(), TrainSettings(iterations=1), device="cpu")
    with pytest.raises(UsageError, match="xdg: gate_fraction must be in"):
        XdG(gate_fraction=1.0)
    with pytest.raises(UsageError, match="packnet: prune must be in"):
        PackNet(prune=1.5)
    assert math.isfinite(HAT().settings.s_max)
