"""Joint-space width and marginal osteophytes measured from an AP knee image alone.

This is what kecae uses to check whether a generated image carries a donor's key features, so it
works on any size, on uint8 or float images, and on slightly blurry model outputs; and it refuses
(``ok=False`` with a reason, NaN values) instead of guessing when it cannot find a knee joint.

Method, in image terms (y down):
1. Vertical intensity derivative at a scale proportional to the image size. In every column the
   joint space is a bright-to-dark edge (femoral surface) followed closely by a dark-to-bright edge
   (tibial surface); the strongest such pair per column is kept.
2. A robust straight-line fit of the pair midpoints across columns gives the joint line; columns off
   the line (intercondylar notch and tibial spines, fibula, soft tissue) are dropped. Too few
   columns on one line means no joint: refuse.
3. The notch splits the columns into the image-left and image-right compartments. In the central
   part of each, the narrowest vertical gap between the two edges (edges located to a fraction of a
   pixel) is the compartment's joint-space width, i.e. the minimum JSW.
4. At each compartment's outer margin the bone outline is traced row by row; an osteophyte is bone
   sticking out beyond the outline that the rows farther from the joint predict.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from kecae.phantoms.params import medial_on_image_left

_NAN = float("nan")


@dataclass
class JointMeasurement:
    """Result of :func:`measure_joint`; lengths in pixels of the measured image, NaN if unknown."""

    ok: bool  # a joint was found and measured
    reason: str = ""  # why not, when ok is False
    jsw_left_px: float = _NAN  # minimum joint-space width, image-left compartment
    jsw_right_px: float = _NAN  # minimum joint-space width, image-right compartment
    jsw_medial_px: float = _NAN  # the same per anatomical compartment (needs ``side``)
    jsw_lateral_px: float = _NAN
    osteophyte_score: float = _NAN  # estimated length (px) of the largest marginal osteophyte
    osteophytes: bool = False  # some margin has a definite osteophyte (>= OSTEOPHYTE_CALL_MM)
    osteophyte_medial_px: float = _NAN  # largest estimated spur, medial margins (needs ``side``)
    osteophyte_lateral_px: float = _NAN  # largest estimated spur, lateral margins
    joint_row: float = _NAN  # joint line row at the image centre column
    joint_slope: float = _NAN  # joint line rows per column (tilt)
    left_col: float = _NAN  # column where the image-left JSW was measured
    right_col: float = _NAN  # column where the image-right JSW was measured
    left_edges: tuple[float, float] = (_NAN, _NAN)  # (femoral, tibial) edge rows at left_col
    right_edges: tuple[float, float] = (_NAN, _NAN)  # (femoral, tibial) edge rows at right_col
    #: estimated spur length (px) per margin: femoral_left, femoral_right, tibial_left, tibial_right
    osteophyte_px: tuple[float, float, float, float] = (_NAN, _NAN, _NAN, _NAN)
    edge_blur_px: float = _NAN  # blur (Gaussian sd) of the joint-space edges, estimated
    side: str | None = None  # knee side the anatomical fields refer to
    columns: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)  # inlier columns

    def as_dict(self) -> dict:
        """Plain dict (without the inlier column array), e.g. for a CSV row."""
        d = asdict(self)
        d.pop("columns")
        return d


# --------------------------------------------------------------------------- helpers
def to_unit_float(image: np.ndarray) -> np.ndarray:
    """Grey image -> float32 in [0, 1], shape (H, W).

    uint8 and uint16 are scaled by their range; float images are taken as [0, 1] unless they hold
    values below 0, in which case they are taken as [-1, 1] (model outputs).
    """
    a = np.asarray(image)
    if a.ndim == 3 and 1 in (a.shape[0], a.shape[-1]):
        a = a.reshape(a.shape[1:] if a.shape[0] == 1 else a.shape[:-1])
    if a.ndim != 2:
        raise ValueError(
            f"measure_joint expects a grey image of shape (H, W), got shape "
            f"{a.shape}; "
            "convert colour images to grey first"
        )
    if a.dtype == np.uint8:
        return a.astype(np.float32) * np.float32(1 / 255)
    if a.dtype == np.uint16:
        return a.astype(np.float32) * np.float32(1 / 65535)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        raise ValueError(
            f"image dtype {a.dtype} is not a grey level type; pass uint8, uint16 or float"
        )
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError("image contains NaN or infinite values")
    if a.min() < -1e-3:
        a = (a + 1.0) * 0.5
    return np.clip(a, 0.0, 1.0)


def _subpixel_peak(profile: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Parabolic refinement of peak positions ``i`` (int array) of ``profile`` along axis 0."""
    n = profile.shape[0]
    i = np.clip(i, 1, n - 2)
    cols = np.arange(profile.shape[1])
    y0, y1, y2 = profile[i - 1, cols], profile[i, cols], profile[i + 1, cols]
    den = y0 - 2 * y1 + y2
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(den < 0, 0.5 * (y0 - y2) / den, 0.0)
    return i + np.clip(off, -0.5, 0.5)


