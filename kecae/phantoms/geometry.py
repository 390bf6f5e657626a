"""The bone outlines of one synthetic knee in its anatomical frame (millimetres): plateaus,
condyles and the osteophyte spurs, from its parameters (:mod:`kecae.phantoms.params`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from kecae.phantoms.params import PhantomParams, clip


# ------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Spur:
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
    table_x: np.ndarray  # uniform grid (step TABLE_STEP) across the plateau, x in mm
    table_top: np.ndarray  # tibial surface height top(x) on that grid
    table_norm: np.ndarray  # 1 / sqrt(1 + top'(x)^2): vertical distance -> normal distance
    spurs: tuple[Spur | None, ...]  # in MARGINS order


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


TABLE_STEP = 0.05  # mm between entries of the tibial plateau table


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
    xs = x0 - half_t + TABLE_STEP * np.arange(int(2 * half_t / TABLE_STEP) + 2)
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
    spurs: list[Spur | None] = []
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


def _spur(px: float, py: float, out: float, down: float, ang: float, length: float) -> Spur | None:
    """A spur rooted at margin point (px, py), pointing outward, tilted toward the joint line."""
    if length <= 0.0:
        return None
    dx, dy = out * math.cos(ang), down * math.sin(ang)
    # a lip: broad base, blunt tip; rooted inside the bone so it grows out without a seam
    ra = clip(0.55 * length, 1.0, 3.5)
    rb = clip(0.2 * length, 0.35, 1.0)
    tip = length - rb
    return Spur(px - dx * ra, py - dy * ra, px + dx * tip, py + dy * tip, ra, rb)
