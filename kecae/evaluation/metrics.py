"""Evaluation metrics: pure functions of numpy arrays that return numbers.

Nothing here knows about models, files or torch: the evaluation pipeline computes features,
predictions and measurements, and these functions turn them into the numbers of the report.
Class-index convention: 0 <-> KL-0 (healthy), 1 <-> KL-2 (early OA, the positive class).
Images are (N, H, W) float arrays in [-1, 1], hence the default ``data_range=2.0``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
from scipy.stats import binomtest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sklearn.covariance import LedoitWolf
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

__all__ = [
    "PlausibilityRule",
    "classification_metrics",
    "cohen_kappa",
    "failure_aware_summary",
    "fit_plausibility",
    "fleiss_kappa",
    "fraction",
    "frechet_distance",
    "frechet_real_floor",
    "joint_band_mask",
    "key_transfer_ratio",
    "knn_precision",
    "masked_ssim",
    "mean_std",
    "psnr_batch",
    "robust_summary",
    "ssim_batch",
    "svm_separability",
    "transfer_with_refusals",
]


# ---------------------------------------------------------------------------------------------
# Input checks shared by the metrics
# ---------------------------------------------------------------------------------------------


def _features(x: Any, name: str) -> np.ndarray:
    """A finite (N, D) float64 feature matrix, or a ValueError that says what to pass."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (N samples, D features), got shape "
            f"{arr.shape}; flatten each sample's features into one row"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf; drop those samples before the metric")
    return arr


def _labels(y: Any, name: str, n: int | None = None) -> np.ndarray:
    """A 1-D label/prediction vector of length ``n`` (when given)."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise ValueError(
            f"{name} has {len(arr)} entries but {n} were expected: pass one entry per sample"
        )
    return arr


def _images(x: Any, name: str) -> np.ndarray:
    """A (N, H, W) float64 image batch; a single (H, W) image becomes a batch of one."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(
            f"{name} must be (N, H, W) or (H, W) grey images, got shape "
            f"{arr.shape}; squeeze the channel axis first"
        )
    return arr


def _same_images(ref: Any, test: Any) -> tuple[np.ndarray, np.ndarray]:
    r, t = _images(ref, "ref"), _images(test, "test")
    if r.shape != t.shape:
        raise ValueError(
            f"ref and test must have the same shape, got {r.shape} and {t.shape}; "
            "compare each image with its own reference"
        )
    if len(r) == 0:
        raise ValueError("ref and test are empty: pass at least one image")
    return r, t


def _summary(values: np.ndarray) -> dict[str, float]:
    """mean / sample std / median / n of a 1-D array of per-image scores."""
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        "median": float(np.median(values)),
        "n": len(values),
    }


# ---------------------------------------------------------------------------------------------
# Separability and classification
# ---------------------------------------------------------------------------------------------


def svm_separability(features: Any, labels: Any, folds: int = 5, seed: int = 0) -> dict:
    """Stratified k-fold accuracy of an RBF-kernel SVM on ``features`` (the paper's Fig. 3 metric).

    Args:
        features: (N, D) feature vectors, e.g. the key vectors hK of N images.
        labels: (N,) class labels (0 = KL-0, 1 = KL-2).
        folds: number of stratified folds (at least 2; every class needs that many samples).
        seed: shuffling seed of the folds.
    Returns:
        ``{"mean", "std", "folds": [accuracy per fold], "n"}``; ``std`` is the sample std
        over folds. Features are standardised inside each fold (no test-fold leakage).
    """
    x = _features(features, "features")
    y = _labels(labels, "labels", len(x))
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError(
            f"labels hold a single class ({classes.tolist()}): separability needs "
            "samples of both KL-0 and KL-2"
        )
    if counts.min() < folds:
        small = classes[counts.argmin()].item()
        raise ValueError(
            f"class {small!r} has {counts.min()} samples but folds={folds}: pass "
            f"more samples or use folds <= {counts.min()}"
        )
    model = make_pipeline(StandardScaler(), SVC(kernel="rbf"))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_score(model, x, y, cv=cv, scoring="accuracy")
    return {
        "mean": float(scores.mean()),
        "std": float(scores.std(ddof=1)),
        "folds": [float(s) for s in scores],
        "n": len(y),
    }


