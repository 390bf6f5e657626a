"""The trainers' batches (kecae.training.batches): KECAE's pairs at a step are the sampler's
pairs, each rank's slice is disjoint from the others' and together they are the global batch;
a classifier epoch is bootstrap-balanced and seeded."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kecae.data.cache import ImageSet, load_image_set
from kecae.data.pairs import PairSampler
from kecae.training.batches import PairBatches, epoch_order

sizes = st.integers(min_value=1, max_value=13)


@settings(max_examples=40, deadline=None)
@given(n0=sizes, n2=sizes, world=st.integers(1, 4), seed=st.integers(0, 100))
def test_rank_slices_are_disjoint_and_complete(n0, n2, world, seed):
    s = PairSampler(n0, n2, None, seed=seed)
    batch = world * max(1, len(s) // (2 * world))
    assume(len(s) >= batch)
    ranks = [PairBatches(None, None, s, batch, seed, rank, world) for rank in range(world)]
    whole = PairBatches(None, None, s, batch, seed)
    epoch = []
    for step in range(whole.steps_per_epoch):
        got = np.concatenate([r.pair_positions(step) for r in ranks])
        np.testing.assert_array_equal(got, whole.pair_positions(step))
        assert len(set(got.tolist())) == len(got) == batch
        epoch += got.tolist()
    assert len(set(epoch)) == len(epoch)  # no pair twice in an epoch


def _constant_set(values, grade, prefix):
    """An ImageSet whose image k is the constant ``values[k]`` (so a pixel names its image)."""
    n = len(values)
    images = np.broadcast_to(np.asarray(values, np.float32)[:, None, None], (n, 4, 4))
    return ImageSet(
        images=images,
        grades=np.full(n, grade),
        image_ids=[f"{prefix}{k}" for k in range(n)],
        patient_ids=[f"p{prefix}{k}" for k in range(n)],
        sides=[None] * n,
        paths=[None] * n,
    )


def test_pair_batches_return_the_indexed_images():
    kl0 = _constant_set([0.1 * k for k in range(5)], 0, "a")
    kl2 = _constant_set([-0.1 * k for k in range(3)], 2, "b")
    sampler = PairSampler(5, 3, 15, seed=4)
    batches = PairBatches(kl0, kl2, sampler, batch_size=5, seed=4)
    seen = []
    for step in range(batches.steps_per_epoch):
        x1, x2, ij = batches.batch(step)
        positions = batches.pair_positions(step)
        assert ij.tolist() == [list(sampler[int(k)]) for k in positions]
        assert x1.shape == (5, 1, 4, 4) and x2.shape == (5, 1, 4, 4)
        np.testing.assert_allclose(x1[:, 0, 0, 0].numpy(), 0.1 * ij[:, 0], rtol=1e-6)
        np.testing.assert_allclose(x2[:, 0, 0, 0].numpy(), -0.1 * ij[:, 1], rtol=1e-6, atol=1e-7)
        seen += positions.tolist()
    assert sorted(seen) == list(range(15))  # one epoch, every pair once
    rank1 = PairBatches(kl0, kl2, sampler, batch_size=5, seed=4, rank=1, world_size=5)
    assert rank1.batch(0)[2].tolist() == [list(sampler[int(batches.pair_positions(0)[1])])]


def test_pair_batches_from_files_map_to_the_right_images(tmp_path, image_tree):
    root = image_tree(tmp_path / "d", {("train", 0): 4, ("train", 2): 3})
    train = load_image_set(root, 16, split="train", progress=False)
    kl0, kl2 = train.for_grade(0), train.for_grade(2)
    sampler = PairSampler(len(kl0), len(kl2), 12, seed=1)
    batches = PairBatches(kl0, kl2, sampler, batch_size=4, seed=1)
    seen = set()
    for step in range(3):
        x1, x2, ij = batches.batch(step)
        for n, (i, j) in enumerate(ij.tolist()):
            np.testing.assert_array_equal(x1[n, 0].numpy(), kl0.images[i])
            np.testing.assert_array_equal(x2[n, 0].numpy(), kl2.images[j])
            assert (kl0.grades[i], kl2.grades[j]) == (0, 2)
            seen.add((kl0.image_ids[i], kl2.image_ids[j]))
    assert len(seen) == 12


@pytest.mark.parametrize("balance", [True, False])
def test_epoch_order_is_seeded_and_balanced(balance):
    labels = np.array([0] * 7 + [1] * 3)
    order = epoch_order(labels, epoch=2, seed=5, balance=balance)
    np.testing.assert_array_equal(order, epoch_order(labels, epoch=2, seed=5, balance=balance))
    assert not np.array_equal(order, epoch_order(labels, epoch=3, seed=5, balance=balance))
    assert set(order.tolist()) == set(range(10))  # every real image, every epoch
    counts = Counter(labels[order].tolist())
    assert counts == ({0: 7, 1: 7} if balance else {0: 7, 1: 3})
