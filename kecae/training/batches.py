"""The batches of the two training loops, each a pure function of (seed, epoch or step), so a
resumed run sees the batches an uninterrupted one would and torchrun ranks take disjoint slices
of one global batch without talking to each other."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kecae.data.balance import balanced_indices
from kecae.data.pairs import PairSampler


class ArrayBatcher:
    """Gathers batches from several (N_k, S, S) image arrays addressed by one global index.

    Lets a training set be the union of a real split and generated sets (T' = T ∪ X') without
    copying them into one array.
    """

    def __init__(self, arrays: list[np.ndarray], labels: list[np.ndarray]) -> None:
        self.arrays = arrays
        self.labels = np.concatenate(labels).astype(np.int64)
        self.offsets = np.cumsum([0] + [len(a) for a in arrays])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def images(self, index: np.ndarray) -> torch.Tensor:
        """(B, 1, S, S) float32 tensor for the global indices ``index``."""
        index = np.asarray(index)
        which = np.searchsorted(self.offsets, index, side="right") - 1
        out = None
        for k, array in enumerate(self.arrays):
            sel = np.nonzero(which == k)[0]
            if len(sel) == 0:
                continue
            local = index[sel] - self.offsets[k]
            order = np.argsort(local)  # sorted reads are kinder to memory maps
            block = np.asarray(array[local[order]], dtype=np.float32)
            if out is None:
                out = np.empty((len(index), *block.shape[1:]), dtype=np.float32)
            out[sel[order]] = block
        assert out is not None, "empty batch"
        return torch.from_numpy(out)[:, None]


def epoch_order(labels: np.ndarray, epoch: int, seed: int, balance: bool) -> np.ndarray:
    """One classifier epoch's order of the training images; with ``balance`` the minority class
    is bootstrap-oversampled to parity first (:func:`kecae.data.balance.balanced_indices`)."""
    rng = np.random.default_rng([seed, epoch, 17])
    index = balanced_indices(labels, rng) if balance else np.arange(len(labels))
    return rng.permutation(index)


class PairBatches:
    """KECAE's global batch at step s -> this rank's slice of (x1, x2) tensors.

    Epoch e = s // steps_per_epoch takes a seeded permutation of the N sampled pairs.
    """

    def __init__(
        self,
        kl0: Any,
        kl2: Any,
        sampler: PairSampler,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.kl0, self.kl2, self.sampler = kl0, kl2, sampler
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = max(1, len(sampler) // batch_size)
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def pair_positions(self, step: int) -> np.ndarray:
        """Positions (into the N sampled pairs) of this rank's share of global batch ``step``."""
        epoch, b = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            rng = np.random.default_rng([self.seed, epoch, 29])
            self._perm = rng.permutation(len(self.sampler))
        glob = self._perm[b * self.batch_size : (b + 1) * self.batch_size]
        local = len(glob) // self.world_size
        return glob[self.rank * local : (self.rank + 1) * local]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """(x1, x2) of this rank's pairs at ``step``, each (B, 1, S, S), and their (B, 2)
        (KL-0 index, KL-2 index)."""
        ij = self.sampler.pairs_at(self.pair_positions(step))
        return gather(self.kl0.images, ij[:, 0]), gather(self.kl2.images, ij[:, 1]), ij


def gather(images: np.ndarray, index: np.ndarray) -> torch.Tensor:
    """Rows ``index`` of an (N, S, S) array as a (B, 1, S, S) float32 tensor, read in sorted
    order (kinder to memory maps)."""
    order = np.argsort(index)
    block = np.empty((len(index), *images.shape[1:]), dtype=np.float32)
    block[order] = images[index[order]]
    return torch.from_numpy(block)[:, None]