def classification_metrics(y_true: Any, y_pred: Any, y_score: Any | None = None) -> dict:
    """Binary classification metrics with KL-2 (class 1) as the positive class.

    Args:
        y_true, y_pred: (N,) labels in {0, 1}.
        y_score: optional (N,) score of class 1 (probability or logit) for the ROC AUC.
    Returns:
        ``{"accuracy", "precision", "recall", "f1", "auc", "confusion", "n"}`` with
        ``confusion = [[tn, fp], [fn, tp]]``. ``auc`` is NaN without scores or when ``y_true``
        holds one class only; precision/recall are 0 when undefined (no positive call/label).
    """
    t = _labels(y_true, "y_true")
    p = _labels(y_pred, "y_pred", len(t))
    if len(t) == 0:
        raise ValueError("y_true is empty: pass at least one prediction")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(
                f"{name} must hold class indices 0 (KL-0) or 1 (KL-2), got "
                f"{np.unique(arr).tolist()}"
            )
    auc = math.nan
    if y_score is not None:
        s = _labels(y_score, "y_score", len(t)).astype(np.float64)
        if len(np.unique(t)) == 2:
            auc = float(roc_auc_score(t, s))
    cm = confusion_matrix(t, p, labels=[0, 1])
    return {
        "accuracy": float(accuracy_score(t, p)),
        "precision": float(precision_score(t, p, zero_division=0)),
        "recall": float(recall_score(t, p, zero_division=0)),
        "f1": float(f1_score(t, p, zero_division=0)),
        "auc": auc,
        "confusion": cm.astype(int).tolist(),
        "n": len(t),
    }


def mean_std(values: Any) -> dict:
    """Mean and sample std (ddof=1; 0 for a single value) of repeated runs, e.g. seeds.

    Returns ``{"mean", "std", "n", "values"}``.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if len(v) == 0:
        raise ValueError("values is empty: pass one number per run")
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
        "n": len(v),
        "values": [float(x) for x in v],
    }


# ---------------------------------------------------------------------------------------------
# Image quality
# ---------------------------------------------------------------------------------------------


def psnr_batch(ref: Any, test: Any, data_range: float = 2.0) -> dict:
    """PSNR (dB) of each test image against its reference, summarised.

    Args:
        ref, test: (N, H, W) images in [-1, 1] (or one (H, W) image each).
        data_range: max - min of the intensity scale (2 for [-1, 1]).
    Returns:
        ``{"mean", "std", "median", "n"}``; an identical pair has PSNR = inf (skimage).
    """
    r, t = _same_images(ref, test)
    with np.errstate(divide="ignore"):  # identical images: log10(0) -> inf PSNR, by design
        scores = np.array(
            [peak_signal_noise_ratio(a, b, data_range=data_range) for a, b in zip(r, t)]
        )
    return _summary(scores)


def ssim_batch(ref: Any, test: Any, data_range: float = 2.0) -> dict:
    """Mean SSIM (skimage, 7x7 window) of each test image against its reference, summarised.

    Images must be at least 7x7. Returns ``{"mean", "std", "median", "n"}``.
    """
    r, t = _same_images(ref, test)
    if min(r.shape[1:]) < 7:
        raise ValueError(f"images of {r.shape[1:]} px are smaller than SSIM's 7x7 window")
    scores = np.array([structural_similarity(a, b, data_range=data_range) for a, b in zip(r, t)])
    return _summary(scores)


def masked_ssim(ref: Any, test: Any, mask: Any, data_range: float = 2.0) -> float:
    """Mean of the SSIM map of one image pair over a boolean mask.

    Used for "SSIM outside the joint band": the non-key anatomy must stay the recipient's.
    As in skimage's mean SSIM, the 3-pixel border where the 7x7 window does not fit is left
    out, so an all-True mask gives exactly ``structural_similarity(ref, test)``.

    Args:
        ref, test: (H, W) images.
        mask: (H, W) boolean, True where the SSIM map is averaged.
    """
    r, t = np.asarray(ref, dtype=np.float64), np.asarray(test, dtype=np.float64)
    m = np.asarray(mask)
    if r.ndim != 2 or r.shape != t.shape or m.shape != r.shape:
        raise ValueError(
            f"ref, test and mask must be (H, W) arrays of one shape, got "
            f"{r.shape}, {t.shape} and {m.shape}"
        )
    if m.dtype != bool:
        raise ValueError(f"mask must be a boolean array, got dtype {m.dtype}; use mask > 0")
    if min(r.shape) < 7:
        raise ValueError(f"images of {r.shape} px are smaller than SSIM's 7x7 window")
    _, ssim_map = structural_similarity(r, t, data_range=data_range, full=True)
    pad = 3  # (win_size - 1) // 2 for skimage's default 7x7 window
    inner = np.zeros_like(m)
    inner[pad:-pad, pad:-pad] = True
    sel = m & inner
    if not sel.any():
        raise ValueError("the mask selects no pixel inside the 3-px image border: widen it")
    return float(ssim_map[sel].mean())


def joint_band_mask(shape: tuple[int, int], joint_row: float, half_height: float) -> np.ndarray:
    """Boolean (H, W) mask of the rows OUTSIDE the horizontal band around the joint line.

    A row r is True when ``|r - joint_row| > half_height``: the band (where the joint space and
    osteophytes, the key features, live) is False, the rest of the knee is True.
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (H, W) with positive sizes, got {shape}")
    if not np.isfinite(joint_row):
        raise ValueError("joint_row is NaN/inf: the joint line was not found; skip this image")
    if half_height < 0:
        raise ValueError(f"half_height must be >= 0 px, got {half_height}")
    rows = np.abs(np.arange(shape[0], dtype=np.float64) - joint_row) > half_height  # (H,)
    return np.repeat(rows[:, None], shape[1], axis=1)  # (H, W)


