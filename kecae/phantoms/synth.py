"""Synthetic AP knee radiographs: the parameters of one knee and its rendering.

Geometry lives in an anatomical frame in millimetres: ``x`` across the knee, ``y`` down the leg,
origin near the centre of the joint. In this *canonical* frame the medial compartment is at
``x < 0``. Rendering maps every pixel centre back into that frame (pose, then the mirror that puts
the medial side where the knee's side and the display convention put it), evaluates a signed
distance for every structure and turns distances into projected path lengths, so cortical rims come
out brighter than the trabecular interior just as in a real projection radiograph.

Side convention (radiological display, the viewer faces the patient): in an AP view of a *right*
knee the lateral side (and the fibular head) is on the image left and the medial compartment on the
image right; a left knee is its mirror image. :func:`medial_on_image_left` is the one place that
encodes this; every part of kecae asks it instead of re-deriving the rule.

Key features (the only ones whose distribution depends on the KL grade): joint-space width per
compartment and the four marginal osteophytes. Both are derived from one latent ``severity`` on the
KL scale (0 healthy ... 4 end stage) with biological spread; the grade label is the reader's call,
and the severities of neighbouring grades overlap (see :class:`SeverityModel`). Every other
parameter is drawn from the same distribution whatever the grade.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from kecae.phantoms.site import burn_marker, marker_on_right

#: Field of view (mm) of a phantom at pose scale 1: tight around the joint, like the public
#: 224 x 224 crops, so that joint space and osteophytes survive downsampling to 64 px.
FOV_MM = 92.0
#: An osteophyte at least this long (mm) counts as present ("definite") in the ground truth.
OSTEOPHYTE_DEFINITE_MM = 1.5
#: KL grades the generator knows how to draw.
GRADES = (0, 1, 2, 3, 4)
#: The four osteophyte margins, in the order used by column names and arrays.
MARGINS = ("femoral_medial", "femoral_lateral", "tibial_medial", "tibial_lateral")


def medial_on_image_left(side: str) -> bool:
    """True when the medial compartment of a knee of this ``side`` ('L'/'R') is on the image left.

    Radiological display convention: the viewer faces the patient, so the patient's right is on the
    image left. For a right knee the lateral side (fibula) is therefore on the image left and the
    medial compartment on the image right; for a left knee it is the other way round.
    """
    if side not in ("L", "R"):
        raise ValueError(f"side must be 'L' or 'R', got {side!r}")
    return side == "L"


@dataclass(frozen=True)
class SeverityModel:
    """How the grade label relates to the latent severity and the key features.

    A knee's latent severity is ``Normal(severity_mean[grade], severity_sd)`` clipped to [0, 4]; the
    grade is the label a reader gave it. With a 0.65 spread the KL-0 and KL-2 severities overlap
    where a reader could call either (about 10 % of each grade lies beyond the midpoint), so a
    classifier cannot be perfect: logistic regression on the true key features reaches ~88 %,
    the best single threshold on the true medial JSW ~86 %. Features follow from the severity
    with their own biological spread. Medial narrowing is a little stronger than population
    averages so that KL-0 and KL-2 still differ by ~1.5 px on average at 64 px.
    """

    severity_mean: tuple[float, ...] = (0.35, 1.2, 2.0, 3.0, 3.7)  # mean latent severity of KL-0..4
    severity_sd: float = 0.65  # spread of the latent severity inside one grade (reader overlap)
    jsn_medial_mm_per_kl: float = 1.45  # medial joint-space narrowing per unit of severity
    jsn_lateral_mm_per_kl: float = 0.12  # lateral narrowing per unit (lateral stays ~unchanged)
    jsn_sd_mm: float = 0.35  # biological spread of the narrowing
    jsw_min_mm: float = 0.3  # narrowest joint space a knee keeps (bone on bone below that)
    osteophyte_onset: float = 0.9  # severity at which osteophytes start to grow
    osteophyte_mm_per_kl: float = 3.2  # osteophyte length per unit of severity above the onset
    osteophyte_sd_mm: float = 0.6  # spread of each osteophyte's length
    osteophyte_min_mm: float = 0.6  # shorter spurs are not drawn (absent)
    osteophyte_max_mm: float = 7.5  # largest spur drawn
    #: relative propensity of each margin (same order as MARGINS): OA is mostly medial
    margin_weight: tuple[float, float, float, float] = (0.9, 0.7, 1.0, 0.75)


@dataclass(frozen=True)
class PhantomParams:
    """Everything that defines one phantom knee; :func:`render` is a pure function of it.

    Lengths are millimetres in the canonical anatomical frame (medial at x < 0, y down the leg).
    """

    # --- labels
    grade: int  # KL grade label (the reader's call)
    side: str  # 'L' or 'R'
    severity: float  # latent continuous severity on the KL scale (0 healthy .. 4)
    # --- key features (distribution depends on the grade)
    jsw_medial_mm: float  # minimum vertical joint-space width, medial compartment
    jsw_lateral_mm: float  # minimum vertical joint-space width, lateral compartment
    ost_femoral_medial_mm: float  # osteophyte length beyond the normal margin, 0 = absent
    ost_femoral_lateral_mm: float
    ost_tibial_medial_mm: float
    ost_tibial_lateral_mm: float
    # --- bone shape (same distribution in every grade)
    healthy_jsw_medial_mm: float  # joint space this knee had before narrowing
    healthy_jsw_lateral_mm: float
    femur_width_mm: float  # bicondylar width of the distal femur
    tibia_width_ratio: float  # tibial plateau width / femur width
    condyle_medial_ratio: float  # medial condyle half-width / femur width
    condyle_lateral_ratio: float  # lateral condyle half-width / femur width
    condyle_height_mm: float  # vertical half-height of the condyles
    condyle_exponent: float  # superellipse exponent of the condyles (2 = ellipse, larger = boxier)
    notch_height_mm: float  # height of the intercondylar notch roof above the lowest condyle point
    femur_shaft_ratio: float  # femoral shaft width / femur width
    tibia_shaft_ratio: float  # tibial shaft width / plateau width
    tibia_offset_mm: float  # tibia centre relative to the femoral notch (x)
    plateau_lateral_offset_mm: float  # lateral plateau height relative to medial (+ = lower)
    plateau_medial_curv: float  # medial plateau curvature (1/mm, < 0 = concave dish)
    plateau_lateral_curv: float  # lateral plateau curvature (1/mm, > 0 = convex)
    spine_medial_mm: float  # height of the medial tibial spine
    spine_lateral_mm: float  # height of the lateral tibial spine
    spine_gap_mm: float  # distance between the two spines
    osteophyte_angle_deg: float  # tilt of the spurs away from horizontal
    fibula_radius_mm: float  # fibular head radius
    fibula_drop_mm: float  # fibular head centre below the lateral plateau
    fibula_inset_mm: float  # overlap of the fibular head with the tibia
    patella_dx_mm: float  # patella centre relative to the notch (x, + = lateral)
    patella_dy_mm: float  # patella centre above the joint (y distance)
    patella_width_mm: float  # patella half-width
    patella_height_mm: float  # patella half-height
    patella_density: float  # patella attenuation relative to the femur
    cortex_mm: float  # cortical shell thickness
    bone_density: float  # overall bone attenuation factor
    trabecular_contrast: float  # relative amplitude of the trabecular texture
    texture_seed: int  # picks and shifts the cached trabecular texture
    soft_tissue_margin_mm: float  # soft tissue beyond the femoral condyles
    soft_tissue_density: float  # soft tissue attenuation factor
    # --- pose (same distribution in every grade)
    scale: float  # zoom: field of view is FOV_MM / scale
    shift_x_mm: float  # joint centre offset from the image centre (x)
    shift_y_mm: float  # joint centre offset from the image centre (y)
    rotation_deg: float  # in-plane rotation
    # --- image formation (same distribution in every grade)
    black_level: float  # projected attenuation shown as black (background)
    gain: float  # display gain
    gamma: float  # display gamma
    heel_effect: float  # linear exposure gradient top to bottom (anode heel)
    blur_mm: float  # detector / focal-spot blur (Gaussian sigma)
    noise_sigma: float  # quantum + electronic noise, fraction of full scale
    noise_seed: int  # seed of this image's noise
    collimation_edge: str  # 'none', 'top', 'bottom', 'left' or 'right'
    collimation_mm: float  # depth of the collimated band from that edge
    collimation_level: float  # grey level of the collimated band (0..1)
    collimation_angle_deg: float  # tilt of the collimator edge
    # --- acquisition site (kecae.phantoms.site; drawn apart from the knee, see dataset)
    site: str = "none"  # 'none', 'A' (no marker) or 'B' (a burned-in marker near a top corner)

    # ---------------------------------------------------------------- derived quantities
    def pixel_spacing_mm(self, size: int) -> float:
        """Millimetres per pixel of this phantom rendered at ``size`` x ``size``."""
        return FOV_MM / self.scale / size

    @property
    def osteophyte_sizes_mm(self) -> tuple[float, float, float, float]:
        """Osteophyte lengths in :data:`MARGINS` order."""
        return (
            self.ost_femoral_medial_mm,
            self.ost_femoral_lateral_mm,
            self.ost_tibial_medial_mm,
            self.ost_tibial_lateral_mm,
        )

    @property
    def osteophytes(self) -> bool:
        """Whether any margin carries a definite osteophyte (>= OSTEOPHYTE_DEFINITE_MM)."""
        return max(self.osteophyte_sizes_mm) >= OSTEOPHYTE_DEFINITE_MM

    def ground_truth(self, size: int) -> dict[str, float | int | bool]:
        """Ground-truth measurements at ``size`` px: spacing, JSW in mm and px, osteophytes."""
        sp = self.pixel_spacing_mm(size)
        out: dict[str, float | int | bool] = {
            "pixel_spacing_mm": sp,
            "jsw_medial_mm": self.jsw_medial_mm,
            "jsw_lateral_mm": self.jsw_lateral_mm,
            "jsw_medial_px": self.jsw_medial_mm / sp,
            "jsw_lateral_px": self.jsw_lateral_mm / sp,
        }
        for name, mm in zip(MARGINS, self.osteophyte_sizes_mm):
            out[f"ost_{name}"] = bool(mm >= OSTEOPHYTE_DEFINITE_MM)
        out["osteophytes"] = self.osteophytes
        out["medial_on_image_left"] = medial_on_image_left(self.side)
        return out


#: Fields that carry the key features (the ones whose distribution depends on the grade).
KEY_FIELDS = (
    "severity",
    "jsw_medial_mm",
    "jsw_lateral_mm",
    "ost_femoral_medial_mm",
    "ost_femoral_lateral_mm",
    "ost_tibial_medial_mm",
    "ost_tibial_lateral_mm",
)
#: Fields drawn from the same distribution in every grade (labels and seeds excluded).
NON_KEY_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(PhantomParams)
    if f.name
    not in (
        *KEY_FIELDS,
        "grade",
        "side",
        "texture_seed",
        "noise_seed",
        "collimation_edge",
        "site",
    )
)


# ------------------------------------------------------------------------------- sampling
def _clip(v: float, lo: float, hi: float) -> float:
    """Clip a Python scalar (np.clip costs microseconds per call on scalars)."""
    return float(min(max(v, lo), hi))


#: Traits shared by the two knees of one patient (body size, soft tissue, bone density).
PATIENT_TRAITS = (
    "femur_width_mm",
    "soft_tissue_margin_mm",
    "bone_density",
    "healthy_jsw_medial_mm",
    "healthy_jsw_lateral_mm",
)


def sample_patient_traits(rng: np.random.Generator) -> dict[str, float]:
    """Draw the traits both knees of one patient share (see :data:`PATIENT_TRAITS`)."""
    return {
        "femur_width_mm": _clip(rng.normal(72.0, 3.5), 62.0, 82.0),
        "soft_tissue_margin_mm": float(rng.uniform(4.0, 16.0)),
        "bone_density": float(rng.normal(1.0, 0.08)),
        "healthy_jsw_medial_mm": _clip(rng.normal(6.0, 0.5), 4.5, 7.5),
        "healthy_jsw_lateral_mm": _clip(rng.normal(6.8, 0.55), 5.2, 8.4),
    }


def sample_params(
    grade: int,
    rng: np.random.Generator,
    *,
    side: str | None = None,
    traits: dict[str, float] | None = None,
    model: SeverityModel = SeverityModel(),
) -> PhantomParams:
    """Draw one knee of KL ``grade``.

    ``traits`` (from :func:`sample_patient_traits`) are shared with the patient's other knee; a
    knee varies a little around them. ``side`` is drawn when not given. The draw order is fixed,
    so the same generator state always gives the same knee.
    """
    if grade not in GRADES:
        raise ValueError(f"grade must be one of {GRADES}, got {grade!r}")
    if side is not None and side not in ("L", "R"):
        raise ValueError(f"side must be 'L', 'R' or None, got {side!r}")
    t = traits if traits is not None else sample_patient_traits(rng)
    side_draw = "L" if rng.random() < 0.5 else "R"
    side = side or side_draw

    # Key features: one latent severity, features with biological spread around it.
    sev = _clip(rng.normal(model.severity_mean[grade], model.severity_sd), 0.0, 4.0)
    healthy_m = t["healthy_jsw_medial_mm"] + rng.normal(0.0, 0.15)
    healthy_l = t["healthy_jsw_lateral_mm"] + rng.normal(0.0, 0.15)
    jsw_m = max(
        model.jsw_min_mm,
        healthy_m - model.jsn_medial_mm_per_kl * sev + rng.normal(0.0, model.jsn_sd_mm),
    )
    jsw_l = max(
        model.jsw_min_mm,
        healthy_l - model.jsn_lateral_mm_per_kl * sev + rng.normal(0.0, model.jsn_sd_mm * 0.6),
    )
    propensity = float(rng.lognormal(0.0, 0.25))  # some knees form spurs more readily
    ost = []
    for w in model.margin_weight:
        length = w * propensity * model.osteophyte_mm_per_kl * (
            sev - model.osteophyte_onset
        ) + rng.normal(0.0, model.osteophyte_sd_mm)
        length = 0.0 if length < model.osteophyte_min_mm else min(length, model.osteophyte_max_mm)
        ost.append(float(length))

    # Non-key anatomy, pose and image formation: identical distributions in every grade.
    n = rng.normal
    u = rng.uniform
    femur_w = t["femur_width_mm"] * float(rng.normal(1.0, 0.01))
    edge_draw = rng.random()
    edge = (
        "none"
        if edge_draw < 0.6
        else "top"
        if edge_draw < 0.75
        else "bottom"
        if edge_draw < 0.9
        else "left"
        if edge_draw < 0.95
        else "right"
    )
    edge_depth = u(0.03, 0.10) if edge in ("top", "bottom") else u(0.01, 0.03)
    return PhantomParams(
        grade=int(grade),
        side=side,
        severity=sev,
        jsw_medial_mm=float(jsw_m),
        jsw_lateral_mm=float(jsw_l),
        ost_femoral_medial_mm=ost[0],
        ost_femoral_lateral_mm=ost[1],
        ost_tibial_medial_mm=ost[2],
        ost_tibial_lateral_mm=ost[3],
        healthy_jsw_medial_mm=float(healthy_m),
        healthy_jsw_lateral_mm=float(healthy_l),
        femur_width_mm=femur_w,
        tibia_width_ratio=_clip(n(0.955, 0.015), 0.91, 1.0),
        condyle_medial_ratio=_clip(n(0.205, 0.008), 0.18, 0.23),
        condyle_lateral_ratio=_clip(n(0.195, 0.008), 0.17, 0.22),
        condyle_height_mm=_clip(n(17.0, 1.2), 14.0, 20.0),
        condyle_exponent=float(u(2.3, 2.9)),
        notch_height_mm=_clip(n(15.0, 1.8), 11.0, 19.0),
        femur_shaft_ratio=_clip(n(0.45, 0.03), 0.38, 0.52),
        tibia_shaft_ratio=_clip(n(0.56, 0.03), 0.48, 0.64),
        tibia_offset_mm=_clip(n(0.0, 1.0), -2.5, 2.5),
        plateau_lateral_offset_mm=_clip(n(-0.5, 0.8), -2.5, 1.5),
        plateau_medial_curv=float(n(-0.004, 0.002)),
        plateau_lateral_curv=float(n(0.003, 0.002)),
        spine_medial_mm=_clip(n(6.5, 1.0), 4.0, 9.0),
        spine_lateral_mm=_clip(n(5.5, 1.0), 3.0, 8.0),
        spine_gap_mm=_clip(n(8.0, 1.0), 5.5, 10.5),
        osteophyte_angle_deg=float(u(10.0, 35.0)),
        fibula_radius_mm=_clip(n(10.5, 1.0), 8.0, 13.0),
        fibula_drop_mm=_clip(n(21.0, 2.5), 16.0, 27.0),
        fibula_inset_mm=_clip(n(7.0, 1.5), 3.5, 10.5),
        patella_dx_mm=float(n(2.0, 2.0)),
        patella_dy_mm=_clip(n(30.0, 3.0), 23.0, 38.0),
        patella_width_mm=_clip(n(21.0, 1.5), 17.0, 25.0),
        patella_height_mm=_clip(n(23.0, 1.8), 18.0, 28.0),
        patella_density=float(u(0.08, 0.16)),
        cortex_mm=_clip(n(1.5, 0.2), 1.0, 2.1),
        bone_density=float(t["bone_density"] * rng.normal(1.0, 0.02)),
        trabecular_contrast=float(u(0.06, 0.14)),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
        soft_tissue_margin_mm=float(t["soft_tissue_margin_mm"] + n(0.0, 0.8)),
        soft_tissue_density=_clip(n(1.0, 0.1), 0.7, 1.3),
        scale=_clip(n(1.0, 0.035), 0.92, 1.08),
        shift_x_mm=_clip(n(0.0, 1.8), -4.0, 4.0),
        shift_y_mm=_clip(n(0.0, 1.8), -4.0, 4.0),
        rotation_deg=_clip(n(0.0, 2.5), -6.0, 6.0),
        black_level=float(u(0.0, 0.12)),
        gain=float(u(0.52, 0.62)),
        gamma=float(u(0.8, 1.25)),
        heel_effect=float(n(0.0, 0.04)),
        blur_mm=float(u(0.15, 0.45)),
        noise_sigma=float(u(0.008, 0.03)),
        noise_seed=int(rng.integers(0, 2**31 - 1)),
        collimation_edge=edge,
        collimation_mm=float(edge_depth * FOV_MM),
        collimation_level=float(u(0.82, 0.97) if rng.random() < 0.5 else u(0.0, 0.06)),
        collimation_angle_deg=float(n(0.0, 1.0)),
    )


# ------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class _Spur:
    """A tapered capsule from ``a`` (radius ra, rooted in the bone) to ``b`` (radius rb)."""

    ax: float
    ay: float
    bx: float
    by: float
    ra: float
    rb: float


@dataclass(frozen=True)
class KneeGeometry:
    """Derived shape constants (canonical frame, mm) shared by rendering and ground truth."""

    cx: tuple[float, float]  # condyle centres x (medial, lateral)
    cy: tuple[float, float]  # condyle centres y
    ca: tuple[float, float]  # condyle half-widths
    cb: float  # condyle half-height
    contact_x: tuple[float, float]  # x of the narrowest joint space per compartment
    femur_bottom_y: tuple[float, float]  # lowest femoral point per compartment
    meta_bottom: float  # y of the notch roof
    tibia_x0: float  # tibia centre x
    tibia_half: float  # half-width of the tibial plateau
    plateau_y: tuple[float, float]  # plateau height under each condyle
    table_x: np.ndarray  # uniform grid (step _TABLE_STEP) across the plateau, x in mm
    table_top: np.ndarray  # tibial surface height top(x) on that grid
    table_norm: np.ndarray  # 1 / sqrt(1 + top'(x)^2): vertical distance -> normal distance
    spurs: tuple[_Spur | None, ...]  # in MARGINS order


def _plateau(p: PhantomParams, x: np.ndarray, cxm: float, cxl: float) -> np.ndarray:
    """Tibial plateau height top(x) (y of the bone surface) in the canonical frame."""
    x0 = p.tibia_offset_mm
    y_pm = 2.5
    y_pl = y_pm + p.plateau_lateral_offset_mm
    med = y_pm + p.plateau_medial_curv * (x - cxm) ** 2
    lat = y_pl + p.plateau_lateral_curv * (x - cxl) ** 2
    w = 1.0 / (1.0 + np.exp(-(x - x0) / 2.5))
    top = (1 - w) * med + w * lat
    sp = 0.5 * p.spine_gap_mm
    # intercondylar eminence: a broad base carrying the two spines
    base = 0.5 * min(p.spine_medial_mm, p.spine_lateral_mm)
    top = top - base * np.exp(-0.5 * ((x - x0) / (sp + 2.5)) ** 2)
    top = top - (p.spine_medial_mm - base) * np.exp(-0.5 * ((x - (x0 - sp)) / 1.8) ** 2)
    top = top - (p.spine_lateral_mm - base) * np.exp(-0.5 * ((x - (x0 + sp)) / 1.8) ** 2)
    # rounded plateau corners: the surface drops over the last few millimetres
    rc = 2.5
    half = 0.5 * p.femur_width_mm * p.tibia_width_ratio
    s = np.clip(np.abs(x - x0) - (half - rc), 0.0, rc)
    return top + rc - np.sqrt(rc * rc - s * s)


def _condyle_lift(x: np.ndarray, cx: float, a: float, b: float, n: float) -> np.ndarray:
    """How far the condyle outline at ``x`` sits above its lowest point (superellipse, >= 0)."""
    t = np.clip(np.abs(x - cx) / a, 0.0, 1.0)
    return b - b * (1.0 - t**n) ** (1.0 / n)


_TABLE_STEP = 0.05  # mm between entries of the tibial plateau table


@functools.lru_cache(maxsize=256)  # ~17 kB per entry (the plateau table)
def knee_geometry(p: PhantomParams) -> KneeGeometry:
    """Place the condyles so each compartment's narrowest vertical gap equals its JSW exactly."""
    W = p.femur_width_mm
    am, al = p.condyle_medial_ratio * W, p.condyle_lateral_ratio * W
    cxm, cxl = -(0.5 * W - am), 0.5 * W - al
    b = p.condyle_height_mm
    ne = p.condyle_exponent
    half_t = 0.5 * W * p.tibia_width_ratio
    x0 = p.tibia_offset_mm
    xs = x0 - half_t + _TABLE_STEP * np.arange(int(2 * half_t / _TABLE_STEP) + 2)
    top = _plateau(p, xs, cxm, cxl)

    bottoms, contacts = [], []
    for cx, a, jsw in ((cxm, am, p.jsw_medial_mm), (cxl, al, p.jsw_lateral_mm)):
        sel = np.abs(xs - cx) <= 0.8 * a  # the compartment: the condyle's articular surface
        gap_if_zero = top[sel] + _condyle_lift(xs[sel], cx, a, b, ne)
        i = int(np.argmin(gap_if_zero))
        bottoms.append(float(gap_if_zero[i] - jsw))
        contacts.append(float(xs[sel][i]))
    cy = (bottoms[0] - b, bottoms[1] - b)

    # The spines sit in the notch; in very narrow joints (KL-3/4) a tall spine would reach into a
    # condyle's inner side, so the surface there is kept 0.3 mm below the femur (a worn spine).
    # Inside the compartments every gap is already >= its JSW, so the ground truth is unchanged.
    mid = np.abs(xs - x0) < 15.0
    xm = xs[mid]
    femur_low = np.maximum(
        np.where(np.abs(xm - cxm) > am, -1e3, bottoms[0] - _condyle_lift(xm, cxm, am, b, ne)),
        np.where(np.abs(xm - cxl) > al, -1e3, bottoms[1] - _condyle_lift(xm, cxl, al, b, ne)),
    )
    top[mid] = np.maximum(top[mid], femur_low + 0.3)

    # Slope normaliser turns the vertical distance y - top(x) into a distance along the normal.
    slope = np.gradient(top, xs)
    norm = 1.0 / np.sqrt(1.0 + slope * slope)

    # Osteophyte spurs: tibial ones at the plateau corners, femoral ones at the condyle margins.
    ang = math.radians(p.osteophyte_angle_deg)
    spurs: list[_Spur | None] = []
    for k, (cx, a, bottom) in enumerate(((cxm, am, bottoms[0]), (cxl, al, bottoms[1]))):
        out = -1.0 if k == 0 else 1.0  # medial margin is at x < 0 in the canonical frame
        length = (p.ost_femoral_medial_mm, p.ost_femoral_lateral_mm)[k]
        h = 3.0  # the spur starts where the condyle outline is 3 mm above its lowest point
        px = cx + out * a * (1.0 - ((b - h) / b) ** ne) ** (1 / ne)
        py = bottom - h
        spurs.append(_spur(px, py, out, +1.0, ang + math.radians(10), length))
    for k in range(2):
        out = -1.0 if k == 0 else 1.0
        length = (p.ost_tibial_medial_mm, p.ost_tibial_lateral_mm)[k]
        ex = x0 + out * half_t
        ey = float(np.interp(ex - out * 2.5, xs, top))
        spurs.append(_spur(ex, ey + 0.6, out, -1.0, ang, length))
    return KneeGeometry(
        cx=(cxm, cxl),
        cy=cy,
        ca=(am, al),
        cb=b,
        contact_x=(contacts[0], contacts[1]),
        femur_bottom_y=(bottoms[0], bottoms[1]),
        meta_bottom=min(bottoms) - p.notch_height_mm,
        tibia_x0=x0,
        tibia_half=half_t,
        plateau_y=(float(np.interp(contacts[0], xs, top)), float(np.interp(contacts[1], xs, top))),
        table_x=xs.astype(np.float32),
        table_top=top.astype(np.float32),
        table_norm=norm.astype(np.float32),
        spurs=tuple(spurs),
    )


