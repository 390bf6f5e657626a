"""The catalog: which image files a data set has, with KL grade, split, patient and side.

Two on-disk layouts are understood:

* **Folder per grade**: ``root/<split>/<grade>/*`` or ``root/<grade>/*``. Grade folders are named
  ``0``-``4`` (``KL2``, ``kl_2``, ``grade2`` also work). Split folders are ``train``, ``val``
  (``valid`` / ``validation`` accepted) and ``test``; the public Kaggle/Mendeley "Knee
  Osteoarthritis Dataset with Severity Grading" also has ``auto_test``, kept as its own split
  ``auto_test`` (a second test set; nothing trains or validates on it). With no manifest there is
  no patient identity, so each image is its own patient unless ``patient_regex`` extracts one from
  the file name.
* **CSV manifest**: a ``.csv`` file, or a folder holding ``manifest.csv`` or ``ground_truth.csv``
  (what the built-in phantoms write). Columns: ``path`` (relative to the CSV's folder, or
  absolute), ``grade``, optional ``patient_id``, ``side``, ``split``, ``image_id``; each also
  under the names in :data:`COLUMN_SYNONYMS` (an OAI-style ``ID,SIDE,KL,FILE`` reads as is), and
  the columns taken are listed in :attr:`Catalog.notes`. Other columns are ignored.

**Sides** are ``L`` or ``R``. Values are read through a side map: ``L``/``left``, ``R``/``right``
and OAI's numeric convention ``1`` = right, ``2`` = left (:data:`DEFAULT_SIDE_MAP`; the
``side_map`` argument changes or extends it, e.g. ``{"1": "L", "2": "R"}``). A numeric mapping
used is listed in :attr:`Catalog.notes`; a value the map does not know is an error naming the
value, an example file and the option that maps it, so nothing downstream meets a side it cannot
use.

Hidden files and folders (``.name``, e.g. the ``.kecae_cache`` folder) and non-image files are
skipped and counted in :attr:`Catalog.skipped`, never an error.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kecae.data.folders import compile_patient_regex, load_folders
from kecae.data.manifest import load_manifest
from kecae.data.records import KL_GRADES, Catalog, Problem, SideMap
from kecae.errors import KecaeError
from kecae.files import atomic_path
from kecae.paths import store_path

#: Manifest file names looked for inside a data folder, in order of preference.
MANIFEST_NAMES = ("manifest.csv", "ground_truth.csv")


def load_catalog(
    path: str | os.PathLike,
    *,
    strict: bool = True,
    patient_regex: str | None = None,
    side_map: dict[str, str] | None = None,
) -> Catalog:
    """Read a data set folder or CSV manifest into a :class:`Catalog`.

    ``strict=True`` raises :class:`KecaeError` on the first bad manifest row or grade folder
    (naming the row and file); ``strict=False`` collects them in ``Catalog.problems`` (what
    ``kecae data check`` uses). ``patient_regex`` (folder layout only) is searched in each file
    stem; its named group ``patient`` (and optional ``side``) gives the patient id, e.g.
    ``(?P<patient>\\d{7})_(?P<side>[12])`` for names like ``9003175_1.png``; it must match at
    least 90 % of the names. ``side_map`` adds to or overrides :data:`DEFAULT_SIDE_MAP`.
    """
    regex = compile_patient_regex(patient_regex)
    sides = SideMap(side_map)
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise KecaeError(
            f"{path}: no such file or folder; pass the data folder or its CSV "
            "manifest (or run `kecae phantoms` to make a synthetic data set)"
        )
    odd = next(
        (p for p in (path, *(path / n for n in MANIFEST_NAMES)) if _special_file(p)), None
    )  # opening a pipe would wait for a writer; a device would be read for ever
    if odd is not None:
        raise KecaeError(
            f"{odd} is not a regular file or folder (a pipe, socket or device): pass the data "
            "folder or a CSV manifest saved as a file"
        )
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise KecaeError(
                f"{path}: expected a data folder or a .csv manifest; pass the folder "
                "that holds the grade folders or the manifest"
            )
        catalog = load_manifest(path, strict, sides)
    else:
        manifest = next((path / n for n in MANIFEST_NAMES if (path / n).is_file()), None)
        if manifest is not None:
            catalog = load_manifest(manifest, strict, sides)
        else:
            catalog = load_folders(path, strict, regex, sides)
    sides.finish(catalog, strict)
    _check_unique_ids(catalog, strict)
    return catalog


def _special_file(path: Path) -> bool:
    """True for something that exists but is neither a regular file nor a folder."""
    return path.exists() and not path.is_file() and not path.is_dir()


def task_grades(grades: Sequence[int]) -> tuple[int, int]:
    """The two KL grades a task compares, the healthier first: ``[2, 0]`` -> ``(0, 2)``; a
    :class:`KecaeError` naming ``--grades`` for anything but two different grades 0-4."""
    try:
        pair = tuple(int(g) for g in grades)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or pair[0] == pair[1] or not all(g in KL_GRADES for g in pair):
        shown = " ".join(map(str, grades)) if isinstance(grades, (list, tuple)) else grades
        raise KecaeError(
            f"--grades {shown}: give two different KL grades 0-4, the healthier first, e.g. "
            "--grades 0 2 (the default: healthy against early OA) or --grades 0 1"
        )
    lo, hi = sorted(pair)
    return lo, hi


def grades_of(config: dict[str, Any] | None) -> tuple[int, int]:
    """The grade pair a saved configuration (a checkpoint's ``train_config``, a run.yaml) was
    made for; (0, 2) for one written before kecae took other pairs."""
    return task_grades((config or {}).get("grades") or (0, 2))


def _check_unique_ids(catalog: Catalog, strict: bool) -> None:
    dupes = [i for i, n in Counter(r.image_id for r in catalog.records).items() if n > 1]
    if not dupes:
        return
    where = catalog.manifest or catalog.root
    message = f"{len(dupes)} image ids occur more than once (first: {dupes[0]!r})"
    fix = "give each image a unique image_id (or list each file once)"
    if strict:
        raise KecaeError(f"{where}: {message}; {fix}")
    catalog.problems.append(Problem("error", str(where), message, fix))


def write_catalog(catalog: Catalog, path: str | os.PathLike) -> Path:
    """Write ``catalog`` as a manifest CSV (path, grade, patient_id, side, split, image_id, then
    the source manifest's other columns, e.g. a phantom's ground truth) that
    :func:`load_catalog` reads back to the same records: the data set as one run sees it, with
    its patients, sides and splits fixed. Paths are written as :mod:`kecae.paths` stores
    them."""
    path = Path(path)
    canonical = ["path", "grade", "patient_id", "side", "split", "image_id"]
    others = list(dict.fromkeys(k for row in catalog.extra.values() for k in row))
    others = [c for c in others if c.strip().lower() not in canonical]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(canonical + others)
        for r in catalog.records:
            more = catalog.extra.get(r.image_id, {})
            writer.writerow(
                [
                    store_path(r.path, path.parent),
                    r.grade,
                    r.patient_id,
                    r.side or "",
                    r.split or "",
                    r.image_id,
                    *(more.get(c, "") for c in others),
                ]
            )
    return path
