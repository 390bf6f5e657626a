"""Torch datasets over cached image sets, and class-balanced sampling for classifier training."""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from kecae import CLASS_GRADES
from kecae.data.cache import ImageSet, load_image_set

__all__ = ["ClassificationDataset", "BalancedSampler", "balanced_indices", "balanced_sampler",
           "image_tensor", "load_image_set", "ImageSet"]


def image_tensor(images: np.ndarray, row: int) -> torch.Tensor:
    """Row ``row`` of an (N, S, S) array as a writable float32 tensor of shape (1, S, S)."""
    return torch.from_numpy(np.array(images[row], dtype=np.float32))[None]  # copy: maps are RO


class ClassificationDataset(Dataset):
    """``(x, y)`` pairs: x a float32 tensor (1, S, S) in [-1, 1], y the class index.

    The class index of an image is the position of its grade in ``grades``: with the default
    ``(0, 2)``, KL-0 -> 0 and KL-2 -> 1. ``transform`` (optional) maps x to x.
    """

    def __init__(self, image_set: ImageSet, grades: Sequence[int] = CLASS_GRADES,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.grades = tuple(int(g) for g in grades)
        unknown = sorted(set(np.unique(image_set.grades).tolist()) - set(self.grades))
        if unknown:
            raise ValueError(f"the image set holds grades {unknown} that are not in grades="
                             f"{self.grades}; load it with grades={self.grades}")
        self.image_set = image_set
        self.transform = transform
        lookup = {g: i for i, g in enumerate(self.grades)}
        self.labels = np.array([lookup[int(g)] for g in image_set.grades], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = image_tensor(self.image_set.images, index)  # (1, S, S)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[index])


def balanced_indices(labels: Sequence[int], seed: int = 0) -> np.ndarray:
    """Indices where every class appears as often as the largest one, shuffled.

    Bootstrap oversampling: each smaller class keeps all its images and adds draws with
    replacement from itself until it matches the largest class (so every real image is seen).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError("labels must be a non-empty 1-D sequence of class indices")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    target = int(counts.max())
    parts = []
    for c, n in zip(classes, counts):
        members = np.flatnonzero(labels == c)
        extra = rng.choice(members, size=target - int(n), replace=True)
        parts.extend([members, extra])
    return rng.permutation(np.concatenate(parts))


class BalancedSampler(Sampler[int]):
    """Class-balanced sampler: a fresh :func:`balanced_indices` draw every epoch.

    The draw of epoch ``e`` uses seed ``(seed, e)``; call :meth:`set_epoch` before each epoch
    (as with ``DistributedSampler``) to get a new bootstrap, or leave it for a fixed one.
    """

    def __init__(self, labels: Sequence[int], seed: int = 0):
        self.labels = np.asarray(labels)
        self.seed = int(seed)
        self.epoch = 0
        counts = np.unique(self.labels, return_counts=True)[1]
        self._len = int(counts.max()) * len(counts)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[int]:
        seed = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]
        return iter(balanced_indices(self.labels, int(seed)).tolist())


def balanced_sampler(labels: Sequence[int], seed: int = 0) -> BalancedSampler:
    """A :class:`BalancedSampler` over ``labels`` (pass it as a DataLoader's ``sampler``)."""
    return BalancedSampler(labels, seed)
