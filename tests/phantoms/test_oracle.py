"""Oracle exchanges: the ground truth re-renders each phantom, and a key swap moves only the key."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kecae.data.cache import load_image_set
from kecae.phantoms import KEY_FIELDS, NON_KEY_FIELDS, make_phantoms, measure_joint
from kecae.phantoms.oracle import (
    oracle_images,
    oracle_params,
    params_from_row,
    read_ground_truth,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("oracle") / "data"
    make_phantoms(out, n_kl0=12, n_kl2=12, size=96, seed=4, workers=1, progress=False)
    return out


def test_ground_truth_rows_rebuild_the_rendered_images(data):
    rows = read_ground_truth(data / "ground_truth.csv")
    cached = load_image_set(data, size=48, split=None, grades=(0, 2), progress=False)
    ids = cached.image_ids[:6]
    again = oracle_images(rows, ids, ids, 48)  # each knee given its own key: itself
    # parameters are stored to 6 significant digits: well under one grey level (2/255)
    assert np.abs(again - np.asarray(cached.images[:6])).max() < 2 / 255


def test_a_perfect_exchange_takes_the_donor_key_and_keeps_the_rest(data):
    rows = read_ground_truth(data / "ground_truth.csv")
    healthy = next(r for r in rows.values() if r["grade"] == "0")
    diseased = next(r for r in rows.values() if r["grade"] == "2")
    rec, don = params_from_row(healthy), params_from_row(diseased)
    perfect = oracle_params(rec, don)
    assert perfect.grade == 2
    for name in KEY_FIELDS:
        assert getattr(perfect, name) == getattr(don, name)
    for name in (*NON_KEY_FIELDS, "side", "texture_seed", "noise_seed"):
        assert getattr(perfect, name) == getattr(rec, name)
    assert (
        dataclasses.replace(perfect, **{k: getattr(rec, k) for k in KEY_FIELDS}, grade=rec.grade)
        == rec
    )
    # the measured joint space follows the donor's width (in px of the recipient's scale)
    img = oracle_images(rows, [healthy["image_id"]], [diseased["image_id"]], 96)[0]
    m = measure_joint(img, side=rec.side)
    expected = don.jsw_medial_mm / rec.pixel_spacing_mm(96)
    assert m.ok and m.jsw_medial_px == pytest.approx(expected, abs=1.0)


def test_pairs_must_align():
    with pytest.raises(ValueError, match="pairs"):
        oracle_images({}, ["a"], [], 32)
