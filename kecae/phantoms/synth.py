"""Synthetic AP knee radiographs: the rendering of one knee.

Geometry lives in an anatomical frame in millimetres: ``x`` across the knee, ``y`` down the leg,
origin near the centre of the joint. In this *canonical* frame the medial compartment is at
``x < 0``. Rendering maps every pixel centre back into that frame (pose, then the mirror that puts
the medial side where the knee's side and the display convention put it), evaluates a signed
distance for every structure and turns distances into projected path lengths, so cortical rims come
out brighter than the trabecular interior just as in a real projection radiograph.

The parameters and how they are drawn: :mod:`kecae.phantoms.params`; the bone outlines:
:mod:`kecae.phantoms.geometry`.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage

from kecae.phantoms.geometry import TABLE_STEP, KneeGeometry, Spur, knee_geometry
from kecae.phantoms.params import FOV_MM, PhantomParams, clip, medial_on_image_left
from kecae.phantoms.site import burn_marker, marker_on_right

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


def _spur_distance(x: np.ndarray, y: np.ndarray, s: Spur) -> np.ndarray:
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
            a = int(clip(math.floor(lo / self.sp + half) - 1, 0, self.size))
            b = int(clip(math.ceil(hi / self.sp + half) + 2, 0, self.size))
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
    i = ((x - g.table_x[0]) * (1.0 / TABLE_STEP) + 0.5).astype(np.intp)
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
