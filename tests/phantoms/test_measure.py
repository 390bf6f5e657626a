"""The joint measurement (kecae.phantoms.measure): the ground truth recovered from phantoms,
robust to blur and input type, refusing images without a joint."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from kecae.phantoms import (
    measure_joint,
    measure_many,
    medial_on_image_left,
    render,
)


def test_measured_jsw_matches_ground_truth_on_noise_free_phantoms(phantom_params):
    ps = phantom_params(100, 21)
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


def test_measurement_survives_blur_and_detects_osteophytes(phantom_params):
    ps = phantom_params(40, 22)
    err, hit = [], []
    for p in ps:
        img = ndimage.gaussian_filter(render(p, 128).astype(np.float32) / 255, 1.0)
        m = measure_joint(img * 2 - 1, side=p.side)  # a model output in [-1, 1]
        assert m.ok, m.reason
        err.append(abs(m.jsw_medial_px - p.ground_truth(128)["jsw_medial_px"]))
        hit.append(m.osteophytes == p.osteophytes)
    assert np.median(err) <= 0.6
    assert np.mean(hit) >= 0.8


def test_measurement_is_the_same_for_uint8_and_float_inputs(phantom_params):
    p = phantom_params(1, 3)[0]
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


def _not_a_knee(kind: str, phantom_params) -> np.ndarray:
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
        knee = render(phantom_params(1, 4)[0], n).astype(np.float32) / 255
        return ndimage.gaussian_filter(knee, 8.0)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["noise", "blank", "gradient", "circle", "blurred_blob"])
def test_measurement_refuses_images_without_a_joint(kind, phantom_params):
    m = measure_joint(_not_a_knee(kind, phantom_params), side="L")
    assert not m.ok and m.reason
    assert np.isnan(m.jsw_left_px) and np.isnan(m.jsw_medial_px) and not m.osteophytes


def test_measurement_rejects_bad_input():
    with pytest.raises(ValueError, match="grey"):
        measure_joint(np.zeros((3, 64, 64)))
    with pytest.raises(ValueError, match="side"):
        measure_joint(np.zeros((64, 64)), side="medial")
    with pytest.raises(ValueError, match="one side per image"):
        measure_many([np.zeros((64, 64))], sides=["L", "R"])
