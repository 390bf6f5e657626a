"""Image readers: any supported file -> float32 (H, W) grey in [0, 1]; preprocessing to [-1, 1].

Supported: 8/16-bit PNG, JPEG, TIFF, BMP (grey, palette, RGB/RGBA saved as grey) through Pillow,
and DICOM through pydicom (with or without the ``.dcm`` extension: the ``DICM`` preamble is
detected). Every failure to read becomes a :class:`KecaeError` that names the file and the fix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pydicom

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kecae.errors import KecaeError

#: Bump when decoding or preprocessing changes, so every cached array is rebuilt.
READER_VERSION = 1

#: File suffixes read as images (lower case). Other files are images only if they are DICOM.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom"})

#: ``fit`` modes of :func:`preprocess`: centre crop, pad with black, pad by repeating the border.
FITS = ("crop", "pad", "pad-edge")

# A pixel counts as coloured when its channels differ by more than this (0-1 scale), and an image
# as colour when more than COLOUR_FRACTION of its pixels do. JPEG chroma noise on a grey image
# stays well below both.
_COLOUR_SPREAD = 16 / 255
_COLOUR_FRACTION = 0.01
# Saturated ink (channels apart by more than INK_SPREAD: a red or green annotation, a coloured
# ruler) counts at a far smaller share: a thin burned-in mark covers ~0.1-0.5 % of a 224 px image,
# and JPEG chroma noise on a grey image never spreads the channels that far.
_INK_SPREAD = 96 / 255
_INK_FRACTION = 0.0005

_DICOM_FIX = (
    "check that the file is a complete, uncompressed DICOM image (e.g. `gdcmconv --raw "
    "in.dcm out.dcm`), or remove it from the data set"
)
_IMAGE_FIX = "re-export it as PNG or DICOM, or remove it from the data set"

#: Images with more pixels than this are refused from their header, before any decoding: a
#: 140 KB PNG of 12000 x 12000 px decodes to 3 GB. Knee radiographs have a few megapixels
#: (3000 x 3000 is 9 MP). The environment variable ``KECAE_MAX_IMAGE_PIXELS`` (or
#: ``kecae data check --max-pixels``) changes it.
MAX_IMAGE_PIXELS = 50_000_000
MAX_PIXELS_ENV = "KECAE_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The pixel limit in force: ``KECAE_MAX_IMAGE_PIXELS`` when set, else
    :data:`MAX_IMAGE_PIXELS`."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not text:
        return MAX_IMAGE_PIXELS
    if not text.isdigit() or int(text) < 1:
        raise KecaeError(
            f"{MAX_PIXELS_ENV}={os.environ[MAX_PIXELS_ENV]!r} is not a whole number >= 1: "
            f"set it to the most pixels an image may have (e.g. {MAX_IMAGE_PIXELS})"
        )
    return int(text)


def _check_pixels(path: Path, width: int, height: int, limit: int | None) -> None:
    """Refuse an image larger than ``limit`` pixels (default :func:`max_image_pixels`)."""
    limit = limit or max_image_pixels()
    if width * height > limit:
        raise ImageReadError(
            path,
            f"image too large ({width} x {height} = {width * height:,} pixels, more than the "
            f"limit of {limit:,}; a possible decompression bomb)",
            "downscale it (knee radiographs need no more than a few thousand px a side), "
            f"remove it from the data set, or raise the limit ({MAX_PIXELS_ENV} or "
            "`kecae data check --max-pixels`)",
        )


class ImageReadError(KecaeError):
    """An image file that cannot be read; ``reason`` and ``fix`` are kept apart for reports."""

    def __init__(self, path: str | os.PathLike, reason: str, fix: str):
        self.path, self.reason, self.fix = Path(path), reason, fix
        super().__init__(f"{path}: {reason}; {fix}")


@dataclass
class LoadedImage:
    """A decoded image and what :func:`load_image` learnt about it."""

    pixels: np.ndarray  # (H, W) float32 in [0, 1]
    colour: bool  # the file holds a colour image that was converted to grey
    format: str  # "PNG", "JPEG", "TIFF", "DICOM", ...
    bits: int  # bits per grey sample in the file (8, 12, 16, ...)


def is_dicom(path: str | os.PathLike) -> bool:
    """True when the file starts with the 128-byte preamble and the ``DICM`` magic (False for
    anything but a regular file: opening a pipe would wait for a writer)."""
    if not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a known image suffix or a DICOM file with any name; False for hidden files."""
    path = Path(path)
    if path.name.startswith("."):
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES or is_dicom(path)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file from its header, without decoding the pixels; a
    :class:`KecaeError` naming the file when it cannot be read."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".dcm", ".dicom") or is_dicom(path):
            import pydicom

            ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
            return int(ds.Columns), int(ds.Rows)
        with Image.open(path) as img:
            return ImageOps.exif_transpose(img).size if _rotated(img) else img.size
    except KecaeError:
        raise
    except Exception as exc:
        raise ImageReadError(path, f"cannot read this image's size ({exc})", _IMAGE_FIX) from exc