def _outline(img: np.ndarray, level: float, rows: np.ndarray, start: int, step: int) -> np.ndarray:
    """Sub-pixel distance (px) from column ``start`` to the bone outline, per row, walking ``step``.

    Bone is ``img > level``; the outline is where the intensity crosses ``level`` after the last
    bone pixel of the run that starts at ``start``. NaN where ``start`` itself is not bone.
    """
    line = img[rows, start::step] if step > 0 else img[rows, start::-1]
    bone = line > level
    n = line.shape[1]
    k = np.argmin(bone, axis=1)  # first non-bone pixel
    k[bone.all(axis=1)] = n - 1
    r = np.arange(len(rows))
    v0, v1 = line[r, np.maximum(k - 1, 0)], line[r, k]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.clip((v0 - level) / (v0 - v1), 0.0, 1.0)
    dist = np.maximum(k - 1, 0) + np.where(np.isfinite(frac), frac, 0.0)
    return np.where(bone[:, 0], dist, np.nan)


#: px per mm assumed by the osteophyte step: the phantoms' field of view (~92 mm across), which
#: is also about the field of view of the public 224 px knee crops.
_FOV_MM = 92.0
#: Linear maps from outline features (mm) to spur length (mm), fitted on phantoms of all sizes
#: against their ground truth; a margin is called osteophytic when its estimate reaches
#: OSTEOPHYTE_CALL_MM (the threshold with the best detection accuracy at 64-224 px).
_TIBIAL_FIT = (0.25, 0.7)  # length = (protrusion + 0.25) / 0.7
_FEMORAL_FIT = (3.5, 0.95)  # length = (outline difference + 3.5) / 0.95
OSTEOPHYTE_CALL_MM = 1.8
#: Joint edges blurred more than this (Gaussian sd, mm at the nominal field of view, and never
#: less than 1.6 px) are refused: beyond it the measured width drifts by more than ~1 px.
_MAX_BLUR_MM = 1.6


