"""Task streams on the tiny real MNIST subset: seeding, scenarios, masks, splits, batching."""

from __future__ import annotations


import pytest
import torch

from lifelong.data import load_dataset
from lifelong.errors import UsageError
from lifelong.models import Heads
from lifelong.scenarios import batches, permuted, rotate_images, rotated, split_classes as split
from tests.helpers import TINY



@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", TINY, download=False)


def test_same_seed_same_stream_and_no_global_rng_use(mnist):
    before = torch.random.get_rng_state()
    a = permuted(mnist, 3, "domain", seed=7, val_fraction=0.1)
    b = permuted(mnist, 3, "domain", seed=7, val_fraction=0.1)
    c = permuted(mnist, 3, "domain", seed=8, val_fraction=0.1)
    assert torch.equal(torch.random.get_rng_state(), before)
    for ta, tb, tc in zip(a, b, c):
        assert torch.equal(ta.preprocess.perm, tb.preprocess.perm)
        assert not torch.equal(ta.preprocess.perm, tc.preprocess.perm)
        assert torch.equal(ta.val.targets, tb.val.targets)
    x1, _, _, _ = next(batches([a[1]], "test", batch_size=50))
    x2, _, _, _ = next(batches([b[1]], "test", batch_size=50))
    assert torch.equal(x1, x2)


def test_permuted_inputs_are_pixel_permutations_of_the_originals(mnist):
    s = permuted(mnist, 2, "domain", seed=0)
    x0 = torch.as_tensor(mnist.test_images[:20]).float().div(255).reshape(20, -1)
    x, y, t, _ = next(batches([s[1]], "test", batch_size=20))
    perm = s[1].preprocess.perm
    assert torch.equal(x.reshape(20, -1), x0[:, perm])
    assert torch.equal(y, torch.as_tensor(mnist.test_labels[:20]))
    assert x.shape == (20, 1, 28, 28) and (t == 1).all()
    assert not torch.equal(perm, torch.arange(784))


@pytest.mark.parametrize(
    "scenario, n_outputs, offset, masked",
    [("domain", 10, 0, False), ("task", 30, 10, True), ("class", 30, 10, False)],
)
def test_permuted_output_units_per_scenario(mnist, scenario, n_outputs, offset, masked):
    s = permuted(mnist, 3, scenario, seed=0)
    assert s.n_outputs == n_outputs
    t1 = s[1]
    assert int(t1.train.targets.min()) == offset and int(t1.train.targets.max()) == offset + 9
    assert (t1.mask is not None) == masked
    if masked:
        assert t1.mask.sum() == 10 and t1.mask[offset : offset + 10].all()
        assert Heads.of(s).task_masks.shape == (3, 30)


def test_split_targets_and_masks_per_scenario(mnist):
    task = split(mnist, scenario="task")
    assert task.n_outputs == 10 and len(task) == 5
    assert set(task[2].train.targets.unique().tolist()) == {4, 5}
    assert task[2].mask.nonzero().flatten().tolist() == [4, 5]
    assert len(task[2].train) == 400  # 200 per class in the tiny subset
    dom = split(mnist, scenario="domain")
    assert dom.n_outputs == 2 and dom[2].mask is None
    assert set(dom[2].test.targets.unique().tolist()) == {0, 1}
    cls = split(mnist, scenario="class")
    assert cls.n_outputs == 10 and Heads.of(cls).task_masks is None
    assert set(cls[4].test.targets.unique().tolist()) == {8, 9}


def test_split_custom_groups_and_bad_groups(mnist):
    s = split(mnist, [(0, 1, 2), (3, 4, 5)], scenario="class")
    assert s.n_outputs == 6 and set(s[1].train.targets.unique().tolist()) == {3, 4, 5}
    with pytest.raises(UsageError, match="overlap"):
        split(mnist, [(0, 1), (1, 2)])
    with pytest.raises(UsageError, match="equal size"):
        split(mnist, [(0, 1), (2, 3, 4)], scenario="domain")
    with pytest.raises(UsageError, match="scenario"):
        split(mnist, scenario="incremental")


def test_validation_split_is_disjoint_and_seeded(mnist):
    s = permuted(mnist, 1, "domain", seed=3, val_fraction=0.25)
    t = s[0]
    assert len(t.val) == 500 and len(t.train) == 1500
    both = torch.cat([t.train.images, t.val.images]).reshape(2000, -1)
    allimg = torch.as_tensor(mnist.train_images).reshape(2000, -1)
    # together they are exactly the training set (as multisets of rows)
    assert torch.equal(both.sum(0), allimg.sum(0).to(both.dtype)) or torch.equal(
        both.long().sum(0), allimg.long().sum(0)
    )
    sp = split(mnist, scenario="task", seed=3, val_fraction=0.25)
    assert sum(len(tk.val) for tk in sp) == 500 and sum(len(tk.train) for tk in sp) == 1500


def test_rotation_direction_and_identity():
    img = torch.zeros(1, 28, 28, dtype=torch.uint8)
    img[0, 2:6, 12:16] = 255  # a blob at the top centre
    assert torch.equal(rotate_images(img, 0), img)
    r = rotate_images(img, 90).float()
    ys, xs = torch.nonzero(r[0] > 128, as_tuple=True)
    # counter-clockwise by 90°: top centre -> left centre
    assert xs.float().mean() < 8 and 10 < ys.float().mean() < 18
    back = rotate_images(rotate_images(img, 90), -90).float()
    assert (back - img.float()).abs().mean() < 10  # bilinear round trip stays close


def test_rotated_stream_names_and_inputs(mnist):
    s = rotated(mnist, [0, 45, 90], "domain", seed=0)
    assert s.task_names == ["rot0", "rot45", "rot90"]
    assert torch.equal(s[0].test.images, torch.as_tensor(mnist.test_images))
    assert not torch.equal(s[2].test.images, s[0].test.images)


def test_batches_cover_every_sample_once_and_mix_tasks(mnist):
    s = split(mnist, scenario="class")
    tasks = list(s)[:3]
    g = torch.Generator().manual_seed(0)
    seen_t, seen_y, n = [], [], 0
    for x, y, t, _ in batches(tasks, "train", batch_size=128, shuffle=True, generator=g):
        seen_t.append(t)
        seen_y.append(y)
        n += len(y)
        assert x.shape[1:] == (1, 28, 28)
    assert n == sum(len(tk.train) for tk in tasks)
    ty = torch.cat(seen_y)
    assert torch.bincount(ty, minlength=10)[:6].tolist() == [200] * 6
    assert len(seen_t[0].unique()) == 3  # the first batch already mixes the three tasks
    with pytest.raises(ValueError, match="Generator"):
        next(batches(tasks, "train", batch_size=8, shuffle=True))
