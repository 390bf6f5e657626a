"""Image-quality metrics, pure functions of image stacks ((N, H, W) in [-1, 1]) and feature
matrices: PSNR, SSIM (whole image and inside a mask), the joint band, the Fréchet distance and
its floor between two halves of the real images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from kecae.evaluation.arrays import feature_matrix, same_image_stacks, summary_of


def psnr_batch(ref: Any, test: Any, data_range: float = 2.0) -> dict:
    """PSNR (dB) of each test image against its reference, summarised.

    Args:
        ref, test: (N, H, W) images in [-1, 1] (or one (H, W) image each).
        data_range: max - min of the intensity scale (2 for [-1, 1]).
    Returns:
        ``{"mean", "std", "median", "n"}``; an identical pair has PSNR = inf (skimage).
    """
    r, t = same_image_stacks(ref, test)
    with np.errstate(divide="ignore"):  # identical images: log10(0) -> inf PSNR, by design
        scores = np.array(
            [peak_signal_noise_ratio(a, b, data_range=data_range) for a, b in zip(r, t)]
        )
    return summary_of(scores)


def ssim_batch(ref: Any, test: Any, data_range: float = 2.0) -> dict:
    """Mean SSIM (skimage, 7x7 window) of each test image against its reference, summarised.

    Images must be at least 7x7. Returns ``{"mean", "std", "median", "n"}``.
    """
    r, t = same_image_stacks(ref, test)
    if min(r.shape[1:]) < 7:
        raise ValueError(f"images of {r.shape[1:]} px are smaller than SSIM's 7x7 window")
    scores = np.array([structural_similarity(a, b, data_range=data_range) for a, b in zip(r, t)])
    return summary_of(scores)


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
    a, b = feature_matrix(feats_a, "feats_a"), feature_matrix(feats_b, "feats_b")
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
    x = feature_matrix(feats, "feats")
    if len(x) < 4:
        raise ValueError(f"need at least 4 real samples to split into halves, got {len(x)}")
    perm = np.random.default_rng(seed).permutation(len(x))
    half = len(x) // 2
    return frechet_distance(x[perm[:half]], x[perm[half : 2 * half]])
