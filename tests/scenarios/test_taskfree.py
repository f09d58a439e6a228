"""Task-free streams: the schedules against hand-worked cases and their defining formulas, the timeline,
the flattening of any task stream (every sample once, inputs unchanged), the rotating stream, the
settings' refusals."""

from __future__ import annotations

import math

import pytest
import torch

from lifelong.errors import UsageError
from lifelong.scenarios import StreamSpec, TaskStream, rotate_images
from lifelong.scenarios.taskfree import (
    Timeline, blurry_phases, eval_subset, flat_order, gradual_order, rotate_each, task_free,
)
from tests.helpers import tiny_stream


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_flat_order_keeps_the_phases_in_order_and_shuffles_within_them():
    phases = torch.tensor([1, 0, 2, 1, 0, 0, 2, 1])
    order = flat_order(phases, gen())
    assert sorted(order.tolist()) == list(range(8))
    assert phases[order].tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert torch.equal(order, flat_order(phases, gen()))  # seeded
    orders = {tuple(flat_order(phases, gen(s)).tolist()) for s in range(20)}
    assert len(orders) > 1  # within a phase, the order is drawn


def test_a_narrow_gradual_schedule_is_the_flat_one_and_a_wide_one_follows_the_gaussian_mixture():
    phases = torch.arange(3).repeat_interleave(4)
    assert phases[gradual_order(phases, 1e-9, gen())].tolist() == sorted(phases.tolist())
    # three phases of 20000 samples, width 0.5: the share of phase t at time u is N φ((u-t-½)/w) / Σ_s N φ(...)
    n, w = 20000, 0.5
    phases = torch.arange(3).repeat_interleave(n)
    order = gradual_order(phases, w, gen(1))
    times = torch.sort(phases.double() + 0.5 + w * torch.randn(3 * n, generator=gen(1), dtype=torch.float64)).values
    ordered = phases[order]
    for u in (0.5, 1.0, 1.5, 2.0, 2.5):
        i = int(torch.searchsorted(times, torch.tensor(u, dtype=torch.float64)))
        window = ordered[max(0, i - 1500): i + 1500]
        dens = [math.exp(-0.5 * ((u - t - 0.5) / w) ** 2) for t in range(3)]
        for t in range(3):
            share = float((window == t).double().mean())
            assert abs(share - dens[t] / sum(dens)) < 0.03, (u, t, share, dens[t] / sum(dens))
    with pytest.raises(UsageError, match="schedule_width"):
        gradual_order(phases, 0.0, gen())


def test_blurry_phases_move_only_blurry_groups_to_other_phases_at_the_given_rate():
    T, per = 4, 5000
    phases = torch.arange(T).repeat_interleave(2 * per)  # two groups per phase
    groups = torch.arange(2 * T).repeat_interleave(per)
    out, fixed = blurry_phases(phases, groups, T, 0.5, 0.2, gen(3))
    assert len(fixed) == 4  # round(0.5 × 8)
    stay = torch.isin(groups, torch.tensor(fixed))
    assert torch.equal(out[stay], phases[stay])  # disjoint groups never move
    moved = out != phases
    rate = float(moved[~stay].double().mean())
    assert abs(rate - 0.2) < 0.015
    # a moved sample lands on each other phase about equally often (every group blurry here)
    out, fixed = blurry_phases(phases, groups, T, 0.0, 0.2, gen(4))
    moved = out != phases
    assert fixed == []
    for t in range(T):
        dest = out[moved & (phases == t)]
        counts = torch.bincount(dest, minlength=T).double()
        assert counts[t] == 0
        others = counts[[k for k in range(T) if k != t]]
        assert float(others.max() / others.min()) < 1.3
    with pytest.raises(UsageError, match="blurry_share"):
        blurry_phases(phases, groups, T, 0.5, 1.0, gen())


def test_the_evaluation_subset_takes_at_most_so_many_of_each_group():
    groups = torch.tensor([0] * 7 + [1] * 2 + [2] * 5)
    idx = eval_subset(groups, 3, gen())
    assert idx.tolist() == sorted(idx.tolist())
    assert torch.bincount(groups[idx]).tolist() == [3, 2, 3]
    assert torch.equal(idx, eval_subset(groups, 3, gen()))


def test_the_timeline_names_each_groups_entry_and_its_share_in_each_window():
    tl = Timeline("flat", "class", ("a", "b", "c"), ("p",), torch.tensor([0, 0, 1, 0, 1, 1]), torch.zeros(6, dtype=torch.long),
                  torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]))
    assert tl.entries() == [0, 2, None]
    S = tl.shares(3)
    assert S.tolist() == [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0]]