def _spur(px: float, py: float, out: float, down: float, ang: float, length: float) -> _Spur | None:
    """A spur rooted at margin point (px, py), pointing outward, tilted toward the joint line."""
    if length <= 0.0:
        return None
    dx, dy = out * math.cos(ang), down * math.sin(ang)
    # a lip: broad base, blunt tip; rooted inside the bone so it grows out without a seam
    ra = _clip(0.55 * length, 1.0, 3.5)
    rb = _clip(0.2 * length, 0.35, 1.0)
    tip = length - rb
    return _Spur(px - dx * ra, py - dy * ra, px + dx * tip, py + dy * tip, ra, rb)


# ------------------------------------------------------------------------------- rendering
_OUTSIDE = np.float32(-50.0)  # distance used outside a structure's bounding box (mm)


def _smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth union of two inside-positive distances (polynomial smooth maximum, blend ``k`` mm)."""
    h = np.maximum(k - np.abs(a - b), 0.0) * (1.0 / k)
    return np.maximum(a, b) + h * h * (0.25 * k)


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth intersection of two inside-positive distances."""
    h = np.maximum(k - np.abs(a - b), 0.0) * (1.0 / k)
    return np.minimum(a, b) - h * h * (0.25 * k)


def _chord(d: np.ndarray, r: float) -> np.ndarray:
    """Projected path length through a body of depth radius ``r`` at inside distance ``d``.

    A ray at distance ``d`` inside the outline of a round body crosses a chord of length
    2 sqrt(d (2r - d)); this is what makes cortical rims bright in a projection.
    """
    d = np.minimum(np.maximum(d, 0.0), r)
    return 2.0 * np.sqrt(d * (2.0 * r - d))


