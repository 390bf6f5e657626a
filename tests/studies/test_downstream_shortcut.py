"""`kecae study downstream --site-bias`: the shortcut regime on phantoms made like the run's own
(the same knees, a site marker that goes with the grade in train and validation), its own
supervisor and KECAE at every fraction, the site check, and a section of its own."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kecae.cli import main
from kecae.phantoms import make_phantoms
from kecae.phantoms.oracle import read_ground_truth
from kecae.studies import downstream


@pytest.fixture(scope="module")
def phantom_run(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("shortcut")
    data = root / "data"
    make_phantoms(data, n_kl0=40, n_kl2=40, size=64, seed=2, progress=False)
    run = root / "run"
    common = ["--data", str(data), "--batch-size", "8", "--no-progress", "--device", "cpu"]
    sup = ["train-classifier", *common, "--out", str(run / "supervisor"), "--arch", "small"]
    assert main([*sup, "--image-size", "32", "--epochs", "1"]) == 0
    kecae = ["train", *common, "--out", str(run / "kecae"), "--preset", "tiny"]
    kecae += ["--supervisor", str(run / "supervisor" / "best.pt"), "--max-steps", "2"]
    assert main([*kecae, "--num-pairs", "50"]) == 0
    return run


def test_the_shortcut_regime(phantom_run, kit):
    cfg = downstream.DownstreamConfig(
        run=str(phantom_run),
        archs=["small"],
        training_sets=["T", "T+classic", "T'"],
        check_sets=[],
        train_fractions=[1.0],
        check_fractions=[],
        steps=[3],
        site_bias=0.85,
        budget_check=False,
        **{k: v for k, v in kit.SMALL.items() if k not in ("epochs", "patience")},
    )
    sec = downstream.run_downstream(cfg)
    regime = phantom_run / "studies" / "downstream" / "site_bias_0.85"
    # the same knees as the run's data, with sites
    plain = read_ground_truth(phantom_run.parent / "data" / "ground_truth.csv")
    sites = read_ground_truth(regime / "data" / "ground_truth.csv")
    assert plain.keys() == sites.keys()
    assert all(sites[k]["grade"] == plain[k]["grade"] for k in plain)
    assert {r["site"] for r in sites.values()} == {"A", "B"}
    assert sec["regime"] == "site_bias_0.85" and sec["site_bias"] == 0.85
    assert sec["data"] == str(regime / "data")
    # its own supervisor and KECAE, trained on the sites' data, even at 1.0
    fr = sec["fractions"][0]
    assert not fr["kecae_reused"] and fr["supervisor"] == str(
        regime / "fraction_1" / "supervisor" / "best.pt"
    )
    # the site check: the detector is right on every real training image, so the marked
    # share of real KL-2 is the ground truth's
    check = fr["site_check"]
    assert check["detector_accuracy"] == 1.0
    train_kl2 = [
        r["site"] == "B" for r in sites.values() if (r["split"], r["grade"]) == ("train", "2")
    ]
    assert check["real_kl2_marked"] == pytest.approx(np.mean(train_kl2))
    assert check["x1_site_kept_n"] == check["x1_marked_n"] == fr["generated_pairs"]
    assert 0 <= check["x1_site_kept"] <= 1
    # a section of its own; the i.i.d. one is not touched
    metrics = json.loads((phantom_run / "metrics.json").read_text())
    assert metrics["downstream_shortcut"] == sec and "downstream" not in metrics
    assert sec["answer"].startswith("In the shortcut regime (site bias 0.85)")
    assert "unconfounded test set" in sec["answer"]
