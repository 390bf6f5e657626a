"""``kecae data check``: everything wrong with a data set, found before any training starts.

Reads every image once and reports counts per split and grade, image sizes, and problems:
unreadable, truncated or oversized files, unknown grades, unknown side values, a patient regex
that does not fit the file names, exact duplicates, patients in two splits, a split without one
of the two grades compared, colour images (a burned-in annotation), images smaller than the model
input and skipped files; and, as notes, every choice made for the user: manifest columns read
under another name, side values mapped, grades not used, the resize to the model's input.
Nothing is modified.

Every training command runs the same check first (:func:`require_clean_data`; its result is
cached next to the preprocessed images, so it costs one pass over the data set per version of
it) and stops on a fatal problem unless the user accepts the risk (``--accept-data-problems``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from kecae import CLASS_GRADES
from kecae.data.cache import cache_key, default_cache_dir
from kecae.data.catalog import load_catalog, task_grades
from kecae.data.findings import (
    MIN_IMAGE_SIDE,
    colour_problem,
    duplicate_problems,
    empty_class_problems,
    grade_notes,
    leak_problems,
    patients_per_split,
    size_note,
    small_image_problems,
    split_order,
    split_problems,
)
from kecae.data.readers import ImageReadError, load_image, max_image_pixels
from kecae.data.records import KL_GRADES, Catalog, Problem
from kecae.errors import KecaeError
from kecae.files import atomic_write_text, file_sha256

log = logging.getLogger(__name__)


__all__ = [
    "CheckReport",
    "DataCheck",
    "Problem",
    "check_dataset",
    "checked_data",
    "require_clean_data",
]


#: Bump when the check finds new kinds of problems, so cached results are computed again.
CHECK_VERSION = 4


@dataclass
class CheckReport:
    """The result of :func:`check_dataset`."""

    root: Path  # the data folder
    layout: str  # "folders" or "manifest"
    n_images: int  # images listed (readable or not)
    counts: dict[tuple[str | None, int], int]  # (split, grade) -> images
    sizes: dict[tuple[int, int], int] = field(default_factory=dict)  # (width, height) -> images
    formats: dict[str, int] = field(default_factory=dict)  # "PNG", "DICOM", ... -> images
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> files skipped
    problems: list[Problem] = field(default_factory=list)  # errors first, then warnings
    notes: list[str] = field(default_factory=list)  # choices made for the user (not problems)
    grades: tuple[int, int] = CLASS_GRADES  # the two grades compared
    patients: dict[str, int] = field(default_factory=dict)  # split -> patients (of both grades)
    version: str = ""  # the data version (data_version()): a run records it

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "error"]

    @property
    def ok(self) -> bool:
        """True when there is no fatal problem."""
        return not self.errors

    def to_dict(self) -> dict:
        """A JSON-serialisable form of the report."""
        return {
            "root": str(self.root),
            "layout": self.layout,
            "n_images": self.n_images,
            "ok": self.ok,
            "counts": [{"split": s, "grade": g, "images": n} for (s, g), n in self.counts.items()],
            "sizes": [{"width": w, "height": h, "images": n} for (w, h), n in self.sizes.items()],
            "formats": self.formats,
            "skipped": self.skipped,
            "problems": [dataclasses.asdict(p) for p in self.problems],
            "notes": self.notes,
            "grades": list(self.grades),
            "patients": self.patients,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, d: dict) -> CheckReport:
        """The inverse of :meth:`to_dict`."""
        return cls(
            root=Path(d["root"]),
            layout=d["layout"],
            n_images=int(d["n_images"]),
            counts={(c["split"], int(c["grade"])): int(c["images"]) for c in d["counts"]},
            sizes={(int(c["width"]), int(c["height"])): int(c["images"]) for c in d["sizes"]},
            formats=dict(d.get("formats", {})),
            skipped=dict(d.get("skipped", {})),
            problems=[Problem(**p) for p in d.get("problems", [])],
            notes=list(d.get("notes", [])),
            grades=task_grades(d.get("grades", CLASS_GRADES)),
            patients=dict(d.get("patients", {})),
            version=str(d.get("version", "")),
        )

    def format(self) -> str:
        """A human-readable report."""
        lines = [
            f"data set: {self.root} ({self.layout} layout, {self.n_images} images)",
            f"data version: {self.version[:12]} (a run records it, and refuses to continue on "
            "another)",
            "",
            "images per split and KL grade:",
        ]
        splits = sorted({s for s, _ in self.counts}, key=split_order)
        header = f"  {'split':<10}" + "".join(f"{'KL-' + str(g):>7}" for g in KL_GRADES)
        lines.append(header + f"{'total':>8}")
        for s in splits:
            row = [self.counts.get((s, g), 0) for g in KL_GRADES]
            lines.append(
                f"  {s or '(none)':<10}" + "".join(f"{n:>7}" for n in row) + f"{sum(row):>8}"
            )
        lines += ["", "image sizes (width x height):"]
        lines += [
            f"  {w} x {h}: {n}" for (w, h), n in sorted(self.sizes.items(), key=lambda kv: -kv[1])
        ] or ["  (none readable)"]
        if self.formats:
            lines.append("formats: " + ", ".join(f"{k} {v}" for k, v in self.formats.items()))
        if self.skipped:
            lines.append(
                "skipped (not an error): "
                + ", ".join(f"{n} {reason}" for reason, n in self.skipped.items())
            )
        if self.notes:
            lines += ["", "notes:"] + [f"  {n}" for n in self.notes]
        lines += [
            "",
            f"{_plural(len(self.errors), 'error')}, {_plural(len(self.warnings), 'warning')}",
        ]
        for p in self.problems:
            lines.append(f"  {p.severity.upper()}: {p.file}: {p.message}")
            lines.append(f"      fix: {p.fix}")
        return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def check_dataset(
    path: str | os.PathLike,
    *,
    patient_regex: str | None = None,
    side_map: dict[str, str] | None = None,
    grades: tuple[int, ...] = CLASS_GRADES,
    size: int | None = None,
    progress: bool = False,
    max_pixels: int | None = None,
) -> CheckReport:
    """Inspect a data folder or manifest and report every problem (see the module docstring).

    ``grades``: the two KL grades the task compares (a split without one of them is an error);
    ``size``: the model's input side in px (smaller images are reported: they are upscaled;
    without it, images under :data:`MIN_IMAGE_SIDE`); ``max_pixels``: larger images are errors,
    read from their headers (default :func:`kecae.data.readers.max_image_pixels`).
    Raises :class:`KecaeError` only when the path is not a data set at all.
    """
    catalog = load_catalog(path, strict=False, patient_regex=patient_regex, side_map=side_map)
    return check_catalog(
        catalog, grades=grades, size=size, progress=progress, max_pixels=max_pixels
    )


def check_catalog(
    catalog: Catalog,
    *,
    grades: tuple[int, ...] = CLASS_GRADES,
    size: int | None = None,
    progress: bool = False,
    max_pixels: int | None = None,
) -> CheckReport:
    """:func:`check_dataset` of a catalog already read."""
    grades = task_grades(grades)
    problems = list(catalog.problems)
    sizes: Counter[tuple[int, int]] = Counter()
    formats: Counter[str] = Counter()
    by_hash: dict[str, list] = defaultdict(list)
    file_hashes: dict[Path, str] = {}
    small: list[tuple[int, int, str]] = []  # (short side, long side, file)
    floor = size if size is not None else MIN_IMAGE_SIDE
    used = {r.path for r in catalog.records if r.grade in grades}

    # Decode every image once: unreadable, truncated, colour; hash the bytes for duplicates.
    for r in tqdm(catalog.records, desc="checking images", unit="img", disable=not progress):
        with contextlib.suppress(OSError):
            file_hashes[r.path] = file_sha256(r.path)
        try:
            image = load_image(r.path, max_pixels=max_pixels)
        except ImageReadError as exc:
            problems.append(Problem("error", str(r.path), exc.reason, exc.fix))
            continue
        h, w = image.pixels.shape
        sizes[(w, h)] += 1
        formats[image.format] += 1
        if min(h, w) < floor and r.path in used:
            small.append((min(h, w), max(h, w), str(r.path)))
        if image.colour:
            problems.append(colour_problem(r.path))
        by_hash[file_hashes.get(r.path, f"unreadable:{r.path}")].append(r)

    problems += small_image_problems(small, size)
    problems += duplicate_problems(by_hash)
    problems += leak_problems(catalog)
    problems += split_problems(catalog)
    problems += empty_class_problems(catalog, grades)
    problems.sort(key=lambda p: p.severity != "error")  # stable: errors first, order kept
    notes = [*catalog.notes, *grade_notes(catalog, grades)]
    if size is not None and sizes:
        notes.append(size_note(sizes, size))
    return CheckReport(
        root=catalog.root,
        layout=catalog.layout,
        n_images=len(catalog.records),
        counts=catalog.counts(),
        sizes=dict(sizes),
        formats=dict(formats),
        skipped=dict(catalog.skipped),
        problems=problems,
        notes=notes,
        grades=grades,
        patients=patients_per_split(catalog, grades),
        version=data_version(catalog, file_hashes),
    )


def data_version(catalog: Catalog, file_hashes: dict[Path, str]) -> str:
    """The data set's version: SHA-256 of every record's image id, grade, split, patient and
    side, and of its file's bytes. Adding, removing, editing or relabelling an image (moving it
    to another grade or split folder, changing its manifest row) gives another version; moving
    or copying the data folder, or touching its files, does not. A training run records it as a
    setting (``data_version``) and refuses to continue on another one."""
    h = hashlib.sha256(f"kecae-data-v1\t{len(catalog.records)}".encode())
    for r in sorted(catalog.records, key=lambda r: r.image_id):
        h.update(
            f"\n{r.image_id}\t{r.grade}\t{r.split}\t{r.patient_id}\t{r.side}\t"
            f"{file_hashes.get(r.path, 'unreadable')}".encode()
        )
    return h.hexdigest()


def _labels_key(catalog: Catalog) -> str:
    """A hash of what the catalog says of each file (grade, split, patient, side): a manifest
    edited without touching an image must not hit a cached check."""
    lines = sorted(
        f"{r.image_id}\t{r.grade}\t{r.split}\t{r.patient_id}\t{r.side}" for r in catalog.records
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def cached_check(
    data: str | os.PathLike,
    *,
    patient_regex: str | None = None,
    side_map: dict[str, str] | None = None,
    grades: tuple[int, ...] = CLASS_GRADES,
    size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> CheckReport:
    """:func:`check_dataset`, cached under the data set's cache folder (``cache_dir``), keyed by
    its files and the check's settings: one pass over the images per version of the data."""

    catalog = load_catalog(data, strict=False, patient_regex=patient_regex, side_map=side_map)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir(catalog.root)
    settings = json.dumps(
        [
            CHECK_VERSION,
            patient_regex,
            side_map,
            list(grades),
            size,
            max_image_pixels(),
            _labels_key(catalog),
        ]
    )
    key = cache_key(catalog.records, 0, settings, root=catalog.root)
    cached = folder / f"check-{key[:24]}.json"
    if cached.is_file():
        try:
            return CheckReport.from_dict(json.loads(cached.read_text()))
        except (OSError, ValueError, TypeError, KeyError):
            pass  # damaged: check again
    log.info(
        "checking %d images of %s (kecae data check; once per version of the data)",
        len(catalog.records),
        catalog.root,
    )
    report = check_catalog(catalog, grades=grades, size=size, progress=progress)
    with contextlib.suppress(KecaeError):  # an unwritable cache: the check runs next time
        atomic_write_text(cached, json.dumps(report.to_dict(), indent=1))
    return report


