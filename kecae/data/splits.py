"""Patient-level train / val / test splits, and detection of patients that leak across splits."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from kecae.data.records import Catalog, Record

#: Split names in the order of ``fractions``.
SPLIT_NAMES = ("train", "val", "test")


def assign_splits(
    records: Sequence[Record], fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> list[Record]:
    """Give every record a split, keeping each patient's images together.

    Patients are stratified by their most severe grade (so KL-0 and KL-2 patients are spread over
    the splits in the same proportions), shuffled with ``seed`` and cut by ``fractions`` (train,
    val, test) with largest-remainder rounding. The result depends only on the records and the
    seed, not on their order. Returns new records in the input order.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(
            f"fractions must be three non-negative numbers (train, val, test) that "
            f"sum to 1, e.g. (0.7, 0.15, 0.15); got {fractions}"
        )
    if any(r.split is not None for r in records):
        raise ValueError(
            "these records already have splits; assign_splits is for data without "
            "them (use the catalog's splits, or clear them with dataclasses.replace)"
        )

    worst: dict[str, int] = defaultdict(int)  # patient -> most severe grade
    for r in records:
        worst[r.patient_id] = max(worst[r.patient_id], r.grade)
    strata: dict[int, list[str]] = defaultdict(list)
    for patient in sorted(worst):
        strata[worst[patient]].append(patient)

    rng = np.random.default_rng(seed)
    split_of: dict[str, str] = {}
    for grade in sorted(strata):
        patients = strata[grade]
        order = rng.permutation(len(patients))
        sizes = _largest_remainder(len(patients), fractions)
        bounds = np.cumsum([0, *sizes])
        for name, lo, hi in zip(SPLIT_NAMES, bounds[:-1], bounds[1:]):
            for k in order[lo:hi]:
                split_of[patients[k]] = name
    return [dataclasses.replace(r, split=split_of[r.patient_id]) for r in records]


def _largest_remainder(n: int, fractions: Sequence[float]) -> list[int]:
    """Integer sizes summing to ``n``, proportional to ``fractions`` (ties go to earlier splits)."""
    exact = [n * f for f in fractions]
    sizes = [int(np.floor(e)) for e in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - sizes[i]), i))
    for i in by_remainder[: n - sum(sizes)]:
        sizes[i] += 1
    return sizes


def ensure_splits(
    catalog: Catalog, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> Catalog:
    """The catalog itself when it has splits, else a copy with :func:`assign_splits` applied."""
    if catalog.has_splits:
        return catalog
    return dataclasses.replace(
        catalog,
        records=assign_splits(
            [dataclasses.replace(r, split=None) for r in catalog.records], fractions, seed
        ),
    )


def find_split_leaks(records: Sequence[Record]) -> dict[str, set[str]]:
    """Patients whose images sit in more than one split: patient_id -> set of splits."""
    splits: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if r.split is not None:
            splits[r.patient_id].add(r.split)
    return {p: s for p, s in sorted(splits.items()) if len(s) > 1}


def subsample_train(catalog: Catalog, fraction: float, seed: int = 0) -> Catalog:
    """The catalog with its training split cut to ``fraction`` of its patients; every other split
    is kept whole.

    Patients are stratified by their most severe training grade; in each stratum
    ``max(1, round(fraction · patients))`` are kept, in a seeded order that depends only on the
    stratum's (sorted) patients, so a smaller fraction keeps a subset of a larger one's patients.
    A patient's images are kept or dropped together. Splits are assigned first when the catalog
    has none (:func:`ensure_splits`, as every loader does).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], e.g. 0.25; got {fraction}")
    catalog = ensure_splits(catalog)
    worst: dict[str, int] = defaultdict(int)
    for r in catalog.records:
        if r.split == "train":
            worst[r.patient_id] = max(worst[r.patient_id], r.grade)
    strata: dict[int, list[str]] = defaultdict(list)
    for patient in sorted(worst):
        strata[worst[patient]].append(patient)
    rng = np.random.default_rng(seed)
    keep: set[str] = set()
    for grade in sorted(strata):
        patients = strata[grade]
        order = rng.permutation(len(patients))
        n = max(1, int(np.floor(fraction * len(patients) + 0.5)))
        keep.update(patients[k] for k in order[:n])
    records = [r for r in catalog.records if r.split != "train" or r.patient_id in keep]
    return dataclasses.replace(catalog, records=records)
