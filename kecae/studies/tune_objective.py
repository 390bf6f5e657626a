"""What a ``kecae tune`` trial is scored by (:data:`OBJECTIVE`), from a metrics.json object."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kecae.results import (
    TUNE_OBJECTIVE_TERMS,
    Fidelity,
    Separability,
    lookup,
)

_SVM_HN = Separability.path("svm_hn_accuracy")


#: The objective in words (metrics.json and the report quote it).
OBJECTIVE = (
    "mean of 7 terms, each clipped to [0, 1], on validation pairs: the judge's agreement with "
    "its call on the donor (KL-0→KL-2, KL-2→KL-0); the median key transfer (both directions; "
    "refused measurements fail); the median non-key SSIM; plausible X′ / plausible real "
    "images; and separability = SVM accuracy on hK − max(0, SVM accuracy on hN − 0.5). On data "
    "without ground truth (no fidelity section) the three fidelity terms are left out; a term "
    "that could not be computed counts 0."
)


def objective_terms(metrics: dict[str, Any]) -> dict[str, float]:
    """Each term of :data:`OBJECTIVE` from a metrics.json object, in [0, 1]."""
    has_fidelity = isinstance(metrics.get(Fidelity.NAME), dict)
    terms: dict[str, float] = {}
    for name, path in TUNE_OBJECTIVE_TERMS.items():
        if path.startswith(Fidelity.NAME + ".") and not has_fidelity:
            continue
        value = _finite(lookup(metrics, path))
        if name == "separability" and value is not None:
            value -= max(0.0, (_finite(lookup(metrics, _SVM_HN)) or 1.0) - 0.5)
        terms[name] = 0.0 if value is None else float(np.clip(value, 0.0, 1.0))
    return terms


def tune_objective(metrics: dict[str, Any]) -> float:
    """:data:`OBJECTIVE` of one evaluation: the mean of :func:`objective_terms`."""
    terms = objective_terms(metrics)
    return float(np.mean(list(terms.values()))) if terms else math.nan


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