def frechet_distance(feats_a: Any, feats_b: Any) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    d² = |µa − µb|² + tr(Σa + Σb − 2 (Σa Σb)^½), the FID formula applied to in-domain features.

    Args:
        feats_a: (N, D) features, N >= 2.
        feats_b: (M, D) features, M >= 2.
    """
    a, b = _features(feats_a, "feats_a"), _features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"feats_a has {a.shape[1]} features per sample and feats_b "
            f"{b.shape[1]}: extract both with the same model"
        )
    if len(a) < 2 or len(b) < 2:
        raise ValueError("each feature set needs at least 2 samples for a covariance")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():
        # A singular product (fewer samples than features) can defeat sqrtm: a tiny ridge fixes it.
        eps = 1e-6 * np.eye(len(cov_a))
        covmean = scipy.linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    if np.iscomplexobj(covmean):
        # Round-off gives tiny imaginary parts to a matrix whose true root is real.
        covmean = covmean.real
    d2 = float(
        np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean)
    )
    return max(d2, 0.0)


def frechet_real_floor(feats: Any, seed: int = 0) -> float:
    """Fréchet distance between two random halves of the real features (N, D).

    The value a perfect generator of the same size would reach: finite samples never give 0.
    """
    x = _features(feats, "feats")
    if len(x) < 4:
        raise ValueError(f"need at least 4 real samples to split into halves, got {len(x)}")
    perm = np.random.default_rng(seed).permutation(len(x))
    half = len(x) // 2
    return frechet_distance(x[perm[:half]], x[perm[half : 2 * half]])


# ---------------------------------------------------------------------------------------------
# Ground-truth fidelity (phantoms) and success rates
# ---------------------------------------------------------------------------------------------


def key_transfer_ratio(
    jsw_recipient: Any, jsw_exchanged: Any, jsw_donor: Any, min_gap: float = 0.5
) -> np.ndarray:
    """How far the exchanged image's joint-space width moved from the recipient's to the donor's.

    ratio = (jsw_recipient − jsw_exchanged) / (jsw_recipient − jsw_donor): 0 = unchanged,
    1 = exactly the donor's width, values between are partial transfer. NaN where the two
    widths differ by less than ``min_gap`` px (the ratio would divide noise by noise) or an
    input is NaN (no joint line found). Inputs broadcast; all in px.
    """
    if min_gap < 0:
        raise ValueError(f"min_gap must be >= 0 px, got {min_gap}")
    r, e, d = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (jsw_recipient, jsw_exchanged, jsw_donor))
    )
    gap = r - d
    valid = np.isfinite(r) & np.isfinite(e) & np.isfinite(d) & (np.abs(gap) >= min_gap)
    valid &= gap != 0  # min_gap = 0 must still not divide by zero
    out = np.full(r.shape, np.nan)
    out[valid] = (r[valid] - e[valid]) / gap[valid]
    return out


def robust_summary(values: Any) -> dict:
    """Median, quartiles, IQR and mean of the non-NaN values; ``n`` counts them, ``n_nan`` the rest.

    All statistics are NaN when no value is finite.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    finite = v[~np.isnan(v)]
    out = {
        "median": math.nan,
        "q25": math.nan,
        "q75": math.nan,
        "iqr": math.nan,
        "mean": math.nan,
        "n": len(finite),
        "n_nan": int(len(v) - len(finite)),
    }
    if len(finite):
        q25, med, q75 = np.percentile(finite, [25, 50, 75])
        out.update(
            median=float(med),
            q25=float(q25),
            q75=float(q75),
            iqr=float(q75 - q25),
            mean=float(finite.mean()),
        )
    return out


