"""Phantom rendering (kecae.phantoms.synth): deterministic, mirror images for the two sides,
key features by grade, overlapping grades, bad parameters."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats

from kecae.phantoms import (
    KEY_FIELDS,
    NON_KEY_FIELDS,
    medial_on_image_left,
    render,
    sample_params,
)
from kecae.phantoms.geometry import _condyle_lift, _plateau, knee_geometry


def test_render_is_deterministic_uint8_and_noise_is_the_only_difference(phantom_params):
    p = phantom_params(1, 0)[0]
    a, b = render(p, 96), render(p, 96)
    assert a.dtype == np.uint8 and a.shape == (96, 96)
    assert np.array_equal(a, b)
    clean = render(p, 96, noise_free=True)
    diff = a.astype(int) - clean.astype(int)
    assert 0 < np.abs(diff).mean() < 12  # noise, not a different image
    assert abs(diff.mean()) < 1.5  # zero-mean noise


def test_left_and_right_knee_are_mirror_images(phantom_params):
    # with no shift, rotation, texture or collimator, flipping the side mirrors the image
    p = dataclasses.replace(
        phantom_params(1, 1)[0],
        side="L",
        shift_x_mm=0.0,
        rotation_deg=0.0,
        trabecular_contrast=0.0,
        collimation_edge="none",
    )
    left = render(p, 128, noise_free=True).astype(int)
    right = render(dataclasses.replace(p, side="R"), 128, noise_free=True).astype(int)
    assert np.abs(left - right[:, ::-1]).max() <= 1
    assert not np.array_equal(left, right)
    assert medial_on_image_left("L") and not medial_on_image_left("R")
    with pytest.raises(ValueError, match="side"):
        medial_on_image_left("left")


def test_ground_truth_jsw_is_the_narrowest_vertical_gap(phantom_params):
    # the condyles are placed so that min_x (tibial surface - femoral surface) = JSW exactly
    for p in phantom_params(20, 2):
        g = knee_geometry(p)
        for k, jsw in enumerate((p.jsw_medial_mm, p.jsw_lateral_mm)):
            cx, a = g.cx[k], g.ca[k]
            x = np.linspace(cx - 0.8 * a, cx + 0.8 * a, 4001)
            top = _plateau(p, x, g.cx[0], g.cx[1])
            femur = g.femur_bottom_y[k] - _condyle_lift(x, cx, a, g.cb, p.condyle_exponent)
            assert np.min(top - femur) == pytest.approx(jsw, abs=0.02)
        gt = p.ground_truth(128)
        assert gt["jsw_medial_px"] == pytest.approx(p.jsw_medial_mm / (92.0 / p.scale / 128))


def test_render_rejects_bad_size(phantom_params):
    p = phantom_params(1, 0)[0]
    for bad in (8, 64.0, True):
        with pytest.raises(ValueError, match="size"):
            render(p, bad)


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


def test_grades_overlap_so_no_threshold_is_perfect(phantom_params):
    ps = phantom_params(600, 9)
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
