"""Patient-level splits (kecae.data.splits): stratified, deterministic, no patient in two
splits."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from kecae.data.catalog import load_catalog
from kecae.data.splits import assign_splits, find_split_leaks, subsample_train


def _records(tmp_path, image_tree, n0=40, n2=20):
    # 60 images (40 KL-0, then 20 KL-2) of 45 patients: image k belongs to patient k mod 45, so
    # P0..P14 have a KL-0 and a KL-2 image, P15..P39 one KL-0 image, P40..P44 one KL-2 image
    patients = {f"img_{k:04d}": f"P{k % 45}" for k in range(n0 + n2)}
    root = image_tree(
        tmp_path / "s",
        {(None, 0): n0, (None, 2): n2},
        manifest="manifest.csv",
        patients=patients,
        shape=(8, 8),
    )
    return load_catalog(root).records


def test_assign_splits_patient_level_stratified_deterministic(tmp_path, image_tree):
    records = _records(tmp_path, image_tree)
    a = assign_splits(records, seed=3)
    assert a == assign_splits(list(reversed(records)), seed=3)[::-1]  # order does not matter
    assert a != assign_splits(records, seed=4)
    assert find_split_leaks(a) == {}
    # strata by most severe grade: 20 patients reach KL-2 (P0..P14, P40..P44), 25 stay KL-0
    per_split = Counter(
        (r.split, max(x.grade for x in a if x.patient_id == r.patient_id))
        for r in {r.patient_id: r for r in a}.values()
    )
    # 25 * (0.7, 0.15, 0.15) = 17.5, 3.75, 3.75 -> 17, 4, 4 (largest remainders round up);
    # 20 * (0.7, 0.15, 0.15) = 14, 3, 3
    assert per_split == {
        ("train", 0): 17,
        ("val", 0): 4,
        ("test", 0): 4,
        ("train", 2): 14,
        ("val", 2): 3,
        ("test", 2): 3,
    }


def test_assign_splits_bad_arguments(tmp_path, image_tree):
    records = _records(tmp_path, image_tree, n0=3, n2=2)
    with pytest.raises(ValueError, match="sum to 1"):
        assign_splits(records, fractions=(0.8, 0.3, 0.1))
    with pytest.raises(ValueError, match="three non-negative"):
        assign_splits(records, fractions=(0.5, 0.5))
    with pytest.raises(ValueError, match="already have splits"):
        assign_splits(assign_splits(records))


def test_find_split_leaks(tmp_path, image_tree):
    import dataclasses

    records = assign_splits(_records(tmp_path, image_tree))
    moved = dataclasses.replace(records[45], split="test" if records[45].split != "test" else "val")
    leaks = find_split_leaks([*records[:45], moved, *records[46:]])
    assert list(leaks) == [moved.patient_id]  # img_0045 belongs to P0
    assert leaks[moved.patient_id] == {records[0].split, moved.split}


def test_subsample_train_by_patient_stratified_nested(tmp_path, image_tree):
    records = assign_splits(_records(tmp_path, image_tree), seed=1)
    catalog = dataclasses.replace(load_catalog(tmp_path / "s"), records=records)
    train = [r for r in records if r.split == "train"]
    worst: dict[str, int] = {}
    for r in train:
        worst[r.patient_id] = max(worst.get(r.patient_id, 0), r.grade)
    per_stratum = Counter(worst.values())
    kept = {}
    for fraction in (0.25, 0.5, 1.0):
        sub = subsample_train(catalog, fraction, seed=7)
        # validation and test untouched, every training image of a kept patient kept
        assert [r for r in sub.records if r.split != "train"] == [
            r for r in records if r.split != "train"
        ]
        patients = {r.patient_id for r in sub.records if r.split == "train"}
        assert [r for r in train if r.patient_id in patients] == [
            r for r in sub.records if r.split == "train"
        ]
        # stratified by the patient's most severe grade: round(fraction * n) of each stratum
        got = Counter(worst[p] for p in patients)
        for grade, n in per_stratum.items():
            assert got[grade] == max(1, int(fraction * n + 0.5))
        kept[fraction] = patients
        assert subsample_train(catalog, fraction, seed=7).records == sub.records  # seeded
    assert kept[0.25] <= kept[0.5] <= kept[1.0] == set(worst)  # smaller within larger
    assert {r.patient_id for r in subsample_train(catalog, 0.5, seed=8).records} != {
        r.patient_id for r in subsample_train(catalog, 0.5, seed=7).records
    }
    with pytest.raises(ValueError, match="fraction"):
        subsample_train(catalog, 0.0)
