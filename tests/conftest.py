"""Shared fixtures: write small images (PNG, JPEG, TIFF, DICOM) and data-set trees for tests.

Each fixture returns a function, so a test writes exactly the files it needs under ``tmp_path``:

    def test_x(image_tree, tmp_path):
        root = image_tree(tmp_path / "data", {("train", 0): 3, ("train", 2): 2})

``learnable_tree`` writes a data set a tiny classifier learns in one epoch (the trainers',
generation's, the studies' and the API's tests train on it).
"""

from __future__ import annotations

import csv
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# One fixed torch thread unless the caller set a count: otherwise kecae follows the machine's load
# (kecae.threads), and a thread count that changes within a run changes the last bits of its
# numbers, which the resume-equals-uninterrupted tests compare exactly.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def random_image(shape=(32, 40), seed: int | str = 0, dtype=np.uint8) -> np.ndarray:
    """A reproducible random grey image (uint8 or uint16) of ``shape``; seed may be a string."""
    if isinstance(seed, str):
        seed = zlib.crc32(seed.encode())
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    return rng.integers(0, top, size=shape, endpoint=True, dtype=dtype)


def write_dicom(
    path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple | None = None,
    raw_bytes: bytes | None = None,
) -> Path:
    """Write a single-frame DICOM file (with the DICM preamble) holding ``pixels``.

    ``window`` = (center, width), each a number or a list of numbers. ``raw_bytes`` replaces
    the pixel data verbatim (e.g. to set bits above BitsStored).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.Modality = "DX"
    ds.PatientID = path.stem
    pixels = np.asarray(pixels)
    bits = bits_stored or 8 * pixels.dtype.itemsize
    ds.set_pixel_data(pixels, photometric, bits)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if raw_bytes is not None:
        ds.PixelData = raw_bytes
    if slope is not None or intercept is not None:
        ds.RescaleSlope = slope if slope is not None else 1
        ds.RescaleIntercept = intercept if intercept is not None else 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.save_as(path, enforce_file_format=True)
    return path


def write_image(
    path,
    pixels: np.ndarray | None = None,
    *,
    shape=(32, 40),
    seed: int | str | None = None,
    rgb: bool = False,
) -> Path:
    """Write ``pixels`` (uint8 or uint16; random when None) in the format of ``path``'s suffix.

    ``.dcm`` (or no suffix) writes DICOM; ``rgb=True`` stores a grey image as 3 equal channels.
    Random pixels are seeded by ``seed``, or by the file name when it is None.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if pixels is None:
        pixels = random_image(shape, seed=path.name if seed is None else seed)
    if path.suffix.lower() in (".dcm", ""):
        return write_dicom(path, pixels)
    img = Image.fromarray(pixels)
    if rgb:
        img = img.convert("RGB")
    img.save(path)
    return path


def image_tree(
    root,
    counts: dict,
    *,
    shape=(32, 40),
    suffix: str = ".png",
    manifest: str | None = None,
    patients: dict | None = None,
) -> Path:
    """Write a data set of random images and return its root.

    ``counts`` maps (split, grade) -> number of images; split None gives ``root/<grade>/``.
    Without ``manifest`` images go to ``root/<split>/<grade>/img_<k>.png``. With
    ``manifest="manifest.csv"`` (or ``"ground_truth.csv"``) they go to ``root/images/`` and the
    CSV lists path, grade, patient_id, side, split; ``patients`` maps an image's stem to its
    patient id (default: one patient per image).
    """
    root = Path(root)
    rows = []
    k = 0
    for (split, grade), n in counts.items():
        for _ in range(n):
            stem = f"img_{k:04d}"
            k += 1
            if manifest:
                rel = Path("images") / f"{stem}{suffix}"
            else:
                rel = Path(*(p for p in (split, str(grade)) if p is not None)) / f"{stem}{suffix}"
            write_image(root / rel, shape=shape, seed=f"{root.name}/{stem}")
            rows.append(
                {
                    "path": rel.as_posix(),
                    "grade": grade,
                    "patient_id": (patients or {}).get(stem, f"P{stem}"),
                    "side": "L" if k % 2 else "R",
                    "split": split or "",
                }
            )
    if manifest:
        write_manifest(root / manifest, rows)
    return root


def write_manifest(path, rows: list[dict]) -> Path:
    """Write a CSV whose header is the union of the rows' keys (in first-seen order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_learnable_tree(root: Path, counts: dict[str, int], size: int = 40, seed: int = 0) -> Path:
    """KL-2 images carry a dark horizontal band (a narrow 'joint space'), KL-0 a wide bright gap."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for split, n in counts.items():
        for grade in (0, 2):
            folder = root / split / str(grade)
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                half = 2 if grade == 2 else 5
                img = (
                    120 + 30 * np.sin(xx / (3 + rng.random() * 3)) + rng.normal(0, 12, (size, size))
                )
                img[np.abs(yy - size // 2) < half] = 30
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                    folder / f"{split}{i:03d}.png"
                )
    return root


@pytest.fixture(name="write_image", scope="session")
def _write_image_fixture():
    return write_image


@pytest.fixture(name="write_dicom", scope="session")
def _write_dicom_fixture():
    return write_dicom


@pytest.fixture(name="image_tree", scope="session")
def _image_tree_fixture():
    return image_tree


@pytest.fixture(name="write_manifest", scope="session")
def _write_manifest_fixture():
    return write_manifest


@pytest.fixture(name="learnable_tree", scope="session")
def _learnable_tree_fixture():
    return write_learnable_tree
