"""Acquisition sites (kecae.phantoms.site): the grade-site correlation in train and validation
and none in test, a marker that changes nothing else, found on real and resized images, kept
by the oracle, recorded in the ground truth, and the bad values that must be refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kecae.cli import main
from kecae.data.readers import preprocess
from kecae.phantoms import make_phantoms
from kecae.phantoms.dataset import plan_dataset
from kecae.phantoms.oracle import oracle_images, params_from_row, read_ground_truth
from kecae.phantoms.site import draw_site, has_marker, marker_scores


def test_sites_follow_the_grade_in_train_and_validation_only():
    knees = plan_dataset({0: 3000, 2: 2000}, seed=3, site_bias=0.85)
    plain = plan_dataset({0: 3000, 2: 2000}, seed=3)
    # the site is drawn from its own stream: everything else is the plan without sites
    assert [k.params.site for k in plain] == ["none"] * 5000
    assert all(
        k.params == type(k.params)(**{**vars(p.params), "site": k.params.site})
        for k, p in zip(knees, plain, strict=True)
    )

    def share_b(split: tuple[str, ...], grade: int) -> tuple[float, int]:
        sel = [k.params.site == "B" for k in knees if k.split in split and k.params.grade == grade]
        return float(np.mean(sel)), len(sel)

    for split, want in ((("train", "val"), {0: 0.15, 2: 0.85}), (("test",), {0: 0.5, 2: 0.5})):
        for grade, p in want.items():
            share, n = share_b(split, grade)
            assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / n), (split, grade, share)
    rng = np.random.default_rng(0)
    assert draw_site(1, "train", 0.85, rng) in ("A", "B")
    with pytest.raises(ValueError, match="probability"):
        draw_site(0, "train", 1.5, rng)


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sites")
    kw = dict(n_kl0=16, n_kl2=16, size=96, seed=5, workers=1, progress=False)
    make_phantoms(root / "plain", **kw)
    make_phantoms(root / "sites", site_bias=0.85, **kw)
    return root / "plain", root / "sites"


def test_the_marker_changes_only_its_corner_and_is_recorded(sets):
    plain, sites = sets
    rows = read_ground_truth(sites / "ground_truth.csv")
    assert {r["site"] for r in rows.values()} == {"A", "B"}
    assert "site" not in next(iter(read_ground_truth(plain / "ground_truth.csv").values()))
    spec = json.loads((sites / ".kecae_phantoms.json").read_text())
    assert spec["site_bias"] == 0.85
    assert "site_bias" not in json.loads((plain / ".kecae_phantoms.json").read_text())
    for r in rows.values():
        a = np.asarray(Image.open(plain / r["path"]), dtype=np.int16)
        b = np.asarray(Image.open(sites / r["path"]), dtype=np.int16)
        changed = np.argwhere(a != b)
        if r["site"] == "A":
            assert len(changed) == 0
        else:  # the ring: the top 15 % of the image, within 16 % of a side edge
            assert len(changed) > 20 and changed[:, 0].max() < 0.15 * 96
            cols = changed[:, 1]
            assert cols.max() < 0.16 * 96 or cols.min() > 0.84 * 96
        assert params_from_row(r).site == r["site"]


def test_markers_are_found_at_the_data_size_and_smaller(sets):
    _, sites = sets
    rows = list(read_ground_truth(sites / "ground_truth.csv").values())
    marked = np.array([r["site"] == "B" for r in rows])
    for size in (96, 64, 32):
        images = np.stack(
            [
                preprocess(np.asarray(Image.open(sites / r["path"]), np.float32) / 255, size)
                for r in rows
            ]
        )
        assert (has_marker(images) == marked).all(), size
    # an image flipped left-right (classic augmentation) still carries it
    assert (has_marker(images[:, :, ::-1]) == marked).all()
    with pytest.raises(ValueError, match=r"\(N, S, S\)"):
        marker_scores(np.zeros((2, 8, 9)))


def test_the_oracle_keeps_the_recipients_site(sets):
    _, sites = sets
    rows = read_ground_truth(sites / "ground_truth.csv")
    a = next(k for k, r in rows.items() if r["site"] == "A" and r["grade"] == "0")
    b = next(k for k, r in rows.items() if r["site"] == "B" and r["grade"] == "2")
    images = oracle_images(rows, [a, b], [b, a], 64)
    assert has_marker(images).tolist() == [False, True]


def test_a_bad_site_bias_is_refused(tmp_path, capsys):
    assert main(["phantoms", str(tmp_path / "x"), "--site-bias", "1.5", "--no-progress"]) == 2
    assert "--site-bias" in capsys.readouterr().err
    with pytest.raises(ValueError, match="site_bias"):
        make_phantoms(tmp_path / "y", n_kl0=2, n_kl2=2, size=64, site_bias=-0.1, progress=False)