def _rotated(img: Image.Image) -> bool:
    """The EXIF orientation turns the image by 90 degrees (width and height swap)."""
    return img.getexif().get(0x0112, 1) in (5, 6, 7, 8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to float32 (H, W) grey in [0, 1]; see :func:`load_image`."""
    return load_image(path).pixels


def load_image(path: str | os.PathLike, max_pixels: int | None = None) -> LoadedImage:
    """Decode an image file to grey in [0, 1] and report colour, format and bit depth.

    Raises :class:`KecaeError` naming the file for a missing, unreadable, truncated or
    non-image file, and for one with more than ``max_pixels`` pixels (default:
    :func:`max_image_pixels`), read from its header before anything is decoded.
    """
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise ImageReadError(
                path, "not a regular file (a pipe, socket or device)", "remove it from the data set"
            )
        raise ImageReadError(
            path, "file not found", "fix the path or remove the entry that names it"
        )
    if path.suffix.lower() in (".dcm", ".dicom") or is_dicom(path):
        return _load_dicom(path, max_pixels)
    return _load_pillow(path, max_pixels)


# ---------------------------------------------------------------- Pillow formats


def _load_pillow(path: Path, max_pixels: int | None) -> LoadedImage:
    try:
        with Image.open(path) as img:  # reads the header only
            _check_pixels(path, img.size[0], img.size[1], max_pixels)
            img.load()  # decode now: a truncated file fails here, not later
            fmt = img.format or path.suffix.lstrip(".").upper()
            img = ImageOps.exif_transpose(img)  # camera/phone JPEGs may be stored rotated
            pixels, colour, bits = _pillow_to_grey(img)
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise ImageReadError(
            path,
            f"image too large ({size}, more than Pillow's safety limit of "
            f"{2 * (Image.MAX_IMAGE_PIXELS or 0):,}: a possible decompression bomb)",
            "downscale it (knee radiographs need no more than a few thousand px a side) or "
            "remove it from the data set",
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        detail = str(exc).replace(f"'{path}'", "").replace(str(path), "").strip()  # no 2nd path
        detail = detail or type(exc).__name__
        raise ImageReadError(path, f"cannot read this image ({detail})", _IMAGE_FIX) from exc
    return _finish(path, pixels, colour, fmt, bits)


def image_to_grey(img: Image.Image) -> np.ndarray:
    """A PIL image of any mode -> (H, W) float64 grey in [0, 1], as files are decoded."""
    pixels, _colour, _bits = _pillow_to_grey(ImageOps.exif_transpose(img))
    return np.clip(np.asarray(pixels, dtype=np.float64), 0.0, 1.0)


def _pillow_to_grey(img: Image.Image) -> tuple[np.ndarray, bool, int]:
    """(grey float in [0, 1], is colour, bits per sample) from any Pillow image mode."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(img, dtype=np.float64) / 65535.0, False, 16
    if mode == "I":  # 32-bit integer; 16-bit PNG/TIFF also arrive here with some Pillow builds
        arr = np.asarray(img, dtype=np.float64)
        if arr.min() >= 0 and arr.max() <= 65535:
            return arr / 65535.0, False, 16
        return _min_max(arr), False, 32
    if mode == "F":  # float TIFF: no fixed range
        return _min_max(np.asarray(img, dtype=np.float64)), False, 32
    if mode in ("1", "L"):
        return np.asarray(img.convert("L"), dtype=np.float64) / 255.0, False, 8
    if mode == "LA":
        return np.asarray(img.getchannel("L"), dtype=np.float64) / 255.0, False, 8
    rgb = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0  # P, RGB, RGBA, CMYK, YCbCr
    return _rgb_to_grey(rgb)


def _rgb_to_grey(rgb: np.ndarray) -> tuple[np.ndarray, bool, int]:
    """ITU-R BT.601 luma of an (H, W, 3) array in [0, 1], and whether it is really colour."""
    colour = colour_fraction(rgb) > _COLOUR_FRACTION or ink_fraction(rgb) > _INK_FRACTION
    grey = rgb @ np.array([0.299, 0.587, 0.114])
    return grey, colour, 8


def colour_fraction(rgb: np.ndarray) -> float:
    """Share of the pixels of an (H, W, 3) array in [0, 1] whose channels differ (coloured ink:
    a burned-in annotation, a ruler, a coloured marker), JPEG chroma noise left out."""
    spread = rgb.max(axis=-1) - rgb.min(axis=-1)
    return float(np.mean(spread > _COLOUR_SPREAD))


def ink_fraction(rgb: np.ndarray) -> float:
    """Share of the pixels of an (H, W, 3) array in [0, 1] in saturated colour (channels more
    than ``_INK_SPREAD`` apart): burned-in coloured ink, however small its area."""
    spread = rgb.max(axis=-1) - rgb.min(axis=-1)
    return float(np.mean(spread > _INK_SPREAD))


def colour_share(path: str | os.PathLike) -> float:
    """:func:`colour_fraction` of an image file (0.0 for grey files and DICOM)."""
    path = Path(path)
    if path.suffix.lower() in (".dcm", ".dicom") or is_dicom(path):
        return 0.0
    with Image.open(path) as img:
        if img.mode in ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
            return 0.0
        rgb = np.asarray(ImageOps.exif_transpose(img).convert("RGB"), dtype=np.float64) / 255.0
    return colour_fraction(rgb)


def _min_max(arr: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if not np.isfinite(lo) or not np.isfinite(hi):
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(np.min(arr)), float(np.max(arr))
    return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)


def _finish(path: Path, pixels: np.ndarray, colour: bool, fmt: str, bits: int) -> LoadedImage:
    if pixels.ndim != 2 or min(pixels.shape) < 1:
        raise ImageReadError(path, f"decoded to shape {pixels.shape}, not a 2-D image", _IMAGE_FIX)
    pixels = np.clip(pixels, 0.0, 1.0).astype(np.float32)
    return LoadedImage(pixels=pixels, colour=colour, format=fmt, bits=bits)


# ---------------------------------------------------------------- DICOM


def _load_dicom(path: Path, max_pixels: int | None) -> LoadedImage:
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

    try:
        ds = pydicom.dcmread(path, force=True)
        if "PixelData" not in ds:
            raise ImageReadError(
                path,
                "DICOM file without pixel data (a report or structured document?)",
                "remove it from the data set",
            )
        _set_missing_transfer_syntax(ds)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        _check_pixels(path, int(ds.get("Columns", 0)), int(ds.get("Rows", 0)) * frames, max_pixels)
        arr = ds.pixel_array  # respects BitsStored (12 bits in 16 are masked) and signedness
    except KecaeError:
        raise
    except Exception as exc:  # pydicom raises many types for broken or compressed files
        raise ImageReadError(path, f"cannot decode DICOM pixel data ({exc})", _DICOM_FIX) from exc

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    bits = int(ds.get("BitsStored", 8 * arr.dtype.itemsize))
    samples = int(ds.get("SamplesPerPixel", 1))
    if frames > 1:
        arr = arr[0]  # a multi-frame file: the first frame is the image we use
    if samples > 1:  # RGB / YBR DICOM: pixel_array already converts YBR to RGB
        rgb = arr.astype(np.float64) / float(2**bits - 1)
        grey, colour, _ = _rgb_to_grey(rgb)
        return _finish(path, grey, colour, "DICOM", bits)

    try:
        values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)  # slope/intercept
        if "WindowCenter" in ds and "WindowWidth" in ds:
            pixels = apply_windowing(values, _window_only(ds, Dataset))
        elif ds.get("VOILUTSequence"):
            lut_bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
            pixels = np.asarray(apply_voi(values, ds), dtype=np.float64) / float(2**lut_bits - 1)
        else:
            pixels = _min_max(values)
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        raise ImageReadError(
            path,
            f"invalid DICOM rescale or window values ({exc})",
            "fix the RescaleSlope/Intercept and WindowCenter/Width tags",
        ) from exc
    if photometric == "MONOCHROME1":  # low values are white: invert so that bone is bright
        pixels = 1.0 - pixels
    return _finish(path, pixels, False, "DICOM", bits)