def _margin_osteophytes(
    img: np.ndarray, col: float, outward: int, a_row: float, b_row: float, s: int
) -> tuple[float, float]:
    """Estimated (femoral, tibial) spur lengths in px at one compartment's outer margin.

    Bone is whatever is brighter than halfway between this compartment's joint-gap level and its
    bone level. Tibia: how far the outline just below the plateau sticks out beyond the (vertical)
    plateau rim 3.5-6.5 mm lower. Femur: how far the condyle outline within 3 mm of the joint
    reaches compared with the outline 5-9 mm higher; a healthy condyle curves inward toward the
    joint, a spur points outward and down.
    """
    H = img.shape[0]
    mm = s / _FOV_MM
    c = int(round(col))
    cs = slice(max(0, c - 2), c + 3)
    gap_level = float(np.median(img[int(round(0.5 * (a_row + b_row))), cs]))
    fem_level = float(np.median(img[max(0, int(round(a_row - 1.5 * mm))), cs]))
    tib_level = float(np.median(img[min(H - 1, int(round(b_row + 1.5 * mm))), cs]))
    level = gap_level + 0.5 * (min(fem_level, tib_level) - gap_level)

    def outline(lo_mm: float, hi_mm: float, ref_row: float) -> np.ndarray:
        rows = np.arange(
            max(0, int(round(ref_row + lo_mm * mm))), min(H, int(round(ref_row + hi_mm * mm)) + 1)
        )
        return _outline(img, level, rows, c, outward) if len(rows) else np.array([np.nan])

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: NaN result, handled below
        tib = np.nanmax(outline(-3, 2, b_row)) - np.nanmedian(outline(3.5, 6.5, b_row))
        fem = np.nanmax(outline(-3, 0.5, a_row)) - np.nanmedian(outline(-9, -5, a_row))
    tib_len = (tib / mm + _TIBIAL_FIT[0]) / _TIBIAL_FIT[1] * mm
    fem_len = (fem / mm + _FEMORAL_FIT[0]) / _FEMORAL_FIT[1] * mm
    # NaN (no outline found) counts as no spur
    return float(np.nan_to_num(max(fem_len, 0.0))), float(np.nan_to_num(max(tib_len, 0.0)))


def _refuse(reason: str, side: str | None) -> JointMeasurement:
    return JointMeasurement(ok=False, reason=reason, side=side)


# --------------------------------------------------------------------------- measurement
class _Refused(Exception):
    """The measurement gives up on this image; the message says why (its ``reason``)."""


def measure_joint(image: np.ndarray, side: str | None = None) -> JointMeasurement:
    """Measure the joint spaces and detect osteophytes in one AP knee image of any size.

    ``image``: (H, W) grey, uint8 / uint16 / float in [0, 1] or [-1, 1]. ``side`` ('L'/'R'), when
    given, maps the image-left/right compartments to medial/lateral (see
    :func:`kecae.phantoms.params.medial_on_image_left`). Values are pixels of this image.
    """
    if side is not None and side not in ("L", "R"):
        raise ValueError(f"side must be 'L', 'R' or None, got {side!r}")
    img = to_unit_float(image)
    H, W = img.shape
    s = min(H, W)
    if s < 24:
        return _refuse(f"image too small ({H}x{W}); need at least 24 px a side", side)
    lo, hi = np.percentile(img, [1, 99])
    contrast = float(hi - lo)
    if contrast < 0.04:
        return _refuse("blank or nearly uniform image (no contrast)", side)
    try:
        # 1. facing bone edges per column; 2. the joint line through them; 3. two compartments
        D, sigma, a_row, b_row, cols, keep = _facing_edges(img, contrast, s)
        coef, inl = _joint_line(0.5 * (a_row + b_row).astype(np.float64), cols, keep, s, W)
        xs = cols[inl]
        out = _compartments(img, D, sigma, contrast, a_row, b_row, cols, inl, s, W)
    except _Refused as refusal:
        return _refuse(str(refusal), side)
    blur = max(out["left"][4], out["right"][4])
    if blur > max(1.6, _MAX_BLUR_MM * s / _FOV_MM):
        return _refuse(
            f"joint edges too blurred to resolve the joint space (edge blur ~{blur:.1f} px)", side
        )

    # 4. osteophytes at the outer margins
    smooth = ndimage.gaussian_filter(img, sigma)
    ost = {}
    for name, outward in (("left", -1), ("right", 1)):
        _, col, a_j, b_j, _ = out[name]
        ost[name] = _margin_osteophytes(smooth, col, outward, a_j, b_j, s)
    spurs = (ost["left"][0], ost["right"][0], ost["left"][1], ost["right"][1])
    finite = [v for v in spurs if math.isfinite(v)]
    score = max(finite) if finite else 0.0

    centre_col = 0.5 * (W - 1)
    m = JointMeasurement(
        ok=True,
        jsw_left_px=out["left"][0],
        jsw_right_px=out["right"][0],
        joint_row=float(np.polyval(coef, centre_col)),
        joint_slope=float(coef[0]),
        left_col=out["left"][1],
        right_col=out["right"][1],
        left_edges=out["left"][2:4],
        right_edges=out["right"][2:4],
        side=side,
        columns=xs,
        edge_blur_px=blur,
        osteophyte_px=spurs,
        osteophyte_score=score,
        osteophytes=bool(score >= OSTEOPHYTE_CALL_MM * s / _FOV_MM),
    )
    if side is not None:
        by_image_side = max(spurs[0], spurs[2]), max(spurs[1], spurs[3])  # (left, right)
        if medial_on_image_left(side):
            m.jsw_medial_px, m.jsw_lateral_px = m.jsw_left_px, m.jsw_right_px
            m.osteophyte_medial_px, m.osteophyte_lateral_px = by_image_side
        else:
            m.jsw_medial_px, m.jsw_lateral_px = m.jsw_right_px, m.jsw_left_px
            m.osteophyte_lateral_px, m.osteophyte_medial_px = by_image_side
    return m


