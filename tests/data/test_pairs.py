"""KECAE's pairs (kecae.data.pairs): a seeded bijection over the KL-0 x KL-2 product, random
access, vectorised slices, oversampling, bounded memory at the paper's scale."""

from __future__ import annotations

import tracemalloc
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kecae.data.pairs import FeistelPermutation, PairSampler

sizes = st.integers(min_value=1, max_value=13)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=1, max_value=600), seed=st.integers(0, 2**32))
def test_feistel_is_a_bijection(n, seed):
    out = FeistelPermutation(n, seed)(np.arange(n))
    np.testing.assert_array_equal(np.sort(out), np.arange(n))


@settings(max_examples=60, deadline=None)
@given(n0=sizes, n2=sizes, seed=st.integers(0, 1000))
def test_all_pairs_cover_the_product_once(n0, n2, seed):
    s = PairSampler(n0, n2, n0 * n2, seed=seed)
    assert s.total == len(s) == n0 * n2
    pairs = [tuple(p) for p in s.pairs().tolist()]
    assert sorted(pairs) == [(i, j) for i in range(n0) for j in range(n2)]
    assert [s[k] for k in range(len(s))] == pairs  # random access agrees with pairs()


@settings(max_examples=40, deadline=None)
@given(n0=sizes, n2=sizes, seed=st.integers(0, 1000), data=st.data())
def test_prefix_and_slices_agree(n0, n2, seed, data):
    num = data.draw(st.integers(1, n0 * n2))
    s = PairSampler(n0, n2, num, seed=seed)
    full = PairSampler(n0, n2, None, seed=seed).pairs()
    np.testing.assert_array_equal(s.pairs(), full[:num])  # N pairs = first N of the permutation
    start = data.draw(st.integers(0, num))
    stop = data.draw(st.integers(start, num))
    np.testing.assert_array_equal(s.pairs(start, stop), full[start:stop])
    assert len({tuple(p) for p in s.pairs().tolist()}) == num  # no pair twice


def test_seed_determinism():
    a = PairSampler(50, 40, 500, seed=7).pairs()
    np.testing.assert_array_equal(a, PairSampler(50, 40, 500, seed=7).pairs())
    assert not np.array_equal(a, PairSampler(50, 40, 500, seed=8).pairs())


def test_oversample_bootstraps_the_minority():
    s = PairSampler(7, 3, None, seed=2, oversample=True)
    assert s.total == 49  # both classes enlarged to 7
    pairs = s.pairs()
    assert pairs[:, 0].max() < 7 and pairs[:, 1].max() < 3
    # each KL-0 image meets every bootstrap slot once; the 3 real KL-2 images fill 7 slots, each
    # real image at least once (all originals kept) and the slot multiplicities sum to 7
    per_j = Counter(pairs[:, 1].tolist())
    assert set(per_j) == {0, 1, 2} and sum(per_j.values()) == 49
    assert all(n % 7 == 0 for n in per_j.values())
    assert Counter(pairs[:, 0].tolist()) == dict.fromkeys(range(7), 7)
    np.testing.assert_array_equal(pairs, PairSampler(7, 3, None, seed=2, oversample=True).pairs())
    same = PairSampler(4, 4, None, oversample=True)
    assert same.total == 16  # nothing to bootstrap


def test_bad_arguments():
    with pytest.raises(
        ValueError,
        match=r"only 6 distinct pairs .* ask for at most 6 or pass "
        r"oversample=True",
    ):
        PairSampler(3, 2, 7)
    with pytest.raises(ValueError, match="at least one image of each class"):
        PairSampler(0, 5, 1)
    s = PairSampler(3, 2, 4)
    with pytest.raises(IndexError):
        s[4]
    assert s[-1] == s[3]


def test_paper_scale_one_million_pairs_in_bounded_memory():
    # the paper's train split: 2,230 KL-0 x 1,488 KL-2 = 3,318,240 candidates, N = 1M
    PairSampler(2, 2, 1).pairs()  # warm-up: numpy's lazily built internals are not ours
    tracemalloc.start()
    s = PairSampler(2230, 1488, 1_000_000, seed=0)
    build_peak = tracemalloc.get_traced_memory()[1]
    codes = np.empty(1_000_000, np.int64)  # 8 MB of results, allocated before the window
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    for start in range(0, len(s), 50_000):
        chunk = s.pairs(start, min(start + 50_000, len(s)))
        codes[start : start + len(chunk)] = chunk[:, 0] * 1488 + chunk[:, 1]
    chunk_peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    assert s.total == 3_318_240 and len(s) == 1_000_000
    assert build_peak < 100_000  # O(1): no list of candidates is ever built
    assert chunk_peak < 8_000_000  # temporaries of one 50k chunk, not of the 1M pairs
    assert np.unique(codes).size == 1_000_000  # no pair twice
    assert codes.min() >= 0 and codes.max() < 3_318_240
    i = codes // 1488
    assert np.unique(i).size == 2230  # every KL-0 image is used (expected ~448 times each)
    assert s[999_999] == (int(codes[-1] // 1488), int(codes[-1] % 1488))
