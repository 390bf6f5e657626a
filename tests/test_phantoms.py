"""Phantoms: determinism, splits, manifest, grade statistics, measurement accuracy and refusals."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage, stats

from kecae.phantoms import (
    KEY_FIELDS, NON_KEY_FIELDS, measure_joint, measure_many, medial_on_image_left, render,
    sample_params,
)
from kecae.phantoms.dataset import (
    CSV_NAME, GROUND_TRUTH_COLUMNS, MANIFEST_COLUMNS, make_phantoms, plan_dataset,
)
from kecae.phantoms.synth import knee_geometry, _plateau, _condyle_lift
from kecae.utils import KecaeError


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ph") / "set"
    make_phantoms(out, n_kl0=14, n_kl2=10, size=48, seed=5, progress=False)
    return out


def _params(n: int, seed: int, grades=(0, 2)):
    rng = np.random.default_rng(seed)
    return [sample_params(grades[i % len(grades)], rng) for i in range(n)]


# ------------------------------------------------------------------------------- rendering
def test_render_is_deterministic_uint8_and_noise_is_the_only_difference():
    p = _params(1, 0)[0]
    a, b = render(p, 96), render(p, 96)
    assert a.dtype == np.uint8 and a.shape == (96, 96)
    assert np.array_equal(a, b)
    clean = render(p, 96, noise_free=True)
    diff = a.astype(int) - clean.astype(int)
    assert 0 < np.abs(diff).mean() < 12  # noise, not a different image
    assert abs(diff.mean()) < 1.5  # zero-mean noise


def test_left_and_right_knee_are_mirror_images():
    # with no shift, rotation, texture or collimator, flipping the side mirrors the image
    p = dataclasses.replace(_params(1, 1)[0], side="L", shift_x_mm=0.0, rotation_deg=0.0,
                            trabecular_contrast=0.0, collimation_edge="none")
    left = render(p, 128, noise_free=True).astype(int)
    right = render(dataclasses.replace(p, side="R"), 128, noise_free=True).astype(int)
    assert np.abs(left - right[:, ::-1]).max() <= 1
    assert not np.array_equal(left, right)
    assert medial_on_image_left("L") and not medial_on_image_left("R")
    with pytest.raises(ValueError, match="side"):
        medial_on_image_left("left")


def test_ground_truth_jsw_is_the_narrowest_vertical_gap():
    # the condyles are placed so that min_x (tibial surface - femoral surface) = JSW exactly
    for p in _params(20, 2):
        g = knee_geometry(p)
        for k, jsw in enumerate((p.jsw_medial_mm, p.jsw_lateral_mm)):
            cx, a = g.cx[k], g.ca[k]
            x = np.linspace(cx - 0.8 * a, cx + 0.8 * a, 4001)
            top = _plateau(p, x, g.cx[0], g.cx[1])
            femur = g.femur_bottom_y[k] - _condyle_lift(x, cx, a, g.cb, p.condyle_exponent)
            assert np.min(top - femur) == pytest.approx(jsw, abs=0.02)
        gt = p.ground_truth(128)
        assert gt["jsw_medial_px"] == pytest.approx(p.jsw_medial_mm / (92.0 / p.scale / 128))


def test_render_rejects_bad_size():
    p = _params(1, 0)[0]
    for bad in (8, 64.0, True):
        with pytest.raises(ValueError, match="size"):
            render(p, bad)


# ------------------------------------------------------------------------------- grades
def test_key_features_differ_by_grade_and_non_key_features_do_not():
    rng = np.random.default_rng(123)
    kl0 = [sample_params(0, rng) for _ in range(200)]
    kl2 = [sample_params(2, rng) for _ in range(200)]

    def col(ps, name):
        return np.array([getattr(p, name) for p in ps], dtype=float)

    for name in ("severity", "jsw_medial_mm", "ost_tibial_medial_mm", "ost_femoral_medial_mm"):
        assert stats.mannwhitneyu(col(kl0, name), col(kl2, name)).pvalue < 1e-12, name
    assert col(kl0, "jsw_medial_mm").mean() - col(kl2, "jsw_medial_mm").mean() > 1.5  # mm
    # lateral joint space is "roughly unchanged": less than a quarter of the medial difference
    lat = col(kl0, "jsw_lateral_mm").mean() - col(kl2, "jsw_lateral_mm").mean()
    assert abs(lat) < 0.5
    # every non-key parameter: same distribution (two-sample KS, Bonferroni over the fields)
    alpha = 0.01 / len(NON_KEY_FIELDS)
    for name in NON_KEY_FIELDS:
        assert stats.ks_2samp(col(kl0, name), col(kl2, name)).pvalue > alpha, name
    assert set(KEY_FIELDS).isdisjoint(NON_KEY_FIELDS)
    sides = [p.side for p in kl0 + kl2]
    assert 0.4 < sides.count("L") / len(sides) < 0.6


def test_grades_overlap_so_no_threshold_is_perfect():
    ps = _params(600, 9)
    y = np.array([p.grade == 2 for p in ps])
    for name in ("jsw_medial_mm", "severity"):
        x = np.array([getattr(p, name) for p in ps])
        best = max(np.mean((x >= t) == y) for t in np.unique(x))
        best = max(best, max(np.mean((x < t) == y) for t in np.unique(x)))
        assert 0.8 < best < 0.95, (name, best)


def test_sample_params_rejects_bad_grade_and_side():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="grade"):
        sample_params(5, rng)
    with pytest.raises(ValueError, match="side"):
        sample_params(0, rng, side="X")


# ------------------------------------------------------------------------------- data set
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
    assert header[:len(MANIFEST_COLUMNS)] == list(MANIFEST_COLUMNS)
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
        assert int(r["osteophytes"]) == int(max(float(r[f"ost_{m}_mm"]) for m in (
            "femoral_medial", "femoral_lateral", "tibial_medial", "tibial_lateral")) >= 1.5)
    from kecae.data.catalog import load_catalog  # the data layer reads it as a manifest

    catalog = load_catalog(small_set)
    assert catalog.layout == "manifest" and len(catalog.records) == 24
    assert {r.patient_id for r in catalog.records} == {r["patient_id"] for r in rows}


def test_cli_writes_the_layout(tmp_path, capsys):
    from kecae.cli import main

    out = tmp_path / "cli"
    assert main(["phantoms", str(out), "--kl0", "5", "--kl2", "3", "--size", "40", "--seed", "2",
                 "--splits", "0.5,0.25,0.25", "--no-progress"]) == 0
    pngs = sorted(out.rglob("*.png"))
    assert len(pngs) == 8
    assert {p.parent.name for p in pngs} == {"0", "2"}
    assert {p.parent.parent.name for p in pngs} <= {"train", "val", "test"}
    assert (out / CSV_NAME).is_file()
    assert main(["phantoms", str(out), "--kl0", "5", "--kl2", "3", "--size", "40", "--seed", "3",
                 "--splits", "0.5,0.25,0.25", "--no-progress"]) == 2  # other settings: refused
    assert "other settings" in capsys.readouterr().err


# ------------------------------------------------------------------------------- measurement
def test_measured_jsw_matches_ground_truth_on_noise_free_phantoms():
    ps = _params(100, 21)
    errors = {"medial": [], "lateral": []}
    for p in ps:
        m = measure_joint(render(p, 128, noise_free=True), side=p.side)
        assert m.ok, m.reason
        gt = p.ground_truth(128)
        errors["medial"].append(abs(m.jsw_medial_px - gt["jsw_medial_px"]))
        errors["lateral"].append(abs(m.jsw_lateral_px - gt["jsw_lateral_px"]))
    for name, e in errors.items():
        assert np.median(e) <= 0.5, name
        assert np.percentile(e, 90) <= 1.0, name


def test_measurement_survives_blur_and_detects_osteophytes():
    ps = _params(40, 22)
    err, hit = [], []
    for p in ps:
        img = ndimage.gaussian_filter(render(p, 128).astype(np.float32) / 255, 1.0)
        m = measure_joint(img * 2 - 1, side=p.side)  # a model output in [-1, 1]
        assert m.ok, m.reason
        err.append(abs(m.jsw_medial_px - p.ground_truth(128)["jsw_medial_px"]))
        hit.append(m.osteophytes == p.osteophytes)
    assert np.median(err) <= 0.6
    assert np.mean(hit) >= 0.8


def test_measurement_is_the_same_for_uint8_and_float_inputs():
    p = _params(1, 3)[0]
    img = render(p, 128)
    a = measure_joint(img, side=p.side)
    b = measure_joint(img.astype(np.float32) / 255.0, side=p.side)
    c = measure_joint(img.astype(np.float32) / 127.5 - 1.0, side=p.side)
    assert a.ok and a.jsw_medial_px == pytest.approx(b.jsw_medial_px, abs=1e-3)
    assert a.jsw_medial_px == pytest.approx(c.jsw_medial_px, abs=1e-3)
    # the side maps image-left/right onto medial/lateral
    expect = a.jsw_left_px if medial_on_image_left(p.side) else a.jsw_right_px
    assert a.jsw_medial_px == expect
    none = measure_joint(img)
    assert np.isnan(none.jsw_medial_px) and none.jsw_left_px == a.jsw_left_px
    batch = measure_many(np.stack([img, img]), [p.side, None])
    assert batch["ok"].all() and batch["jsw_medial_px"][0] == a.jsw_medial_px
    assert np.isnan(batch["jsw_medial_px"][1])


def _not_a_knee(kind: str) -> np.ndarray:
    n = 128
    yy, xx = np.mgrid[:n, :n]
    rng = np.random.default_rng(0)
    if kind == "noise":
        return rng.integers(0, 256, (n, n)).astype(np.uint8)
    if kind == "blank":
        return np.full((n, n), 128, np.uint8)
    if kind == "gradient":
        return (yy / n * 255).astype(np.uint8)
    if kind == "circle":
        return np.where((yy - 64) ** 2 + (xx - 64) ** 2 < 40**2, 220, 30).astype(np.uint8)
    if kind == "blurred_blob":
        knee = render(_params(1, 4)[0], n).astype(np.float32) / 255
        return ndimage.gaussian_filter(knee, 8.0)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["noise", "blank", "gradient", "circle", "blurred_blob"])
def test_measurement_refuses_images_without_a_joint(kind):
    m = measure_joint(_not_a_knee(kind), side="L")
    assert not m.ok and m.reason
    assert np.isnan(m.jsw_left_px) and np.isnan(m.jsw_medial_px) and not m.osteophytes


def test_measurement_rejects_bad_input():
    with pytest.raises(ValueError, match="grey"):
        measure_joint(np.zeros((3, 64, 64)))
    with pytest.raises(ValueError, match="side"):
        measure_joint(np.zeros((64, 64)), side="medial")
    with pytest.raises(ValueError, match="one side per image"):
        measure_many([np.zeros((64, 64))], sides=["L", "R"])