def _facing_edges(
    img: np.ndarray, contrast: float, s: int
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The vertical derivative D (at a scale tied to the image size, ``sigma``) and, per column of
    the central band, the strongest pair of a bright->dark edge (femur, row ``a_row``) facing a
    dark->bright edge (tibia, ``b_row``); ``keep``: the columns whose pair is crisp."""
    H, W = img.shape
    sigma = max(0.7, s / 180.0)
    D = ndimage.gaussian_filter(img, sigma, order=(1, 0)) / contrast  # (H, W), d/dy
    neg, pos = np.maximum(-D, 0.0), np.maximum(D, 0.0)
    gmax = max(4, int(0.16 * s))
    best = np.zeros((H, W), np.float32)
    best_d = np.zeros((H, W), np.int32)
    for d in range(1, gmax + 1):  # pair a bright->dark edge at y with a dark->bright edge at y+d
        sc = np.minimum(neg[:-d], pos[d:])
        better = sc > best[:-d]
        best[:-d] = np.where(better, sc, best[:-d])
        best_d[:-d] = np.where(better, d, best_d[:-d])
    r0, r1 = int(0.18 * H), int(0.82 * H)
    c0, c1 = int(0.03 * W), int(math.ceil(0.97 * W))
    band = best[r0:r1, c0:c1]
    a_row = np.argmax(band, axis=0) + r0  # femoral edge row per column
    strength = band[a_row - r0, np.arange(band.shape[1])]
    cols = np.arange(c0, c1)
    delta = best_d[a_row, cols]
    b_row = a_row + delta
    # edge strength is relative to the image contrast; a real joint has crisp edges
    keep = strength > max(0.35 * np.percentile(strength, 90), 0.02 / sigma)
    if keep.sum() < 0.2 * W:
        raise _Refused("no joint space found (no pair of facing bone edges across the image)")
    return D, sigma, a_row, b_row, cols, keep


def _joint_line(
    mid: np.ndarray, cols: np.ndarray, keep: np.ndarray, s: int, W: int
) -> tuple[np.ndarray, np.ndarray]:
    """A robust straight line through the edge pairs' midpoints ``mid``, and its inlier columns."""
    tol = max(2.0, 0.045 * s)
    inl = keep.copy()
    coef = np.array([0.0, np.median(mid[keep])])
    for _ in range(4):
        if inl.sum() < 3:
            break
        coef = np.polyfit(cols[inl], mid[inl], 1)
        res = np.abs(mid - np.polyval(coef, cols))
        inl = keep & (res < tol)
    if abs(coef[0]) > 0.2:
        raise _Refused("joint line too tilted (> 11 degrees) to be an AP knee view")
    if inl.sum() < 0.25 * W:
        raise _Refused("no straight joint line found (edges do not line up across the knee)")
    return coef, inl


def _compartments(
    img: np.ndarray,
    D: np.ndarray,
    sigma: float,
    contrast: float,
    a_row: np.ndarray,
    b_row: np.ndarray,
    cols: np.ndarray,
    inl: np.ndarray,
    s: int,
    W: int,
) -> dict[str, tuple[float, float, float, float, float]]:
    """The two compartments either side of the intercondylar notch (the widest run without
    inliers in the central part): per image side, (joint-space width, its column, femoral and
    tibial edge rows, edge blur), all in px."""
    xs = cols[inl]
    x_lo, x_hi = np.percentile(xs, [3, 97])
    span = x_hi - x_lo
    if span < 0.3 * W:
        raise _Refused("joint line too short for a knee (bones do not span the image)")
    centre_lo, centre_hi = x_lo + 0.25 * span, x_hi - 0.25 * span
    inner = xs[(xs >= centre_lo) & (xs <= centre_hi)]
    pts = np.concatenate([[centre_lo], inner, [centre_hi]])
    gaps = np.diff(pts)
    k = int(np.argmax(gaps))
    notch = 0.5 * (pts[k] + pts[k + 1])
    if gaps[k] < 0.04 * span:
        raise _Refused("no intercondylar notch between two compartments")

    # subpixel edges: bright->dark maximum of -D at a, dark->bright maximum of D at b
    a_sub = _subpixel_peak(-D[:, cols], a_row)
    b_sub = _subpixel_peak(D[:, cols], b_row)
    gap = b_sub - a_sub

    out = {}
    for name, lo_c, hi_c in (("left", x_lo, notch), ("right", notch, x_hi)):
        sel = inl & (cols >= lo_c) & (cols <= hi_c)
        if sel.sum() < max(3, 0.05 * W):
            raise _Refused(f"the image-{name} compartment has too few joint columns")
        cx = cols[sel]
        e_lo, e_hi = np.percentile(cx, [15, 85])  # central part: not the margin, not the spines
        use = sel & (cols >= e_lo) & (cols <= e_hi)
        g = ndimage.median_filter(np.where(use, gap, np.inf), size=3, mode="nearest")
        j = int(np.argmin(np.where(use, g, np.inf)))
        a_j, b_j = float(a_sub[j]), float(b_sub[j])
        # edge blur: a Gaussian-blurred step of height h has a steepest slope h / (sqrt(2 pi) sd)
        c_j, reach = int(cols[j]), int(math.ceil(3 * sigma)) + 2
        prof = img[:, c_j]
        gap_lvl = float(prof[int(round(0.5 * (a_j + b_j)))])
        step = (
            min(
                prof[max(0, a_row[j] - reach) : a_row[j] + 1].max(),
                prof[b_row[j] : b_row[j] + reach + 1].max(),
            )
            - gap_lvl
        )
        slope = min(-D[a_row[j], c_j], D[b_row[j], c_j]) * contrast
        sd = step / (math.sqrt(2 * math.pi) * slope) if slope > 0 else math.inf
        blur = math.sqrt(max(sd * sd - sigma * sigma, 0.0))
        out[name] = (b_j - a_j, float(cols[j]), a_j, b_j, blur)
    return out


def measure_many(images, sides=None) -> dict[str, np.ndarray]:
    """Measure a batch: ``images`` (N, H, W) or a list of 2-D arrays, ``sides`` a list or None.

    Returns arrays of length N: ``ok``, ``jsw_left_px``, ``jsw_right_px``, ``jsw_medial_px``,
    ``jsw_lateral_px``, ``osteophyte_score``, ``osteophytes``, ``osteophyte_medial_px``,
    ``osteophyte_lateral_px``, ``joint_row`` and ``reason``.
    """
    images = list(images)
    if sides is None:
        sides = [None] * len(images)
    if len(sides) != len(images):
        raise ValueError(
            f"got {len(images)} images but {len(sides)} sides; give one side per image"
        )
    keys = (
        "ok",
        "jsw_left_px",
        "jsw_right_px",
        "jsw_medial_px",
        "jsw_lateral_px",
        "osteophyte_score",
        "osteophytes",
        "osteophyte_medial_px",
        "osteophyte_lateral_px",
        "joint_row",
        "reason",
    )
    rows = [measure_joint(im, sd) for im, sd in zip(images, sides)]
    return {k: np.array([getattr(r, k) for r in rows]) for k in keys}