def _set_missing_transfer_syntax(ds) -> None:
    """Files without the DICOM file header (no preamble, no meta) lack a transfer syntax; they are
    always uncompressed, so it follows from the encoding the parser detected."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = ds.original_encoding
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian
        if implicit
        else ExplicitVRLittleEndian
        if little
        else ExplicitVRBigEndian
    )


def _window_only(ds, dataset_cls) -> pydicom.Dataset:
    """A dataset holding only ``ds``'s window, set up so pydicom's windowing outputs [0, 1].

    pydicom scales the windowed output to the stored range ``[0, 2**BitsStored - 1]``; with one
    stored bit, unsigned and no rescale, that range is exactly [0, 1].
    """
    voi = dataset_cls()
    voi.PhotometricInterpretation = "MONOCHROME2"
    voi.PixelRepresentation = 0
    voi.BitsStored = 1
    voi.WindowCenter = ds.WindowCenter
    voi.WindowWidth = ds.WindowWidth
    if "VOILUTFunction" in ds:
        voi.VOILUTFunction = ds.VOILUTFunction
    return voi


# ---------------------------------------------------------------- preprocessing


def preprocess(img: np.ndarray, size: int, fit: str = "crop") -> np.ndarray:
    """Square and resize a grey image: (H, W) in [0, 1] -> float32 (size, size) in [-1, 1].

    ``fit="crop"`` cuts the centred square of side min(H, W); ``"pad"`` pads the short side with
    black to max(H, W), ``"pad-edge"`` repeats the border pixels instead. The square is then
    resized with Pillow's antialiased Lanczos filter (deterministic) and mapped to [-1, 1].
    """
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer number of pixels, got {size!r}")
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    img = np.asarray(img, dtype=np.float32)
    if img.ndim != 2 or min(img.shape) < 1:
        raise ValueError(f"img must be a non-empty (H, W) array, got shape {img.shape}")

    h, w = img.shape
    if fit == "crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = img[top : top + side, left : left + side]
    else:
        side = max(h, w)
        pad_h, pad_w = side - h, side - w
        pads = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
        square = np.pad(img, pads, mode="edge") if fit == "pad-edge" else np.pad(img, pads)

    if side != size:
        resized = Image.fromarray(np.ascontiguousarray(square)).resize(
            (size, size), resample=Image.Resampling.LANCZOS
        )
        square = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)  # Lanczos overshoots
    return (square * 2.0 - 1.0).astype(np.float32)
