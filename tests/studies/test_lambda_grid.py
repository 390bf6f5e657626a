"""`kecae study lambda-grid` (kecae.studies.lambda_grid): shapes, one cell recomputed by
hand, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kecae.errors import KecaeError
from kecae.studies import lambda_grid


def test_lambda_grid_shapes_values_and_resume(run_dir, monkeypatch, kit):
    cfg = kit.lambda_cfg(run_dir)
    sec = lambda_grid.run_lambda_grid(cfg)
    assert sec["lambda1"] == [1e-2, 1.0] and sec["lambda2"] == [1e-3, 0.5]
    for key in ("svm_hk_accuracy", "svm_hn_accuracy", "final_mse"):
        assert np.shape(sec[key]) == (2, 2)
    assert all(0 <= a <= 1 for row in sec["svm_hk_accuracy"] for a in row)
    assert sec["steps"] == 2 and sec["n_images"] == 12
    # one cell recomputed by hand from its checkpoint: same trainer settings, same SVM number
    from kecae.checkpoint import load_checkpoint
    from kecae.evaluation.metrics import svm_separability
    from kecae.inference import encode, load_kecae

    cell = run_dir / "studies" / "lambda_grid" / "l1_1_l2_0.001"
    ckpt = load_checkpoint(cell / "checkpoints" / "last.pt", kind="kecae")
    tc = ckpt["train_config"]
    assert ckpt["step"] == 2 and tc["preset"] == "tiny"
    assert (tc["lambda_sup"], tc["lambda_lda"]) == (1.0, 1e-3)
    assert tc["supervisor"] == str((run_dir / "supervisor" / "best.pt").resolve())
    images, labels = lambda_grid.latent_sample(tc["data"], 32, 12, tc["seed"], None)
    hk, _ = encode(load_kecae(str(cell / "checkpoints" / "last.pt"))[0], images)
    expected = svm_separability(hk, labels, seed=tc["seed"])["mean"]
    assert sec["svm_hk_accuracy"][1][0] == pytest.approx(expected)
    assert "separability" in json.loads((run_dir / "metrics.json").read_text())

    kit.forbid(monkeypatch, "train_kecae", "encode")
    assert lambda_grid.run_lambda_grid(cfg) == sec
    with pytest.raises(KecaeError, match="kecae-steps 2"):  # fewer steps than a cell holds
        lambda_grid.run_lambda_grid(kit.lambda_cfg(run_dir, kecae_steps=1))
