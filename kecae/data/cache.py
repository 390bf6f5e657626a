"""A cache of preprocessed images: each file is decoded once into a memory-mapped ``.npy`` array.

The cache file's name is a hash of every source file's (path, size in bytes, mtime_ns) and of the
preprocessing settings (size, fit, reader version): editing, touching, adding or removing a file,
or asking for another size, gives another name, so a stale cache is never read. Paths enter the
hash relative to the data set's folder, so a data folder moved with ``cp -a`` (which keeps
mtimes) keeps its cache. The file is built under a temporary name and renamed when complete, so
an interrupted build leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from kecae import CLASS_GRADES
from kecae.data import readers
from kecae.data.catalog import load_catalog
from kecae.data.records import Catalog, Record
from kecae.data.splits import ensure_splits
from kecae.errors import KecaeError
from kecae.files import atomic_path, remove_stale_tmp

log = logging.getLogger(__name__)

#: Folder name of the cache inside a data folder.
CACHE_DIRNAME = ".kecae_cache"


@dataclass
class ImageSet:
    """Preprocessed images and their metadata, row-aligned. Images are ordered by grade."""

    images: np.ndarray  # (N, S, S) float32 in [-1, 1], a read-only memory map
    grades: np.ndarray  # (N,) int64 KL grade of each image
    image_ids: list[str]  # unique id of each image (see Record.image_id)
    patient_ids: list[str]  # patient of each image
    sides: list[str | None]  # "L" / "R" / None
    paths: list[Path]  # source file of each image

    def __len__(self) -> int:
        return len(self.grades)

    @property
    def size(self) -> int:
        """Side length S of the square images."""
        return int(self.images.shape[-1])

    def for_grade(self, grade: int) -> ImageSet:
        """The images of one grade. Grades are contiguous, so the images stay a memory map view."""
        rows = np.flatnonzero(self.grades == grade)
        if rows.size == 0:
            return self._slice(slice(0, 0))
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        if hi - lo != rows.size:  # only if an ImageSet was built by hand in another order
            raise ValueError(
                f"grade {grade} rows are not contiguous; build the set with "
                "load_image_set, which orders images by grade"
            )
        return self._slice(slice(lo, hi))

    def _slice(self, s: slice) -> ImageSet:
        return ImageSet(
            images=self.images[s],
            grades=self.grades[s],
            image_ids=self.image_ids[s],
            patient_ids=self.patient_ids[s],
            sides=self.sides[s],
            paths=self.paths[s],
        )


def default_cache_dir(data_root: str | os.PathLike) -> Path:
    """``<data root>/.kecae_cache`` when writable, else ``$XDG_CACHE_HOME/kecae`` (~/.cache)."""
    local = Path(data_root) / CACHE_DIRNAME
    try:
        local.mkdir(parents=True, exist_ok=True)
        if os.access(local, os.W_OK):
            return local
    except OSError:
        pass
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "kecae"


def cache_key(
    records: Sequence[Record], size: int, fit: str, root: str | os.PathLike | None = None
) -> str:
    """Hex hash of the source files' (path, bytes, mtime_ns) and the preprocessing settings;
    paths under ``root`` count relative to it."""
    h = hashlib.sha256()
    h.update(json.dumps({"reader": readers.READER_VERSION, "size": size, "fit": fit}).encode())
    base = Path(root).resolve() if root is not None else None
    for r in records:
        try:
            st = r.path.stat()
        except OSError as exc:
            raise KecaeError(
                f"{r.path}: cannot read this file ({exc}); restore it or remove it "
                "from the data set"
            ) from exc
        name = r.path
        if base is not None and base in r.path.parents:
            name = r.path.relative_to(base)
        h.update(f"\n{name}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return h.hexdigest()


def load_image_set(
    source: str | os.PathLike | Catalog,
    size: int,
    split: str | None = None,
    grades: Sequence[int] = CLASS_GRADES,
    fit: str = "crop",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    patient_regex: str | None = None,
    side_map: dict[str, str] | None = None,
) -> ImageSet:
    """Preprocessed images of one split and some grades, decoded once and cached on disk.

    ``source`` is a data folder, a CSV manifest or a :class:`Catalog`. When the catalog has no
    splits and ``split`` is given, patient-level splits are assigned with
    :func:`~kecae.data.splits.assign_splits` (seed 0). Images are ordered by the position of their
    grade in ``grades``, then in catalog order. ``patient_regex`` gives the patient of each file of
    a folder layout and ``side_map`` its side values (see :func:`~kecae.data.catalog.load_catalog`).
    Raises :class:`KecaeError`
    when a requested grade has no image in the split.
    """
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size!r}")
    if fit not in readers.FITS:
        raise ValueError(f"fit must be one of {readers.FITS}, got {fit!r}")
    grades = tuple(int(g) for g in grades)
    if not grades or len(set(grades)) != len(grades):
        raise ValueError(f"grades must be distinct KL grades, e.g. (0, 2); got {grades}")

    catalog = (
        source
        if isinstance(source, Catalog)
        else load_catalog(source, patient_regex=patient_regex, side_map=side_map)
    )
    if split is not None and not catalog.has_splits:
        log.info("%s has no splits: assigning patient-level 70/15/15 splits (seed 0)", catalog.root)
        catalog = ensure_splits(catalog)
    records = _select(catalog, split, grades)

    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir(catalog.root)
    key = cache_key(records, int(size), fit, root=catalog.root)
    cache_file = cache_dir / f"images-{size}px-{fit}-{key[:24]}.npy"
    images = _open_cached(cache_file, (len(records), int(size), int(size)))
    if images is None:
        _build(cache_file, records, int(size), fit, progress)
        images = np.load(cache_file, mmap_mode="r")
    return ImageSet(
        images=images,
        grades=np.array([r.grade for r in records], dtype=np.int64),
        image_ids=[r.image_id for r in records],
        patient_ids=[r.patient_id for r in records],
        sides=[r.side for r in records],
        paths=[r.path for r in records],
    )


def _open_cached(cache_file: Path, shape: tuple[int, int, int]) -> np.ndarray | None:
    """The cached array as a read-only memory map, or None when absent or not what we wrote."""
    try:
        images = np.load(cache_file, mmap_mode="r")
    except (OSError, ValueError):  # absent, or damaged by something other than kecae
        return None
    if images.shape != shape or images.dtype != np.float32:
        return None
    return images


def _select(catalog: Catalog, split: str | None, grades: tuple[int, ...]) -> list[Record]:
    chosen = catalog.select(split=split)
    if split is not None and not chosen:
        raise KecaeError(
            f"{catalog.root}: no images in split {split!r} (splits present: "
            f"{catalog.splits}); pick one of those splits"
        )
    by_grade = []
    for g in grades:
        rows = [r for r in chosen if r.grade == g]
        if not rows:
            where = f"split {split!r}" if split is not None else "the data set"
            raise KecaeError(
                f"{catalog.root}: no KL-{g} images in {where}; add KL-{g} images there "
                f"(folder <split>/{g}/ or manifest rows with grade {g}), or choose other grades. "
                f"Counts per (split, grade): {catalog.counts()}"
            )
        by_grade.extend(rows)
    return by_grade


def _build(cache_file: Path, records: list[Record], size: int, fit: str, progress: bool) -> None:
    """Decode and preprocess every record into ``cache_file`` (atomically)."""
    log.info("caching %d images at %d px in %s", len(records), size, cache_file)
    remove_stale_tmp(cache_file.parent, recursive=False)
    with atomic_path(cache_file, suffix=".npy.tmp") as tmp:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.float32, shape=(len(records), size, size)
        )
        for n, r in enumerate(
            tqdm(records, desc="decoding images", unit="img", disable=not progress)
        ):
            out[n] = readers.preprocess(readers.read_image(r.path), size, fit)
        out.flush()
        del out  # close the map before the rename