@dataclass
class DataCheck:
    """What a training command learns from the data check (:func:`checked_data`)."""

    version: str  # the data version (:func:`data_version`): the run records it
    accepted: list[Problem]  # fatal problems the run was told to accept: record them
    warnings: list[Problem]  # not fatal; logged once per process


#: (data version, warning) pairs this process has logged already.
_logged: set[tuple[str, str]] = set()


def checked_data(
    data: str | os.PathLike,
    *,
    patient_regex: str | None = None,
    side_map: dict[str, str] | None = None,
    grades: tuple[int, ...] = CLASS_GRADES,
    accept: bool = False,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    size: int | None = None,
) -> DataCheck:
    """The data check every training command runs first (:func:`cached_check`).

    A fatal problem is a :class:`KecaeError` naming the first one and the way out. With
    ``accept`` the problems a run can train through (patients in two splits, duplicated images)
    are logged and returned for the caller to record; those that stop kecae reading the data
    (unreadable or oversized files, bad manifest rows, missing splits or grades) are refused
    even then. Warnings (e.g. images smaller than ``size``, the model's input) are logged once.
    """
    report = cached_check(
        data,
        patient_regex=patient_regex,
        side_map=side_map,
        grades=grades,
        size=size,
        cache_dir=cache_dir,
        progress=progress,
    )
    errors = report.errors
    if errors and (not accept or any(not p.can_accept for p in errors)):
        raise fatal_problems_error(report, data, accept)
    for p in errors:
        log.warning("accepted data problem: %s", p)
    for p in report.warnings:
        if (report.version, str(p)) not in _logged:
            _logged.add((report.version, str(p)))
            log.warning("kecae data check: %s", p)
    return DataCheck(report.version, errors, report.warnings)


