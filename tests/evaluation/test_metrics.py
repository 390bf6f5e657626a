"""Evaluation metrics (kecae.evaluation.metrics): pure functions of arrays, against values
computed by hand or by scikit-learn, scikit-image and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
from skimage.metrics import structural_similarity

from kecae.evaluation import agreement as A
from kecae.evaluation import image_quality as Q
from kecae.evaluation import metrics as M


def test_svm_separability_separable_and_random():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    x_sep = rng.normal(size=(60, 4)) + 6.0 * y[:, None]  # clusters 12 std apart
    out = M.svm_separability(x_sep, y, folds=5, seed=0)
    assert out["mean"] == 1.0 and out["std"] == 0.0
    assert len(out["folds"]) == 5 and out["n"] == 60

    x_noise = rng.normal(size=(60, 4))  # features carry no label information
    noise = M.svm_separability(x_noise, y, folds=5, seed=0)
    assert 0.2 <= noise["mean"] <= 0.8
    assert noise["std"] == pytest.approx(np.std(noise["folds"], ddof=1))
    assert noise["mean"] == pytest.approx(np.mean(noise["folds"]))


def test_svm_separability_scales_features():
    # A StandardScaler in the pipeline makes the SVM blind to a feature's unit.
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 20)
    x = rng.normal(size=(40, 3)) + 1.5 * y[:, None]
    a = M.svm_separability(x, y, folds=4)
    b = M.svm_separability(x * np.array([1e-4, 1e3, 1.0]), y, folds=4)
    assert a["folds"] == pytest.approx(b["folds"])


@pytest.mark.parametrize(
    "x, y, folds, match",
    [
        (np.zeros((10, 2)), np.array([0] * 7 + [1] * 3), 5, "class 1 has 3 samples"),
        (np.zeros((10, 2)), np.zeros(10, int), 2, "single class"),
        (np.zeros((10, 2)), np.array([0, 1] * 5), 1, "folds must be >= 2"),
        (np.zeros(10), np.array([0, 1] * 5), 2, "2-D"),
        (np.zeros((10, 2)), np.array([0, 1] * 4), 2, "10 were expected"),
        (np.full((10, 2), np.nan), np.array([0, 1] * 5), 2, "NaN"),
    ],
)
def test_svm_separability_refuses(x, y, folds, match):
    with pytest.raises(ValueError, match=match):
        M.svm_separability(x, y, folds=folds)


def test_classification_metrics_by_hand():
    y_true = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    y_pred = [0, 0, 0, 1, 1, 1, 1, 1, 0, 0]  # tn 3, fp 1, fn 2, tp 4
    y_score = [0.1, 0.2, 0.3, 0.8, 0.9, 0.7, 0.6, 0.55, 0.4, 0.35]
    out = M.classification_metrics(y_true, y_pred, y_score)
    assert out["confusion"] == [[3, 1], [2, 4]]
    assert out["accuracy"] == pytest.approx(7 / 10)
    assert out["precision"] == pytest.approx(4 / 5)
    assert out["recall"] == pytest.approx(4 / 6)
    assert out["f1"] == pytest.approx(2 * 0.8 * (4 / 6) / (0.8 + 4 / 6))
    # AUC by hand: of the 4 x 6 (negative, positive) score pairs, those ranked correctly.
    neg, pos = y_score[:4], y_score[4:]
    wins = sum(p > n for p in pos for n in neg)
    assert out["auc"] == pytest.approx(wins / 24)
    assert out["n"] == 10


def test_classification_metrics_edge_cases():
    out = M.classification_metrics([0, 0], [0, 0], [0.1, 0.2])
    assert math.isnan(out["auc"]) and out["precision"] == 0.0 and out["accuracy"] == 1.0
    assert math.isnan(M.classification_metrics([0, 1], [0, 1])["auc"])
    with pytest.raises(ValueError, match="class indices"):
        M.classification_metrics([0, 2], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        M.classification_metrics([], [])


def test_mean_std():
    out = M.mean_std([0.80, 0.84, 0.82])
    assert out["mean"] == pytest.approx(0.82)
    assert out["std"] == pytest.approx(0.02)  # sqrt(((-.02)^2 + .02^2 + 0) / 2)
    assert out["n"] == 3 and out["values"] == pytest.approx([0.80, 0.84, 0.82])
    assert M.mean_std([0.5])["std"] == 0.0
    with pytest.raises(ValueError, match="empty"):
        M.mean_std([])


def test_psnr_batch_by_hand():
    ref = np.zeros((3, 8, 8))
    test = ref.copy()
    test[0] += 0.2  # MSE 0.04 -> 10 log10(4 / 0.04) = 20 dB
    test[1] += 0.02  # MSE 4e-4 -> 40 dB
    test[2, :4] += 0.2  # MSE 0.02 -> 10 log10(200) dB
    out = Q.psnr_batch(ref, test)
    expected = [20.0, 40.0, 10 * math.log10(200)]
    assert out["mean"] == pytest.approx(np.mean(expected))
    assert out["median"] == pytest.approx(10 * math.log10(200))
    assert out["std"] == pytest.approx(np.std(expected, ddof=1))
    assert out["n"] == 3
    assert Q.psnr_batch(ref[0], ref[0])["mean"] == math.inf  # identical single image
    with pytest.raises(ValueError, match="same shape"):
        Q.psnr_batch(ref, test[:2])


def test_ssim_batch_matches_skimage():
    rng = np.random.default_rng(0)
    ref = rng.uniform(-1, 1, size=(2, 16, 16))
    test = np.clip(ref + rng.normal(0, 0.1, size=ref.shape), -1, 1)
    out = Q.ssim_batch(ref, test)
    each = [structural_similarity(a, b, data_range=2.0) for a, b in zip(ref, test)]
    assert out["mean"] == pytest.approx(np.mean(each))
    assert Q.ssim_batch(ref, ref)["mean"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="7x7"):
        Q.ssim_batch(np.zeros((1, 5, 5)), np.zeros((1, 5, 5)))
    with pytest.raises(ValueError, match="grey images"):
        Q.ssim_batch(np.zeros((1, 1, 8, 8)), np.zeros((1, 1, 8, 8)))


def test_joint_band_mask_by_hand():
    mask = Q.joint_band_mask((8, 3), joint_row=3.0, half_height=1)
    # rows 2, 3, 4 are within 1 px of row 3 -> False; the rest True
    assert mask.shape == (8, 3) and mask.dtype == bool
    assert mask[:, 0].tolist() == [True, True, False, False, False, True, True, True]
    assert (mask == mask[:, :1]).all()
    with pytest.raises(ValueError, match="joint line was not found"):
        Q.joint_band_mask((8, 3), math.nan, 1)
    with pytest.raises(ValueError, match="half_height"):
        Q.joint_band_mask((8, 3), 3, -1)


def test_masked_ssim():
    rng = np.random.default_rng(0)
    ref = rng.uniform(-1, 1, size=(32, 32))
    test = ref.copy()
    test[12:20] = rng.uniform(-1, 1, size=(8, 32))  # damage only a band of rows
    full = np.ones_like(ref, dtype=bool)
    # An all-True mask is skimage's mean SSIM (same 3-px border crop).
    assert Q.masked_ssim(ref, test, full) == pytest.approx(
        structural_similarity(ref, test, data_range=2.0)
    )
    # Outside the damaged band (and the 7x7 window's reach) the images are identical.
    outside = Q.joint_band_mask(ref.shape, joint_row=15.5, half_height=7)
    assert Q.masked_ssim(ref, test, outside) == pytest.approx(1.0)
    assert Q.masked_ssim(ref, test, ~outside) < 0.5
    with pytest.raises(ValueError, match="boolean"):
        Q.masked_ssim(ref, test, full.astype(int))
    with pytest.raises(ValueError, match="no pixel"):
        Q.masked_ssim(ref, test, np.pad(np.ones((3, 32), bool), ((0, 29), (0, 0))))


def _diagonal_sample(mu: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """8 points whose sample mean is ``mu`` and sample covariance exactly diag(8/7 * scale²).

    The columns of a Hadamard matrix without its all-ones column are zero-mean and orthogonal.
    """
    h = scipy.linalg.hadamard(8)[:, 1 : 1 + len(mu)].astype(float)  # (8, D)
    return mu + h * scale


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 0.0])
    s_a, s_b = np.array([1.0, 2.0, 0.5]), np.array([3.0, 1.0, 0.5])
    a, b = _diagonal_sample(mu_a, s_a), _diagonal_sample(mu_b, s_b)
    # For diagonal covariances: |µa−µb|² + Σ (σa − σb)², with σ² = 8/7 s².
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((8 / 7) * (s_a - s_b) ** 2)
    assert Q.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert Q.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_rotation_invariant_and_errors():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 3)), rng.normal(1.0, 2.0, size=(50, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # a random rotation keeps the distance
    assert Q.frechet_distance(a @ q, b @ q) == pytest.approx(Q.frechet_distance(a, b), rel=1e-6)
    with pytest.raises(ValueError, match="same model"):
        Q.frechet_distance(a, b[:, :2])
    with pytest.raises(ValueError, match="at least 2"):
        Q.frechet_distance(a[:1], b)


def test_frechet_real_floor():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    perm = np.random.default_rng(3).permutation(200)
    assert Q.frechet_real_floor(x, seed=3) == pytest.approx(
        Q.frechet_distance(x[perm[:100]], x[perm[100:]])
    )
    assert Q.frechet_real_floor(x) < Q.frechet_distance(x, x + 1.0)  # shift by 1 -> d² = 2
    with pytest.raises(ValueError, match="at least 4"):
        Q.frechet_real_floor(x[:3])


def test_key_transfer_ratio_by_hand():
    recipient = np.array([10.0, 10.0, 10.0, 10.0, 10.0, np.nan])
    exchanged = np.array([6.0, 10.0, 8.0, 4.0, 9.0, 6.0])
    donor = np.array([6.0, 6.0, 6.0, 6.0, 9.8, 6.0])
    out = M.key_transfer_ratio(recipient, exchanged, donor, min_gap=0.5)
    # full transfer, none, half, overshoot (1.5), gap 0.2 px < 0.5 -> NaN, NaN input -> NaN
    np.testing.assert_allclose(out, [1.0, 0.0, 0.5, 1.5, np.nan, np.nan])
    # the reverse direction (KL-2 recipient widened towards a KL-0 donor) is also positive
    assert M.key_transfer_ratio(5.0, 7.0, 9.0).item() == pytest.approx(0.5)
    assert np.isnan(M.key_transfer_ratio(5.0, 5.0, 5.0, min_gap=0.0))
    with pytest.raises(ValueError, match="min_gap"):
        M.key_transfer_ratio(1, 1, 1, min_gap=-1)


def test_fraction_wilson_by_hand():
    out = M.fraction([True] * 7 + [False] * 3)
    # Wilson: (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), z = 1.959964
    z, n, p = 1.959963984540054, 10, 0.7
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert out["value"] == 0.7 and out["n"] == 10
    assert out["ci_low"] == pytest.approx((centre - half) / (1 + z * z / n))
    assert out["ci_high"] == pytest.approx((centre + half) / (1 + z * z / n))
    assert M.fraction(np.array([1, 1, 0, 0]))["value"] == 0.5
    all_true = M.fraction([True] * 5)
    assert all_true["ci_high"] == pytest.approx(1.0) and all_true["ci_low"] < 1.0
    assert math.isnan(M.fraction([])["value"])
    with pytest.raises(ValueError, match="boolean"):
        M.fraction([0, 2, 1])


def test_plausibility_calibrated_on_held_out_data_passes_real_data_at_the_nominal_level():
    rng = np.random.default_rng(0)
    d = 64  # many features and few samples: the regime where self-calibration is biased
    cov = np.diag(np.linspace(0.5, 2.0, d))
    fit, cal, test = (rng.multivariate_normal(np.zeros(d), cov, size=n) for n in (400, 3000, 3000))
    rule = M.fit_plausibility(fit, cal, quantile=0.9)
    share = rule.accept(test).mean()
    assert share == pytest.approx(0.9, abs=0.02)  # a third sample of the same kind: nominal
    # the old mistake, thresholding on the fitting set, rejects far more fresh real samples
    self_rule = M.fit_plausibility(fit, fit, quantile=0.9)
    assert self_rule.accept(test).mean() < share - 0.1
    assert rule.n_fit == 400 and rule.n_calibration == 3000
    assert not rule.accept(np.full((5, d), 20.0)).any()


def test_plausibility_rule_uses_the_covariance_and_refuses_bad_input():
    rng = np.random.default_rng(1)
    cov = np.array([[2.0, 0.8, 0.0], [0.8, 1.0, 0.3], [0.0, 0.3, 0.5]])
    fit, cal = (rng.multivariate_normal(np.zeros(3), cov, size=2000) for _ in range(2))
    rule = M.fit_plausibility(fit, cal, quantile=0.99)
    along, across = np.array([[2.0, 1.0, 0.3]]), np.array([[2.0, -1.9, 0.0]])
    assert rule.accept(along)[0] and not rule.accept(across)[0]
    with pytest.raises(ValueError, match="quantile"):
        M.fit_plausibility(fit, cal, quantile=0.0)
    with pytest.raises(ValueError, match="same model"):
        rule.accept(fit[:, :2])
    with pytest.raises(ValueError, match="same model"):
        M.fit_plausibility(fit, cal[:, :2])


def test_knn_precision():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(500, 4))
    same = rng.normal(size=(500, 4))
    assert M.knn_precision(real, same, k=3).mean() > 0.8
    assert not M.knn_precision(real, rng.normal(size=(20, 4)) + 8.0, k=3).any()
    # by hand on a line: radii to the 1st neighbour are 1, 1, 2; 2.5 is inside the ball of 4
    line = np.array([[0.0], [1.0], [3.0]])
    sd = line.std()
    inside = M.knn_precision(
        line, np.array([[(2.5 - line.mean()) * 1 + line.mean()], [line.mean() + 10 * sd]]), k=1
    )
    assert inside.tolist() == [True, False]
    with pytest.raises(ValueError, match="k must be"):
        M.knn_precision(real[:3], same, k=3)


def test_transfer_with_refusals_counts_a_refused_image_as_a_failure():
    recipient = np.array([5.0, 5.0, 5.0, 5.0, np.nan, 5.0])
    donor = np.array([3.0, 3.0, 3.0, 3.0, 3.0, 4.8])
    exchanged = np.array([3.0, 4.0, np.nan, 5.0, 3.0, 4.8])
    refused = np.array([False, False, True, False, False, False])
    r = M.transfer_with_refusals(recipient, exchanged, donor, refused, min_gap=0.5)
    assert r[0] == pytest.approx(1.0) and r[1] == pytest.approx(0.5) and r[3] == 0.0
    assert np.isneginf(r[2])  # refused X': a failure
    assert np.isnan(r[4]) and np.isnan(r[5])  # recipient unmeasured; widths too close
    s = M.failure_aware_summary(r, success_at=0.7)
    assert s["n"] == 4 and s["n_failed"] == 1 and s["n_excluded"] == 2
    # sorted: -inf, 0, 0.5, 1 -> the lower median 0
    assert s["median"] == 0.0 and s["success_rate"] == pytest.approx(0.25)
    assert math.isinf(s["iqr"])
    many_failed = M.failure_aware_summary([-np.inf, -np.inf, 1.0])
    assert np.isneginf(many_failed["median"])
    empty = M.failure_aware_summary([np.nan])
    assert empty["n"] == 0 and math.isnan(empty["median"])


def test_cohen_kappa_by_hand():
    a = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    b = [0, 0, 0, 1, 1, 1, 1, 1, 0, 0]
    # po = 0.7; a calls 0 on 40 %, b on 50 %: pe = 0.4*0.5 + 0.6*0.5 = 0.5 -> kappa = 0.2 / 0.5
    assert A.cohen_kappa(a, b) == pytest.approx(0.4)
    assert A.cohen_kappa(a, a) == 1.0
    with pytest.raises(ValueError, match="10 were expected"):
        A.cohen_kappa(a, b[:5])


# Fleiss (1971) worked example as tabulated on Wikipedia: 10 items, 14 raters, 5 categories.
FLEISS_TABLE = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)


def test_fleiss_kappa_worked_example():
    ratings = np.array([np.repeat(np.arange(1, 6), row) for row in FLEISS_TABLE])  # (10, 14)
    assert ratings.shape == (10, 14)
    assert A.fleiss_kappa(ratings) == pytest.approx(0.210, abs=5e-4)
    # Raters' order within an item does not matter.
    shuffled = np.random.default_rng(0).permuted(ratings, axis=1)
    assert A.fleiss_kappa(shuffled) == pytest.approx(A.fleiss_kappa(ratings))


def test_fleiss_kappa_edges():
    assert A.fleiss_kappa([[0, 0, 0], [2, 2, 2], [0, 0, 0]]) == pytest.approx(1.0)
    assert math.isnan(A.fleiss_kappa([[1, 1], [1, 1]]))
    # Two raters: Fleiss' kappa equals Scott's pi, (po - pe) / (1 - pe) with pooled marginals.
    a, b = np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0])
    pooled = np.concatenate([a, b]).mean()
    pe = pooled**2 + (1 - pooled) ** 2
    assert A.fleiss_kappa(np.stack([a, b], 1)) == pytest.approx((0.6 - pe) / (1 - pe))
    with pytest.raises(ValueError, match=">= 2 raters"):
        A.fleiss_kappa([[1], [0]])
