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
from scipy.stats import binomtest
from sklearn.covariance import LedoitWolf
from sklearn.metrics import (
    accuracy_score,
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

from kecae.evaluation.arrays import feature_matrix, label_vector
from kecae.results import Rate

__all__ = [
    "PlausibilityRule",
    "classification_metrics",
    "failure_aware_summary",
    "fit_plausibility",
    "fraction",
    "key_transfer_ratio",
    "knn_precision",
    "mean_std",
    "rate",
    "robust_summary",
    "svm_separability",
    "transfer_with_refusals",
]


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
    x = feature_matrix(features, "features")
    y = label_vector(labels, "labels", len(x))
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
    t = label_vector(y_true, "y_true")
    p = label_vector(y_pred, "y_pred", len(t))
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
        s = label_vector(y_score, "y_score", len(t)).astype(np.float64)
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


def rate(mask: Any) -> Rate:
    """:func:`fraction` as a :class:`kecae.results.Rate`: the share of True in a boolean array
    with its Wilson 95 % interval (how metrics.json writes every rate)."""
    f = fraction(np.asarray(mask, dtype=bool))
    return Rate(f["value"], f["ci_low"], f["ci_high"], f["n"])


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
        x = feature_matrix(feats, "feats")
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
    fit, cal = (
        feature_matrix(fit_feats, "fit_feats"),
        feature_matrix(calibration_feats, "calibration_feats"),
    )
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
    real, test = feature_matrix(real_feats, "real_feats"), feature_matrix(test_feats, "test_feats")
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