def stream_of(scenario: str) -> TaskStream:
    g = torch.Generator().manual_seed(0)
    x = [torch.randint(0, 256, (30, 4, 4), generator=g, dtype=torch.uint8) for _ in range(3)]
    y = [torch.tensor([2 * t, 2 * t + 1] * 15) for t in range(3)]
    return TaskStream.from_tensors(list(zip(x, y)), list(zip(x, y)), scenario=scenario)


@pytest.mark.parametrize("schedule", ["flat", "gradual", "blurry"])
def test_flattening_keeps_every_sample_once_with_its_target(schedule):
    src = stream_of("class")
    tf = task_free(src, schedule, seed=1)
    assert tf.task_free and len(tf) == 1 and tf.scenario == "class"
    task = tf[0]
    want = sorted((bytes(t.train.images[i].flatten().tolist()), int(t.train.targets[i])) for t in src for i in range(len(t.train)))
    got = sorted((bytes(task.train.images[i].flatten().tolist()), int(task.train.targets[i])) for i in range(len(task.train)))
    assert got == want
    assert torch.equal(tf.timeline.train_groups, task.train.targets)  # class scenario: a group is a class
    assert len(task.test) == sum(len(t.test) for t in src)


def test_a_flattened_permuted_stream_has_each_tasks_own_inputs_and_its_tasks_as_groups():
    src = tiny_stream("permuted-mnist", "domain", 3, train_samples=20)
    tf = task_free(src, "flat", seed=0)
    tl = tf.timeline
    assert tl.unit == "task" and tl.group_names == tuple(src.task_names)
    x = tf[0].train.images
    for t in range(3):  # phase t's samples are task t's images, permuted by task t's permutation
        mine = x[tl.train_phases == t]
        want = src[t].preprocess.layout(src[t].train.images)
        assert sorted(map(bytes, mine.flatten(1).tolist())) == sorted(map(bytes, want.flatten(1).tolist()))
    assert tl.train_phases.tolist() == sorted(tl.train_phases.tolist())  # flat: phase after phase


def test_a_task_scenario_or_a_second_flattening_is_refused():
    with pytest.raises(UsageError, match="task identity"):
        task_free(stream_of("task"), "flat")
    tf = task_free(stream_of("class"), "flat")
    with pytest.raises(UsageError, match="task-free already"):
        task_free(tf, "flat")


def test_rotating_each_image_by_its_own_angle_is_rotating_them_one_angle_at_a_time():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 12, 12), generator=g, dtype=torch.uint8)
    angles = torch.tensor([0.0, 30.0, 90.0, 145.0, 270.0, 359.0])
    out = rotate_each(x, angles)
    for i, a in enumerate(angles.tolist()):
        assert torch.equal(out[i : i + 1], rotate_images(x[i : i + 1], a) if a else x[i : i + 1])


def test_the_rotating_stream_shows_consecutive_pairs_at_a_turning_angle():
    s = tiny_stream("rotating-mnist", "class", 9)
    tl = s.timeline
    assert s.n_outputs == 9 and tl.unit == "class" and len(tl.phase_names) == 9
    seg, y = tl.train_phases, s[0].train.targets
    assert seg.tolist() == sorted(seg.tolist())  # the segments in order
    for k in range(9):
        assert set(y[seg == k].tolist()) <= {k, (k + 1) % 9}
    entries = tl.entries()
    assert entries[0] < entries[2] < entries[3] < entries[8]
    assert sorted(set(y.tolist())) == list(range(9))


@pytest.mark.parametrize("spec, setting", [
    (dict(benchmark="split-mnist", schedule="gradual", scenario="task"), "scenario"),
    (dict(benchmark="split-mnist", schedule_width=0.3), "schedule_width"),
    (dict(benchmark="split-mnist", schedule="flat", blurry_share=0.2), "blurry_share"),
    (dict(benchmark="rotating-mnist", schedule="flat"), "schedule"),
    (dict(benchmark="split-mnist", schedule="rotating"), "schedule"),
    (dict(benchmark="split-mnist", eval_per_group=10), "eval_per_group"),
    (dict(benchmark="split-mnist", schedule="blurry", scenario="class", class_units="seen"), "class_units"),
])
def test_settings_that_mean_nothing_for_the_schedule_are_refused(spec, setting):
    with pytest.raises(UsageError, match=setting):
        StreamSpec(**spec).resolved()


def test_the_resolved_spec_names_every_default_of_a_schedule():
    s = StreamSpec(benchmark="split-mnist", schedule="blurry").resolved()
    assert (s.scenario, s.disjoint_share, s.blurry_share, s.eval_per_group) == ("class", 0.5, 0.1, 100)
    assert StreamSpec(benchmark="permuted-mnist", schedule="gradual").resolved().scenario == "domain"
    assert StreamSpec(benchmark="rotating-mnist").resolved().schedule == "rotating"
    assert StreamSpec(benchmark="split-mnist").resolved().schedule == "tasks"