def _superellipse(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float, n: float
) -> np.ndarray:
    """Inside-positive distance (first order) to the superellipse |u|^n + |v|^n = 1."""
    u = np.abs(x - cx) * (1.0 / a) + 1e-6
    v = np.abs(y - cy) * (1.0 / b) + 1e-6
    un1, vn1 = u ** (n - 1.0), v ** (n - 1.0)
    s = un1 * u + vn1 * v  # = r^n
    r = s ** (1.0 / n)
    grad = np.sqrt((un1 * (1.0 / a)) ** 2 + (vn1 * (1.0 / b)) ** 2)  # = |grad r| * r^(n-1)
    return (1.0 - r) * s / (r * grad)


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float) -> np.ndarray:
    """Inside-positive distance (first order) to an axis-aligned ellipse."""
    dx, dy = x - cx, y - cy
    r = np.sqrt(dx * dx * (1.0 / (a * a)) + dy * dy * (1.0 / (b * b)))
    grad = np.sqrt(dx * dx * (1.0 / a**4) + dy * dy * (1.0 / b**4)) + 1e-6
    return (1.0 - r) * r / grad


def _spur_distance(x: np.ndarray, y: np.ndarray, s: _Spur) -> np.ndarray:
    """Inside-positive distance to a tapered capsule."""
    ex, ey = s.bx - s.ax, s.by - s.ay
    inv = 1.0 / (ex * ex + ey * ey)
    t = np.minimum(np.maximum(((x - s.ax) * ex + (y - s.ay) * ey) * inv, 0.0), 1.0)
    qx, qy = x - (s.ax + t * ex), y - (s.ay + t * ey)
    return (s.ra + (s.rb - s.ra) * t) - np.sqrt(qx * qx + qy * qy)