def require_clean_data(
    data: str | os.PathLike,
    *,
    patient_regex: str | None = None,
    side_map: dict[str, str] | None = None,
    grades: tuple[int, ...] = CLASS_GRADES,
    accept: bool = False,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> list[Problem]:
    """The fatal problems ``kecae data check`` finds in ``data`` and the run accepts (empty when
    none); see :func:`checked_data`."""
    return checked_data(
        data,
        patient_regex=patient_regex,
        side_map=side_map,
        grades=grades,
        accept=accept,
        cache_dir=cache_dir,
        progress=progress,
    ).accepted


def fatal_problems_error(
    report: CheckReport, data: str | os.PathLike, accept: bool = False
) -> KecaeError:
    """The one-line error for a data set with fatal problems: the first, and the ways out.
    ``--accept-data-problems`` is offered only when it covers every one of them; given, it is
    said which it cannot cover."""
    blocking = [p for p in report.errors if not p.can_accept]
    first = (blocking or report.errors)[0]
    where = f"first: {first.file}: {first.message} (fix: {first.fix})"
    if accept and blocking:
        return KecaeError(
            f"kecae data check finds {len(blocking)} problem(s) in {report.root} that "
            "--accept-data-problems cannot cover (kecae cannot read the data set as it is); "
            f"{where}. Fix the data (`kecae data check {data}` lists them all)"
        )
    way_out = (
        ", or pass --accept-data-problems to train anyway (the run's config records it)"
        if not blocking
        else ""
    )
    return KecaeError(
        f"kecae data check finds {len(report.errors)} fatal problem(s) in {report.root}; "
        f"{where}. Fix the data (`kecae data check {data}` lists them all){way_out}"
    )