def fraction(mask: Any) -> dict:
    """Fraction of True entries with a Wilson 95 % confidence interval.

    Used for success rates such as "share of X'1 the judge calls KL-2".
    Returns ``{"value", "n", "ci_low", "ci_high"}``; all NaN but n for an empty mask.
    """
    m = np.asarray(mask).ravel()
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise ValueError(
                "mask must be boolean (or 0/1); got other values: compare "
                "predictions with the target label first, e.g. pred == 1"
            )
        m = m.astype(bool)
    n = len(m)
    if n == 0:
        return {"value": math.nan, "n": 0, "ci_low": math.nan, "ci_high": math.nan}
    k = int(m.sum())
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {"value": k / n, "n": n, "ci_low": float(ci.low), "ci_high": float(ci.high)}


@dataclass(frozen=True)
class PlausibilityRule:
    """ "Does this image's feature vector look like a real image's?", calibrated on held-out data.

    Built by :func:`fit_plausibility`: a Gaussian (Ledoit-Wolf shrinkage covariance) is fitted to
    the features of one set of real images, and the acceptance threshold is the ``quantile`` of
    the Mahalanobis distances of *another* set of real images of the same kind. Thresholding on
    the fitting set itself is biased: in high dimension the fitted Gaussian hugs its own samples,
    so fresh real images land farther out (with 128 judge features and ~1,400 training images,
    a threshold taken on the fitting set accepted only ~57 % of real held-out images). Calibrated
    on held-out images, real images of a third set pass at about ``quantile``.
    """

    mean: np.ndarray  # (D,) feature mean of the fitting set
    precision: np.ndarray  # (D, D) inverse of the shrunk covariance
    threshold: float  # squared Mahalanobis distance accepted
    quantile: float  # nominal pass rate of real held-out images
    n_fit: int
    n_calibration: int

    def distances(self, feats: Any) -> np.ndarray:
        """Squared Mahalanobis distances (N,) of features (N, D)."""
        x = _features(feats, "feats")
        if x.shape[1] != len(self.mean):
            raise ValueError(
                f"feats has {x.shape[1]} features but the rule was fitted on "
                f"{len(self.mean)}: extract both with the same model"
            )
        d = x - self.mean
        return np.einsum("nd,de,ne->n", d, self.precision, d)

    def accept(self, feats: Any) -> np.ndarray:
        """(N,) boolean: within the threshold."""
        return self.distances(feats) <= self.threshold


def fit_plausibility(
    fit_feats: Any, calibration_feats: Any, quantile: float = 0.99
) -> PlausibilityRule:
    """A :class:`PlausibilityRule` fitted on ``fit_feats`` (N, D) and thresholded at the
    ``quantile`` of the held-out ``calibration_feats`` (M, D) (e.g. train and validation images)."""
    fit, cal = _features(fit_feats, "fit_feats"), _features(calibration_feats, "calibration_feats")
    if fit.shape[1] != cal.shape[1]:
        raise ValueError(
            f"fit_feats has {fit.shape[1]} features and calibration_feats "
            f"{cal.shape[1]}: extract both with the same model"
        )
    if len(fit) < 2 or len(cal) < 1:
        raise ValueError("need at least 2 fitting and 1 calibration sample")
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    lw = LedoitWolf().fit(fit)
    rule = PlausibilityRule(
        mean=lw.location_,
        precision=lw.get_precision(),
        threshold=0.0,
        quantile=quantile,
        n_fit=len(fit),
        n_calibration=len(cal),
    )
    threshold = float(np.quantile(rule.distances(cal), quantile))
    return dataclasses.replace(rule, threshold=threshold)


def knn_precision(real_feats: Any, test_feats: Any, k: int = 3) -> np.ndarray:
    """Which test samples fall inside the real samples' k-NN manifold (Kynkäänniemi et al. 2019).

    Each real sample carries a ball reaching its ``k``-th nearest real neighbour; a test sample is
    inside when some ball contains it. The mean of the result is the "precision" of a generator.
    Features are standardised with the real set's mean and sd first. Returns (M,) boolean.
    """
    real, test = _features(real_feats, "real_feats"), _features(test_feats, "test_feats")
    if real.shape[1] != test.shape[1]:
        raise ValueError(
            f"real_feats has {real.shape[1]} features and test_feats "
            f"{test.shape[1]}: extract both with the same model"
        )
    if not 1 <= k < len(real):
        raise ValueError(f"k must be in [1, {len(real) - 1}] for {len(real)} real samples, got {k}")
    from sklearn.neighbors import NearestNeighbors

    mu, sd = real.mean(0), real.std(0) + 1e-12
    real, test = (real - mu) / sd, (test - mu) / sd
    nn = NearestNeighbors(n_neighbors=k + 1).fit(real)
    radius = nn.kneighbors(real)[0][:, k]  # (N,): column 0 is the sample itself
    dist, idx = nn.kneighbors(test, n_neighbors=min(len(real), 50))
    return (dist <= radius[idx]).any(axis=1)


