"""Bootstrap oversampling (kecae.data.balance): every real image kept, the classes even,
the same draws from the same seed."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from kecae.data.balance import balanced_indices, bootstrap
from kecae.data.cache import load_image_set


def test_balanced_indices_keep_every_image_and_even_the_classes(tmp_path, image_tree):
    root = image_tree(tmp_path / "d", {("train", 0): 5, ("train", 2): 2})
    s = load_image_set(root, 16, split="train", progress=False)
    labels = (s.grades == 2).astype(int)
    assert labels.tolist() == [0] * 5 + [1] * 2

    idx = balanced_indices(labels, np.random.default_rng(1))
    assert Counter(labels[idx].tolist()) == {0: 5, 1: 5}
    assert set(idx.tolist()) == set(range(7))  # every real image is kept
    np.testing.assert_array_equal(idx, balanced_indices(labels, np.random.default_rng(1)))
    other = [balanced_indices(labels, np.random.default_rng(k)) for k in range(2, 8)]
    assert any(not np.array_equal(idx, o) for o in other)  # the extra draws follow the seed
    with pytest.raises(ValueError, match="non-empty"):
        balanced_indices(np.array([], int), np.random.default_rng(0))


def test_bootstrap_is_the_items_then_draws_with_replacement():
    rng = np.random.default_rng(3)
    idx = bootstrap(4, 10, rng)
    assert idx[:4].tolist() == [0, 1, 2, 3] and len(idx) == 10 and set(idx) <= set(range(4))
    np.testing.assert_array_equal(idx[4:], np.random.default_rng(3).integers(0, 4, 6))
    state = np.random.default_rng(5)
    assert bootstrap(4, 4, state).tolist() == [0, 1, 2, 3]
    assert state.random() == np.random.default_rng(5).random()  # no draw when nothing to add
    with pytest.raises(ValueError, match="at least one"):
        bootstrap(0, 3, rng)
