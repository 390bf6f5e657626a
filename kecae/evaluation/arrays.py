"""The input checks every metric shares: feature matrices, label vectors and image stacks
checked for shape and finiteness, with an error that says what was given.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def feature_matrix(x: Any, name: str) -> np.ndarray:
    """A finite (N, D) float64 feature matrix, or a ValueError that says what to pass."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (N samples, D features), got shape "
            f"{arr.shape}; flatten each sample's features into one row"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf; drop those samples before the metric")
    return arr


def label_vector(y: Any, name: str, n: int | None = None) -> np.ndarray:
    """A 1-D label/prediction vector of length ``n`` (when given)."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise ValueError(
            f"{name} has {len(arr)} entries but {n} were expected: pass one entry per sample"
        )
    return arr


def image_stack(x: Any, name: str) -> np.ndarray:
    """A (N, H, W) float64 image batch; a single (H, W) image becomes a batch of one."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(
            f"{name} must be (N, H, W) or (H, W) grey images, got shape "
            f"{arr.shape}; squeeze the channel axis first"
        )
    return arr


def same_image_stacks(ref: Any, test: Any) -> tuple[np.ndarray, np.ndarray]:
    r, t = image_stack(ref, "ref"), image_stack(test, "test")
    if r.shape != t.shape:
        raise ValueError(
            f"ref and test must have the same shape, got {r.shape} and {t.shape}; "
            "compare each image with its own reference"
        )
    if len(r) == 0:
        raise ValueError("ref and test are empty: pass at least one image")
    return r, t


def summary_of(values: np.ndarray) -> dict[str, float]:
    """mean / sample std / median / n of a 1-D array of per-image scores."""
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        "median": float(np.median(values)),
        "n": len(values),
    }
