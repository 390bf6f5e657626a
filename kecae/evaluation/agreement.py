"""Agreement between readers: Cohen's kappa for two, Fleiss' kappa for more (the reader study)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import (
    cohen_kappa_score,
)

from kecae.evaluation.arrays import label_vector


def cohen_kappa(a: Any, b: Any) -> float:
    """Cohen's kappa between two readers' calls on the same items (scikit-learn).

    κ = (po − pe) / (1 − pe); NaN, as in :func:`fleiss_kappa`, when both readers put every item
    in one and the same category (pe = 1: agreement beyond chance is undefined).
    """
    x = label_vector(a, "a")
    y = label_vector(b, "b", len(x))
    if len(x) == 0:
        raise ValueError("no ratings: pass one call per item for each reader")
    if len(np.union1d(x, y)) == 1:
        return math.nan
    return float(cohen_kappa_score(x, y))


def fleiss_kappa(ratings: Any) -> float:
    """Fleiss' kappa of several readers' categorical calls.

    Args:
        ratings: (n_items, n_raters) category labels (any hashable values, e.g. KL grades);
            every rater rates every item.
    Returns:
        κ = (P̄ − P̄e) / (1 − P̄e); NaN when every call falls in one category (P̄e = 1).
    """
    r = np.asarray(ratings)
    if r.ndim != 2 or r.shape[0] < 1 or r.shape[1] < 2:
        raise ValueError(
            f"ratings must be (n_items, n_raters) with >= 2 raters, got shape {r.shape}"
        )
    _, codes = np.unique(r, return_inverse=True)
    codes = codes.reshape(r.shape)
    n_items, n_raters = r.shape
    # counts[i, j] = how many raters put item i in category j
    counts = np.stack([(codes == j).sum(1) for j in range(codes.max() + 1)], axis=1)
    p_j = counts.sum(0) / (n_items * n_raters)  # share of all calls per category
    p_i = ((counts**2).sum(1) - n_raters) / (n_raters * (n_raters - 1))  # per-item agreement
    p_bar, p_e = p_i.mean(), float((p_j**2).sum())
    if math.isclose(p_e, 1.0):
        return math.nan
    return float((p_bar - p_e) / (1.0 - p_e))
