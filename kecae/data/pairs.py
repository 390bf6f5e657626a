"""KECAE training pairs: (KL-0 image, KL-2 image) drawn from the full product without storing it.

The paper pairs every KL-0 training image with every KL-2 one (2,230 x 1,488 = 3,318,240
candidates) and trains on N of them (50k to 1M). Candidate ``c`` in ``[0, n_kl0 * n_kl2)`` is the
pair ``divmod(c, n_kl2)``; pair number ``k`` of the sample is candidate ``perm(k)``, where
``perm`` is a seeded pseudo-random permutation computed by a keyed Feistel network with
cycle-walking. It needs O(1) memory, gives random access to any pair, and never repeats a pair.
"""

from __future__ import annotations

import numpy as np

from kecae.data.balance import bootstrap

# splitmix64's finaliser: a fast, well-mixed 64-bit hash used as the Feistel round function.
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


class FeistelPermutation:
    """A seeded bijection of ``[0, n)`` evaluated element-wise on int arrays.

    A balanced Feistel network permutes ``[0, 4**h)`` with ``4**h >= n`` (less than 4n); values
    that land outside ``[0, n)`` are encrypted again ("cycle-walking") until they land inside,
    which keeps the map a bijection of ``[0, n)``.
    """

    def __init__(self, n: int, seed: int = 0, rounds: int = 6):
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        self.n = int(n)
        self.half = max(1, ((self.n - 1).bit_length() + 1) // 2)  # bits per Feistel half
        self.mask = np.uint64((1 << self.half) - 1)
        self.keys = np.random.SeedSequence([int(seed), self.n]).generate_state(rounds, np.uint64)
        self._int_keys = [int(key) for key in self.keys]

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        shift = np.uint64(self.half)
        left, right = x >> shift, x & self.mask
        for key in self.keys:
            f = right ^ key  # round function: keyed splitmix64 hash of the right half
            f ^= f >> np.uint64(30)
            f *= _MIX1
            f ^= f >> np.uint64(27)
            f *= _MIX2
            f ^= f >> np.uint64(31)
            left, right = right, left ^ (f & self.mask)
        return (left << shift) | right

    def index(self, k: int) -> int:
        """perm(k) for one Python int: the same network in plain integer arithmetic (~50x faster
        than the array path for a single value)."""
        half, mask, full = self.half, int(self.mask), (1 << 64) - 1
        y = int(k)
        while True:
            left, right = y >> half, y & mask
            for key in self._int_keys:
                f = right ^ key
                f ^= f >> 30
                f = (f * 0xBF58476D1CE4E5B9) & full
                f ^= f >> 27
                f = (f * 0x94D049BB133111EB) & full
                f ^= f >> 31
                left, right = right, left ^ (f & mask)
            y = (left << half) | right
            if y < self.n:
                return y

    def __call__(self, k: np.ndarray) -> np.ndarray:
        """perm(k) for an int array ``k`` with values in [0, n); uint64 of the same shape."""
        y = self._encrypt(np.asarray(k, dtype=np.uint64))
        outside = y >= self.n
        while outside.any():
            y[outside] = self._encrypt(y[outside])
            outside = y >= self.n
        return y


class PairSampler:
    """``num_pairs`` distinct (KL-0 index, KL-2 index) pairs, in a seeded random order.

    ``sampler[k] -> (i, j)``: i indexes the KL-0 image list, j the KL-2 image list.
    ``oversample=True`` first bootstraps the smaller class up to the larger one's size (all its
    images plus seeded draws with replacement); the pair index then runs over that enlarged list
    and is mapped back to a real image index, so ``total`` becomes max(n_kl0, n_kl2) ** 2 and a
    repeated minority image pairs with different partners. The paper's 3,318,240 candidates are
    the plain product (``oversample=False``).
    """

    def __init__(
        self,
        n_kl0: int,
        n_kl2: int,
        num_pairs: int | None = None,
        seed: int = 0,
        oversample: bool = False,
    ):
        if int(n_kl0) < 1 or int(n_kl2) < 1:
            raise ValueError(
                f"need at least one image of each class, got n_kl0={n_kl0}, n_kl2={n_kl2}"
            )
        self.n_kl0, self.n_kl2 = int(n_kl0), int(n_kl2)
        self.seed, self.oversample = int(seed), bool(oversample)
        self._map0 = self._map2 = None  # bootstrap list -> real image index, when oversampling
        rows, cols = self.n_kl0, self.n_kl2
        if oversample and rows != cols:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1]))
            big = max(rows, cols)
            boot = bootstrap(min(rows, cols), big, rng)
            if rows < cols:
                self._map0 = boot
            else:
                self._map2 = boot
            rows = cols = big
        self._cols = cols
        self.total = rows * cols  # number of candidate pairs
        self.num_pairs = self.total if num_pairs is None else int(num_pairs)
        if not 1 <= self.num_pairs <= self.total:
            raise ValueError(
                f"num_pairs={num_pairs} but there are only {self.total:,} distinct pairs "
                f"({self.n_kl0} KL-0 x {self.n_kl2} KL-2"
                f"{', oversampled' if oversample else ''}); ask for at most {self.total:,}"
                + ("" if oversample else " or pass oversample=True")
            )
        self._perm = FeistelPermutation(self.total, seed=self.seed)

    def __len__(self) -> int:
        return self.num_pairs

    def __getitem__(self, k: int) -> tuple[int, int]:
        k = int(k)
        if k < 0:
            k += self.num_pairs
        if not 0 <= k < self.num_pairs:
            raise IndexError(f"pair index {k} out of range [0, {self.num_pairs})")
        i, j = divmod(self._perm.index(k), self._cols)
        if self._map0 is not None:
            i = self._map0[i]
        if self._map2 is not None:
            j = self._map2[j]
        return int(i), int(j)

    def pairs_at(self, ks: np.ndarray) -> np.ndarray:
        """(n, 2) int64 (i, j) for an int array of pair indices in [0, num_pairs)."""
        candidates = self._perm(np.asarray(ks, dtype=np.int64))
        i, j = np.divmod(candidates, np.uint64(self._cols))
        i, j = i.astype(np.int64), j.astype(np.int64)
        if self._map0 is not None:
            i = self._map0[i]
        if self._map2 is not None:
            j = self._map2[j]
        return np.stack([i, j], axis=1)

    def pairs(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """(stop - start, 2) int64 pairs ``[self[k] for k in range(start, stop)]``, vectorised."""
        stop = self.num_pairs if stop is None else int(stop)
        if not 0 <= start <= stop <= self.num_pairs:
            raise ValueError(f"need 0 <= start <= stop <= {self.num_pairs}, got {start}, {stop}")
        return self.pairs_at(np.arange(start, stop, dtype=np.int64))