@functools.lru_cache(maxsize=16)
def _grid(size: int) -> np.ndarray:
    """Pixel-centre offsets from the image centre, in pixels (float32, shape (size,))."""
    return (np.arange(size, dtype=np.float32) + 0.5) - 0.5 * size


class _Frame:
    """Canonical coordinates of every pixel centre, and bounding boxes in pixel indices."""

    def __init__(self, p: PhantomParams, size: int) -> None:
        self.size = size
        self.sp = p.pixel_spacing_mm(size)
        self.off = _grid(size) * np.float32(self.sp)  # pixel centres, mm from the image centre
        th = math.radians(p.rotation_deg)
        self.c, self.s = math.cos(th), math.sin(th)
        self.sx, self.sy = p.shift_x_mm, p.shift_y_mm
        self.mirror = -1.0 if not medial_on_image_left(p.side) else 1.0
        X = self.off[None, :] - np.float32(self.sx)  # (1, S)
        Y = self.off[:, None] - np.float32(self.sy)  # (S, 1)
        c, s = np.float32(self.c), np.float32(self.s)
        self.x = (c * X + s * Y) * np.float32(self.mirror)  # (S, S)
        self.y = c * Y - s * X  # (S, S)

    def box(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
        """Pixel slices covering the canonical rectangle [x0, x1] x [y0, y1] (mm)."""
        xs = np.array([x0, x1, x0, x1]) * self.mirror
        ys = np.array([y0, y0, y1, y1])
        X = self.c * xs - self.s * ys + self.sx  # forward rotation of the corners
        Y = self.s * xs + self.c * ys + self.sy
        half = 0.5 * self.size

        def span(lo: float, hi: float) -> slice:
            a = int(_clip(math.floor(lo / self.sp + half) - 1, 0, self.size))
            b = int(_clip(math.ceil(hi / self.sp + half) + 2, 0, self.size))
            return slice(a, max(a, b))

        return span(Y.min(), Y.max()), span(X.min(), X.max())

    def field(self, fn, box: tuple[slice, slice], *args) -> np.ndarray:
        """Evaluate distance function ``fn(x, y, *args)`` inside ``box``, _OUTSIDE elsewhere."""
        out = np.full((self.size, self.size), _OUTSIDE, np.float32)
        rs, cs = box
        if rs.stop > rs.start and cs.stop > cs.start:
            out[rs, cs] = fn(self.x[rs, cs], self.y[rs, cs], *args)
        return out


_N_TEXTURES = 8


@functools.lru_cache(maxsize=8)
def _texture_bank(size: int) -> np.ndarray:
    """Cached trabecular textures for one image size: (K, 2*size, 2*size) float32, unit std.

    Band-pass noise stretched along y (trabeculae run along the load axis); drawn from a fixed
    seed so the bank, and therefore every image, is reproducible. Twice the image size, so that
    each image takes a window at its own offset without copying.
    """
    rng = np.random.Generator(np.random.PCG64(20240611))
    spacing = FOV_MM / size
    fine = max(0.5, 0.45 / spacing)  # trabecular spacing ~0.45 mm, never finer than the pixel
    bank = np.empty((_N_TEXTURES, 2 * size, 2 * size), np.float32)
    for k in range(_N_TEXTURES):
        white = rng.standard_normal((2 * size, 2 * size)).astype(np.float32)
        lo = ndimage.gaussian_filter(white, (2.0 * fine, 0.9 * fine), mode="wrap")
        hi = ndimage.gaussian_filter(white, (6.0 * fine, 3.0 * fine), mode="wrap")
        band = lo - 0.6 * hi
        bank[k] = (band - band.mean()) / (band.std() + 1e-8)
    return bank


def _texture(p: PhantomParams, size: int) -> np.ndarray:
    """This phantom's texture: a window of a cached base, picked and placed by ``texture_seed``."""
    seed = p.texture_seed
    r0, c0 = (seed >> 4) % size, (seed >> 14) % size
    tex = _texture_bank(size)[seed % _N_TEXTURES, r0 : r0 + size, c0 : c0 + size]
    return tex[:, ::-1] if (seed >> 24) & 1 else tex


def _femur(f: _Frame, p: PhantomParams, g: KneeGeometry, rows: slice) -> np.ndarray:
    """Femur distance in the row band ``rows``: condyles, notch bridge, metaphysis, spurs."""
    W = p.femur_width_mm
    d_c = []
    pad = 4.0 + f.sp  # the widest smooth-union blend below, plus the anti-aliasing pixel
    for k in range(2):
        box = f.box(
            g.cx[k] - g.ca[k] - pad,
            g.cx[k] + g.ca[k] + pad,
            g.cy[k] - g.cb - pad,
            g.cy[k] + g.cb + pad,
        )
        d_c.append(
            f.field(_superellipse, box, g.cx[k], g.cy[k], g.ca[k], g.cb, p.condyle_exponent)[rows]
        )
    x, y = f.x[rows], f.y[rows]
    # The metaphysis keeps the condyles' full width at their widest level and narrows smoothly
    # toward the shaft; a bridge with an arched lower edge forms the intercondylar notch roof.
    level = min(g.cy)
    shaft = 0.5 * W * p.femur_shaft_ratio
    rise = np.minimum(y - level, 0.0) * (1.0 / 20.0)
    hw = shaft + (0.5 * W - 0.3 - shaft) * np.exp(-rise * rise)
    d_meta = _smin(hw - np.abs(x), level - y, 3.0)
    mid, span = 0.5 * (g.cx[0] + g.cx[1]), 0.5 * (g.cx[1] - g.cx[0])
    dx = x - mid
    # the arch's ends stay inside the condyles
    arch = np.minimum(g.meta_bottom + 0.04 * dx * dx, min(g.femur_bottom_y) - 7.0)
    d_bridge = _smin(span - np.abs(dx), arch - y, 3.0)
    d = _smax(_smax(d_c[0], d_c[1], 2.0), _smax(d_meta, d_bridge, 3.0), 4.0)
    return _add_spurs(f, d, g.spurs[:2], rows)


def _add_spurs(f: _Frame, d: np.ndarray, spurs, rows: slice) -> np.ndarray:
    """Osteophytes grow out of the bone they belong to (smooth union with a small fillet)."""
    for spur in spurs:
        if spur is not None:
            r = spur.ra + 0.8 + f.sp  # blend radius and anti-aliasing pixel around the capsule
            box = f.box(
                min(spur.ax, spur.bx) - r,
                max(spur.ax, spur.bx) + r,
                min(spur.ay, spur.by) - r,
                max(spur.ay, spur.by) + r,
            )
            d = _smax(d, f.field(_spur_distance, box, spur)[rows], 0.8)
    return d


def _tibia_side(g: KneeGeometry, p: PhantomParams, y):
    """Half-width of the tibia at height ``y``: plateau rim, then a concave flare to the shaft."""
    rim_y = max(g.plateau_y) + 5.0
    half_ts = g.tibia_half * p.tibia_shaft_ratio
    return half_ts + (g.tibia_half - half_ts) * np.exp(np.minimum(rim_y - y, 0.0) * (1.0 / 15.0))


def _tibia(f: _Frame, p: PhantomParams, g: KneeGeometry, rows: slice) -> np.ndarray:
    """Tibia distance in the row band ``rows``: plateau surface from the 1-D table, flared sides."""
    x, y = f.x[rows], f.y[rows]
    # the table is on a uniform grid: nearest-entry lookup at 0.05 mm is exact enough
    i = ((x - g.table_x[0]) * (1.0 / _TABLE_STEP) + 0.5).astype(np.intp)
    np.clip(i, 0, len(g.table_x) - 1, out=i)
    top, nrm = g.table_top[i], g.table_norm[i]
    d = _smin((y - top) * nrm, _tibia_side(g, p, y) - np.abs(x - g.tibia_x0), 1.5)
    return _add_spurs(f, d, g.spurs[2:], rows)


def _fibula(x: np.ndarray, y: np.ndarray, fx: float, fy: float, fr: float) -> np.ndarray:
    """Fibula distance: a broad head tapering into the neck."""
    d_head = _ellipse(x, y, fx, fy, fr, 0.85 * fr)
    neck = 0.42 * fr + 0.4 * fr * np.exp(np.minimum(fy - y, 0.0) * (1.0 / 14.0))
    d_neck = _smin(neck - np.abs(x - (fx + 0.15 * fr)), y - fy, 2.0)
    return _smax(d_head, d_neck, 6.0)


def _bone_attenuation(
    d: np.ndarray, r: float, cortex: float, density: float, trab: np.ndarray, sp: float
) -> np.ndarray:
    """Attenuation of one bone at inside distance ``d`` (mm).

    A dense cortical / subchondral band of width ``cortex`` starts with a step at the outline (the
    beam runs along the joint surfaces in an AP view, so they project as crisp bright lines), then
    the trabecular interior thickens with depth like a chord through a round body. Steps are
    integrated over the pixel (``sp`` mm) so edges are anti-aliased at any size.
    """
    inv = 1.0 / sp
    outer = np.minimum(np.maximum(d * inv + 0.5, 0.0), 1.0)  # fraction of the pixel in the bone
    inner = np.minimum(np.maximum((d - cortex) * inv + 0.5, 0.0), 1.0)  # ... in the trabecular core
    core = 0.55 + 0.0055 * _chord(d - cortex, r - cortex) * trab
    return density * (0.8 * (outer - inner) + inner * core)


def render(params: PhantomParams, size: int, noise_free: bool = False) -> np.ndarray:
    """Render one phantom: uint8 array of shape (size, size), 0 = black (air), 255 = white.

    ``noise_free`` leaves out the quantum noise only (texture, blur and pose stay), so noise-free
    and default images of the same params differ by noise alone.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"size must be an integer >= 16 pixels, got {size!r}")
    size = int(size)
    p = params
    g = knee_geometry(p)
    f = _Frame(p, size)
    W = p.femur_width_mm
    far = 0.75 * FOV_MM / p.scale + 5.0  # beyond the half-diagonal of the field of view

    # Soft tissue envelope over the whole image, a little wider above the joint (thigh).
    A = (0.0042 * p.soft_tissue_density) * _chord(
        0.5 * W + p.soft_tissue_margin_mm - 0.06 * f.y - np.abs(f.x), 60.0
    )
    tex = _texture(p, size)
    trab = 1.0 + p.trabecular_contrast * tex
    dens = p.bone_density

    # Each bone is evaluated in the band of rows it can reach (rotation is taken into account).
    low_femur = max(g.femur_bottom_y) + 8.0
    rows_f = f.box(-far, far, -far, low_femur)[0]
    A[rows_f] += _bone_attenuation(
        _femur(f, p, g, rows_f), 28.0, p.cortex_mm, dens, trab[rows_f], f.sp
    )
    high_tibia = min(float(g.table_top.min()), min(g.plateau_y) - 5.0) - 2.0  # spines, spurs
    rows_t = f.box(-far, far, high_tibia, far)[0]
    A[rows_t] += _bone_attenuation(
        _tibia(f, p, g, rows_t), 26.0, p.cortex_mm, dens, trab[rows_t], f.sp
    )
    fr = p.fibula_radius_mm
    fy = g.plateau_y[1] + p.fibula_drop_mm
    fx = g.tibia_x0 + float(_tibia_side(g, p, fy)) - p.fibula_inset_mm + fr
    pad = 1.0 + f.sp
    box = f.box(fx - fr - pad, fx + fr + pad, fy - fr - pad, far)
    A[box] += _bone_attenuation(
        f.field(_fibula, box, fx, fy, fr)[box], 8.0, p.cortex_mm, 0.4 * dens, trab[box], f.sp
    )
    py, pa, pb = min(g.femur_bottom_y) - p.patella_dy_mm, p.patella_width_mm, p.patella_height_mm
    box = f.box(
        p.patella_dx_mm - pa - pad, p.patella_dx_mm + pa + pad, py - pb - pad, py + pb + pad
    )
    A[box] += _bone_attenuation(
        f.field(_ellipse, box, p.patella_dx_mm, py, pa, pb)[box],
        9.0,
        p.cortex_mm,
        p.patella_density * dens,
        trab[box],
        f.sp,
    )

    # Detector blur, then the display: log-exposure images show attenuation ~linearly.
    img = ndimage.gaussian_filter(A, max(0.5, p.blur_mm / f.sp), mode="nearest")
    # gamma through a 4096-entry table: exact to well below one grey level, far cheaper than pow
    lut = np.linspace(0.0, 1.0, 4096, dtype=np.float32) ** np.float32(p.gamma)
    idx = (img - p.black_level) * (p.gain * 4095.0) + 0.5
    img = lut[np.clip(idx, 0, 4095).astype(np.intp)]
    img *= 1.0 + p.heel_effect * (f.off[:, None] / (0.5 * FOV_MM / p.scale))

    # Collimator: a straight (slightly tilted) band along one edge, flat grey.
    if p.collimation_edge != "none":
        half = 0.5 * size * f.sp
        tilt = math.tan(math.radians(p.collimation_angle_deg))
        along, across = (f.off[:, None], f.off[None, :])
        if p.collimation_edge in ("left", "right"):
            along, across = across, along
        coord = along + tilt * across
        if p.collimation_edge in ("top", "left"):
            mask = coord < -half + p.collimation_mm
        else:
            mask = coord > half - p.collimation_mm
        img = np.where(mask, np.float32(p.collimation_level), img)

    if p.site == "B":  # the site's lead marker, in the projection like the bones
        img = burn_marker(img, marker_on_right(p.noise_seed))

    if not noise_free:
        rng = np.random.Generator(np.random.PCG64(p.noise_seed))
        noise = rng.standard_normal((size, size), dtype=np.float32)
        # brighter (more attenuated) areas received fewer photons: relatively noisier
        img = img + noise * (p.noise_sigma * (0.6 + 0.8 * img))
    return np.clip(img * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
