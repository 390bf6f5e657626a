"""Acquisition sites: the shortcut a confounded collection offers a classifier.

Real collections mix sites, scanners and markers, and when one site sees more osteoarthritis than
another, a classifier can learn the site instead of the joint. ``kecae phantoms --site-bias B``
draws a site for every knee: site ``B`` burns a lead marker into the image (a bright square ring
near a top corner, far from the joint and outside the supervisor's central band), site ``A``
has none. In train and validation a KL-2 knee comes from site B with probability ``B`` and a
KL-0 knee with probability ``1 - B``; in test the site is independent of the grade (one half
each), so a classifier that learned the marker loses accuracy there. Flips, small rotations and
intensity changes keep the marker, so classic augmentation cannot remove the shortcut; a key
exchange keeps the recipient's acquisition, so X'1 (a KL-0 knee, mostly site A, given a KL-2
key) breaks the correlation.

:func:`marker_scores` finds the marker on any image (real or generated), so the evaluation can
check that an exchanged image kept its recipient's site.
"""

from __future__ import annotations

import numpy as np

#: Site names: ``none`` (a data set without sites), ``A`` (no marker), ``B`` (the marker).
SITES = ("none", "A", "B")
#: Marker geometry as fractions of the image side: centre row, centre column from the nearer
#: side edge, outer and inner half-widths of the ring; and its grey level (0..1).
MARKER_ROW, MARKER_COL, MARKER_OUTER, MARKER_INNER, MARKER_LEVEL = 0.085, 0.095, 0.06, 0.025, 0.97
#: A marker is found where the image correlates with the ring better than this.
MARKER_THRESHOLD = 0.4


def draw_site(grade: int, split: str, bias: float, rng: np.random.Generator) -> str:
    """Site of one knee: in train and validation site B with probability ``bias`` for KL-2 and
    worse, ``1 - bias`` for KL-0 and 0.5 for KL-1; in test 0.5 whatever the grade."""
    if not 0 <= bias <= 1:
        raise ValueError(f"site bias must be a probability in [0, 1], got {bias!r}")
    p = 0.5
    if split != "test" and grade != 1:
        p = bias if grade >= 2 else 1.0 - bias
    return "B" if rng.random() < p else "A"


def marker_on_right(noise_seed: int) -> bool:
    """Which top corner carries a knee's marker, fixed by its noise seed (a technician puts it
    on either side)."""
    return bool((noise_seed >> 5) & 1)


def _ring(size: int, right: bool) -> np.ndarray:
    """The marker's coverage of each pixel, (size, size) in [0, 1] (anti-aliased)."""
    centre = (np.arange(size) + 0.5) / size
    row = np.abs(centre - MARKER_ROW) * size
    col = np.abs(centre - ((1 - MARKER_COL) if right else MARKER_COL)) * size

    def box(d: np.ndarray, half: float) -> np.ndarray:
        return np.clip(half * size + 0.5 - d, 0.0, 1.0)

    outer = box(row, MARKER_OUTER)[:, None] * box(col, MARKER_OUTER)[None, :]
    inner = box(row, MARKER_INNER)[:, None] * box(col, MARKER_INNER)[None, :]
    return (outer - inner).astype(np.float32)


def burn_marker(image: np.ndarray, right: bool) -> np.ndarray:
    """The display image (size, size) in [0, 1] with the site marker burned in."""
    ring = _ring(image.shape[-1], right)
    return image * (1.0 - ring) + np.float32(MARKER_LEVEL) * ring


def marker_scores(images: np.ndarray, shift: int = 2) -> np.ndarray:
    """How much each image looks marked: the best correlation (−1..1) of a window around either
    marker position, moved by up to ``shift`` px, with the ring. images: (N, S, S) -> (N,)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be (N, S, S), got shape {images.shape}")
    n, size = len(images), images.shape[-1]
    best = np.full(n, -1.0, dtype=np.float32)
    half = int(np.ceil((MARKER_OUTER + 0.02) * size))
    for right in (False, True):
        ring = _ring(size, right)
        rows, cols = np.nonzero(ring > 0)
        r0, c0 = (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2
        window = ring[max(r0 - half, 0) : r0 + half + 1, max(c0 - half, 0) : c0 + half + 1]
        t = (window - window.mean()).ravel()
        t /= np.linalg.norm(t) + 1e-8
        h, w = window.shape
        for dr in range(-shift, shift + 1):
            for dc in range(-shift, shift + 1):
                top, left = max(r0 - half, 0) + dr, max(c0 - half, 0) + dc
                if top < 0 or left < 0 or top + h > size or left + w > size:
                    continue
                patch = images[:, top : top + h, left : left + w].reshape(n, -1)
                patch = patch - patch.mean(axis=1, keepdims=True)
                corr = patch @ t / (np.linalg.norm(patch, axis=1) + 1e-8)
                best = np.maximum(best, corr)
    return best


def has_marker(images: np.ndarray) -> np.ndarray:
    """Whether each image (N, S, S) carries the site marker (score above MARKER_THRESHOLD)."""
    return marker_scores(images) > MARKER_THRESHOLD
