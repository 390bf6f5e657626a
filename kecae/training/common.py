"""Pieces shared by the two training loops (which know nothing of the models they train)."""

from __future__ import annotations

import math

import numpy as np
import torch

from kecae.utils import KecaeError


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
                out = np.empty((len(index),) + block.shape[1:], dtype=np.float32)
            out[sel[order]] = block
        assert out is not None, "empty batch"
        return torch.from_numpy(out)[:, None]


def balanced_epoch_indices(labels: np.ndarray, epoch: int, seed: int,
                           balance: bool) -> np.ndarray:
    """One epoch's order; with ``balance`` the minority class is bootstrap-oversampled to parity."""
    rng = np.random.default_rng([seed, epoch, 17])
    index = np.arange(len(labels))
    if balance:
        classes, counts = np.unique(labels, return_counts=True)
        parts = []
        for c, n in zip(classes, counts):
            members = index[labels == c]
            extra = rng.choice(members, size=counts.max() - n, replace=True) if n < counts.max() \
                else np.empty(0, dtype=index.dtype)
            parts += [members, extra]
        index = np.concatenate(parts)
    return rng.permutation(index)


def check_finite(value: float, step: int, what: str, last_ckpt: str | None) -> None:
    """Stop with a clear message on NaN or inf; the last good checkpoint is left as it is."""
    if not math.isfinite(value):
        keep = f"the last good checkpoint is {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
        raise KecaeError(f"{what} became {value} at step {step}; {keep}. Lower the learning rate "
                         "or a loss weight, check the data (`kecae data check`), then resume with --resume")


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA; a no-op on CPU so CPU runs stay deterministic."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=enabled and device.type == "cuda")


def memory_format(enabled: bool) -> torch.memory_format:
    """NHWC (channels_last) when enabled: faster convolutions on CPU and on tensor-core GPUs."""
    return torch.channels_last if enabled else torch.contiguous_format
