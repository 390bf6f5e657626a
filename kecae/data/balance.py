"""Bootstrap oversampling: the smaller class brought up to the larger one's size.

Each class keeps every one of its images and adds draws with replacement from itself, so every
real image is seen and the classes are even. Used by the classifier's epochs
(``ClassifierTrainConfig.balance``) and by KECAE's pairs (``oversample``).
"""

from __future__ import annotations

import numpy as np


def bootstrap(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices into ``n`` items grown to ``size``: ``0 … n−1``, then ``size − n`` draws with
    replacement (none, and no random draw, when ``size <= n``)."""
    if n < 1:
        raise ValueError(f"cannot bootstrap from {n} items: need at least one")
    extra = rng.integers(0, n, max(0, size - n))
    return np.concatenate([np.arange(n), extra])


def balanced_indices(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices into ``labels`` in which every class appears as often as the largest one: for
    each class (in sorted order) its own indices, then its bootstrap draws. Not shuffled."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError("labels must be a non-empty 1-D sequence of class indices")
    classes, counts = np.unique(labels, return_counts=True)
    target = int(counts.max())
    parts = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        parts.append(members[bootstrap(len(members), target, rng)])
    return np.concatenate(parts)
