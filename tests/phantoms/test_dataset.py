"""The phantom data set (kecae.phantoms.dataset): exact counts, patient-level splits,
byte-identical for any number of workers, resumable, a manifest, the CLI."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest
from PIL import Image

from kecae.errors import KecaeError
from kecae.phantoms.dataset import (
    CSV_NAME,
    GROUND_TRUTH_COLUMNS,
    MANIFEST_COLUMNS,
    make_phantoms,
    plan_dataset,
)


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ph") / "set"
    make_phantoms(out, n_kl0=14, n_kl2=10, size=48, seed=5, progress=False)
    return out


def test_plan_has_exact_counts_and_patient_level_splits():
    knees = plan_dataset({0: 300, 2: 200}, seed=4)
    grades = [k.params.grade for k in knees]
    assert grades.count(0) == 300 and grades.count(2) == 200
    split_of: dict[str, set[str]] = {}
    side_of: dict[str, list[str]] = {}
    for k in knees:
        split_of.setdefault(k.patient_id, set()).add(k.split)
        side_of.setdefault(k.patient_id, []).append(k.params.side)
    assert all(len(s) == 1 for s in split_of.values())  # no patient in two splits
    assert all(sorted(s) == ["L", "R"] for s in side_of.values() if len(s) == 2)
    assert any(len(s) == 2 for s in side_of.values()) and any(len(s) == 1 for s in side_of.values())
    for g, n in ((0, 300), (2, 200)):  # stratified: every grade gets ~70/15/15
        train = sum(k.split == "train" and k.params.grade == g for k in knees)
        assert abs(train / n - 0.7) < 0.05
    assert len({k.image_id for k in knees}) == len(knees)


@pytest.mark.parametrize("splits", [(0.7, 0.2), (0.5, 0.5, 0.5), (1.2, -0.1, -0.1)])
def test_plan_rejects_bad_splits(splits):
    with pytest.raises(ValueError, match="splits"):
        plan_dataset({0: 5, 2: 5}, splits=splits)


def test_make_phantoms_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="size"):
        make_phantoms(tmp_path / "a", n_kl0=2, n_kl2=2, size=16, progress=False)
    with pytest.raises(ValueError, match="workers"):
        make_phantoms(tmp_path / "a", n_kl0=2, n_kl2=2, size=48, workers=0, progress=False)
    with pytest.raises(ValueError, match="0 phantoms"):
        make_phantoms(tmp_path / "a", n_kl0=0, n_kl2=0, size=48, progress=False)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "other.txt").write_text("not phantoms")
    with pytest.raises(KecaeError, match="not empty"):
        make_phantoms(tmp_path / "b", n_kl0=2, n_kl2=2, size=48, progress=False)


def test_dataset_is_byte_identical_across_runs_and_workers(small_set, tmp_path):
    again = tmp_path / "again"
    make_phantoms(again, n_kl0=14, n_kl2=10, size=48, seed=5, workers=2, progress=False)
    assert _digest(again) == _digest(small_set)


def test_rerun_resumes_and_refuses_other_settings(small_set, tmp_path):
    out = tmp_path / "resume"
    make_phantoms(out, n_kl0=14, n_kl2=10, size=48, seed=5, progress=False)
    victims = sorted(out.rglob("*.png"))[::3]
    for v in victims:
        v.unlink()
    (out / CSV_NAME).unlink()  # as if interrupted before the CSV
    make_phantoms(out, n_kl0=14, n_kl2=10, size=48, seed=5, progress=False)
    assert _digest(out) == _digest(small_set)
    with pytest.raises(KecaeError, match="seed"):
        make_phantoms(out, n_kl0=14, n_kl2=10, size=48, seed=6, progress=False)


def test_ground_truth_csv_is_a_manifest(small_set):
    with open(small_set / CSV_NAME, newline="") as fh:
        rows = list(csv.DictReader(fh))
    header = list(rows[0])
    assert header[: len(MANIFEST_COLUMNS)] == list(MANIFEST_COLUMNS)
    assert set(GROUND_TRUTH_COLUMNS) <= set(header)
    assert {"scale", "rotation_deg", "noise_sigma", "femur_width_mm"} <= set(header)
    assert len(rows) == 24 and sorted({r["grade"] for r in rows}) == ["0", "2"]
    for r in rows:
        path = small_set / r["path"]
        assert path.is_file() and r["path"] == f"{r['split']}/{r['grade']}/{r['image_id']}.png"
        with Image.open(path) as im:
            assert im.mode == "L" and im.size == (48, 48)
        sp = float(r["pixel_spacing_mm"])
        assert float(r["jsw_medial_px"]) == pytest.approx(float(r["jsw_medial_mm"]) / sp, rel=1e-4)
        assert r["side"] in ("L", "R") and r["split"] in ("train", "val", "test")
        assert int(r["osteophytes"]) == int(
            max(
                float(r[f"ost_{m}_mm"])
                for m in ("femoral_medial", "femoral_lateral", "tibial_medial", "tibial_lateral")
            )
            >= 1.5
        )
    from kecae.data.catalog import load_catalog  # the data layer reads it as a manifest

    catalog = load_catalog(small_set)
    assert catalog.layout == "manifest" and len(catalog.records) == 24
    assert {r.patient_id for r in catalog.records} == {r["patient_id"] for r in rows}


def test_cli_writes_the_layout(tmp_path, capsys):
    from kecae.cli import main

    out = tmp_path / "cli"
    assert (
        main(
            [
                "phantoms",
                str(out),
                "--kl0",
                "5",
                "--kl2",
                "3",
                "--size",
                "40",
                "--seed",
                "2",
                "--splits",
                "0.5,0.25,0.25",
                "--no-progress",
            ]
        )
        == 0
    )
    pngs = sorted(out.rglob("*.png"))
    assert len(pngs) == 8
    assert {p.parent.name for p in pngs} == {"0", "2"}
    assert {p.parent.parent.name for p in pngs} <= {"train", "val", "test"}
    assert (out / CSV_NAME).is_file()
    assert (
        main(
            [
                "phantoms",
                str(out),
                "--kl0",
                "5",
                "--kl2",
                "3",
                "--size",
                "40",
                "--seed",
                "3",
                "--splits",
                "0.5,0.25,0.25",
                "--no-progress",
            ]
        )
        == 2
    )  # other settings: refused
    assert "other settings" in capsys.readouterr().err
