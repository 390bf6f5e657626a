"""The parameters of one synthetic knee and how they are drawn.

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
from dataclasses import dataclass
from typing import Any

import numpy as np

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
def clip(v: float, lo: float, hi: float) -> float:
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
        "femur_width_mm": clip(rng.normal(72.0, 3.5), 62.0, 82.0),
        "soft_tissue_margin_mm": float(rng.uniform(4.0, 16.0)),
        "bone_density": float(rng.normal(1.0, 0.08)),
        "healthy_jsw_medial_mm": clip(rng.normal(6.0, 0.5), 4.5, 7.5),
        "healthy_jsw_lateral_mm": clip(rng.normal(6.8, 0.55), 5.2, 8.4),
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

    return PhantomParams(
        grade=int(grade),
        side=side,
        **_key_features(grade, rng, t, model),
        **_non_key_features(rng, t),
    )


def _key_features(
    grade: int, rng: np.random.Generator, t: dict[str, float], model: SeverityModel
) -> dict[str, Any]:
    """The key features (one latent severity, features with biological spread around it), drawn
    in a fixed order."""
    sev = clip(rng.normal(model.severity_mean[grade], model.severity_sd), 0.0, 4.0)
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

    return {
        "severity": sev,
        "jsw_medial_mm": float(jsw_m),
        "jsw_lateral_mm": float(jsw_l),
        "ost_femoral_medial_mm": ost[0],
        "ost_femoral_lateral_mm": ost[1],
        "ost_tibial_medial_mm": ost[2],
        "ost_tibial_lateral_mm": ost[3],
        "healthy_jsw_medial_mm": float(healthy_m),
        "healthy_jsw_lateral_mm": float(healthy_l),
    }


def _non_key_features(rng: np.random.Generator, t: dict[str, float]) -> dict[str, Any]:
    """Non-key anatomy, pose and image formation: identical distributions in every grade, drawn
    in a fixed order."""
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
    return {
        "femur_width_mm": femur_w,
        "tibia_width_ratio": clip(n(0.955, 0.015), 0.91, 1.0),
        "condyle_medial_ratio": clip(n(0.205, 0.008), 0.18, 0.23),
        "condyle_lateral_ratio": clip(n(0.195, 0.008), 0.17, 0.22),
        "condyle_height_mm": clip(n(17.0, 1.2), 14.0, 20.0),
        "condyle_exponent": float(u(2.3, 2.9)),
        "notch_height_mm": clip(n(15.0, 1.8), 11.0, 19.0),
        "femur_shaft_ratio": clip(n(0.45, 0.03), 0.38, 0.52),
        "tibia_shaft_ratio": clip(n(0.56, 0.03), 0.48, 0.64),
        "tibia_offset_mm": clip(n(0.0, 1.0), -2.5, 2.5),
        "plateau_lateral_offset_mm": clip(n(-0.5, 0.8), -2.5, 1.5),
        "plateau_medial_curv": float(n(-0.004, 0.002)),
        "plateau_lateral_curv": float(n(0.003, 0.002)),
        "spine_medial_mm": clip(n(6.5, 1.0), 4.0, 9.0),
        "spine_lateral_mm": clip(n(5.5, 1.0), 3.0, 8.0),
        "spine_gap_mm": clip(n(8.0, 1.0), 5.5, 10.5),
        "osteophyte_angle_deg": float(u(10.0, 35.0)),
        "fibula_radius_mm": clip(n(10.5, 1.0), 8.0, 13.0),
        "fibula_drop_mm": clip(n(21.0, 2.5), 16.0, 27.0),
        "fibula_inset_mm": clip(n(7.0, 1.5), 3.5, 10.5),
        "patella_dx_mm": float(n(2.0, 2.0)),
        "patella_dy_mm": clip(n(30.0, 3.0), 23.0, 38.0),
        "patella_width_mm": clip(n(21.0, 1.5), 17.0, 25.0),
        "patella_height_mm": clip(n(23.0, 1.8), 18.0, 28.0),
        "patella_density": float(u(0.08, 0.16)),
        "cortex_mm": clip(n(1.5, 0.2), 1.0, 2.1),
        "bone_density": float(t["bone_density"] * rng.normal(1.0, 0.02)),
        "trabecular_contrast": float(u(0.06, 0.14)),
        "texture_seed": int(rng.integers(0, 2**31 - 1)),
        "soft_tissue_margin_mm": float(t["soft_tissue_margin_mm"] + n(0.0, 0.8)),
        "soft_tissue_density": clip(n(1.0, 0.1), 0.7, 1.3),
        "scale": clip(n(1.0, 0.035), 0.92, 1.08),
        "shift_x_mm": clip(n(0.0, 1.8), -4.0, 4.0),
        "shift_y_mm": clip(n(0.0, 1.8), -4.0, 4.0),
        "rotation_deg": clip(n(0.0, 2.5), -6.0, 6.0),
        "black_level": float(u(0.0, 0.12)),
        "gain": float(u(0.52, 0.62)),
        "gamma": float(u(0.8, 1.25)),
        "heel_effect": float(n(0.0, 0.04)),
        "blur_mm": float(u(0.15, 0.45)),
        "noise_sigma": float(u(0.008, 0.03)),
        "noise_seed": int(rng.integers(0, 2**31 - 1)),
        "collimation_edge": edge,
        "collimation_mm": float(edge_depth * FOV_MM),
        "collimation_level": float(u(0.82, 0.97) if rng.random() < 0.5 else u(0.0, 0.06)),
        "collimation_angle_deg": float(n(0.0, 1.0)),
    }