def transfer_with_refusals(
    jsw_recipient: Any, jsw_exchanged: Any, jsw_donor: Any, refused: Any, min_gap: float = 0.5
) -> np.ndarray:
    """Key-transfer ratios (:func:`key_transfer_ratio`) in which a refused measurement of the
    exchanged image is a failure (−inf), not a missing value: an image whose joint cannot be found
    did not receive the donor's joint. NaN remains only where the pair itself is uninformative
    (recipient or donor unmeasured, or their widths closer than ``min_gap`` px)."""
    r = np.asarray(jsw_recipient, dtype=np.float64)
    d = np.asarray(jsw_donor, dtype=np.float64)
    ratio = key_transfer_ratio(r, jsw_exchanged, d, min_gap=min_gap)
    informative = np.isfinite(r) & np.isfinite(d) & (np.abs(r - d) >= max(min_gap, 1e-12))
    ratio[informative & np.asarray(refused, dtype=bool)] = -np.inf
    return ratio


def failure_aware_summary(values: Any, success_at: float = 0.7) -> dict:
    """Median, quartiles and success share of ratios where −inf marks a failure (it sorts below
    every number, so failures pull the median down) and NaN an excluded, uninformative case.

    Returns ``{"median", "q25", "q75", "iqr", "success_rate", "n", "n_failed", "n_excluded"}``;
    a median that falls on a failure is −inf (null in JSON); ``success_rate`` is the share of the
    ``n`` informative values >= ``success_at``.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    kept = v[~np.isnan(v)]
    out = {
        "median": math.nan,
        "q25": math.nan,
        "q75": math.nan,
        "iqr": math.nan,
        "success_rate": math.nan,
        "n": len(kept),
        "n_failed": int(np.isneginf(kept).sum()),
        "n_excluded": int(np.isnan(v).sum()),
    }
    if len(kept):
        q25, med, q75 = np.quantile(kept, [0.25, 0.5, 0.75], method="inverted_cdf")
        out.update(
            median=float(med),
            q25=float(q25),
            q75=float(q75),
            iqr=float(q75 - q25) if np.isfinite(q25) else math.inf,
            success_rate=float((kept >= success_at).mean()),
        )
    return out


# ---------------------------------------------------------------------------------------------
# Reader-study agreement
# ---------------------------------------------------------------------------------------------


def cohen_kappa(a: Any, b: Any) -> float:
    """Cohen's kappa between two readers' calls on the same items (scikit-learn).

    κ = (po − pe) / (1 − pe); NaN, as in :func:`fleiss_kappa`, when both readers put every item
    in one and the same category (pe = 1: agreement beyond chance is undefined).
    """
    x = _labels(a, "a")
    y = _labels(b, "b", len(x))
    if len(x) == 0:
        raise ValueError("no ratings: pass one call per item for each reader")
    if len(np.union1d(x, y)) == 1:
        return math.nan
    return float(cohen_kappa_score(x, y))


def fleiss_kappa(ratings: Any) -> float:
    """Fleiss' kappa of several readers' categorical calls.

    Args:
        ratings: (n_items, n_raters) category labels (any hashable values, e.g. KL grades);
            every rater rates every item.
    Returns:
        κ = (P̄ − P̄e) / (1 − P̄e); NaN when every call falls in one category (P̄e = 1).
    """
    r = np.asarray(ratings)
    if r.ndim != 2 or r.shape[0] < 1 or r.shape[1] < 2:
        raise ValueError(
            f"ratings must be (n_items, n_raters) with >= 2 raters, got shape {r.shape}"
        )
    _, codes = np.unique(r, return_inverse=True)
    codes = codes.reshape(r.shape)
    n_items, n_raters = r.shape
    # counts[i, j] = how many raters put item i in category j
    counts = np.stack([(codes == j).sum(1) for j in range(codes.max() + 1)], axis=1)
    p_j = counts.sum(0) / (n_items * n_raters)  # share of all calls per category
    p_i = ((counts**2).sum(1) - n_raters) / (n_raters * (n_raters - 1))  # per-item agreement
    p_bar, p_e = p_i.mean(), float((p_j**2).sum())
    if math.isclose(p_e, 1.0):
        return math.nan
    return float((p_bar - p_e) / (1.0 - p_e))
