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
import json
import logging
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from kecae import CLASS_GRADES
from kecae.data.catalog import KL_GRADES, Catalog, Problem, load_catalog, task_grades
from kecae.data.readers import ImageReadError, colour_share, load_image
from kecae.data.splits import ensure_splits, find_split_leaks
from kecae.errors import KecaeError
from kecae.files import atomic_write_text, file_sha256

__all__ = ["CheckReport", "Problem", "check_dataset", "require_clean_data"]

log = logging.getLogger(__name__)

#: Bump when the check finds new kinds of problems, so cached results are computed again.
CHECK_VERSION = 3


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
        )

    def format(self) -> str:
        """A human-readable report."""
        lines = [
            f"data set: {self.root} ({self.layout} layout, {self.n_images} images)",
            "",
            "images per split and KL grade:",
        ]
        splits = sorted({s for s, _ in self.counts}, key=_split_order)
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


def _split_order(s: str | None) -> tuple[int, str]:
    return ({"train": 0, "val": 1, "test": 2, "auto_test": 3}.get(s or "", 9), s or "")


def check_dataset(
    path: str | os.PathLike,
    *,
    patient_regex: str | None = None,
    side_map: dict[str, str] | None = None,
    grades: tuple[int, ...] = CLASS_GRADES,
    size: int | None = None,
    progress: bool = False,
) -> CheckReport:
    """Inspect a data folder or manifest and report every problem (see the module docstring).

    ``grades``: the two KL grades the task compares (a split without one of them is an error);
    ``size``: the model's input side in px (smaller images are reported: they are upscaled).
    Raises :class:`KecaeError` only when the path is not a data set at all.
    """
    catalog = load_catalog(path, strict=False, patient_regex=patient_regex, side_map=side_map)
    return check_catalog(catalog, grades=grades, size=size, progress=progress)


def check_catalog(
    catalog: Catalog,
    *,
    grades: tuple[int, ...] = CLASS_GRADES,
    size: int | None = None,
    progress: bool = False,
) -> CheckReport:
    """:func:`check_dataset` of a catalog already read."""
    grades = task_grades(grades)
    problems = list(catalog.problems)
    sizes: Counter[tuple[int, int]] = Counter()
    formats: Counter[str] = Counter()
    by_hash: dict[str, list] = defaultdict(list)
    small: list[str] = []
    used = {r.path for r in catalog.records if r.grade in grades}

    # Decode every image once: unreadable, truncated, colour; hash the bytes for duplicates.
    for r in tqdm(catalog.records, desc="checking images", unit="img", disable=not progress):
        try:
            image = load_image(r.path)
        except ImageReadError as exc:
            problems.append(Problem("error", str(r.path), exc.reason, exc.fix))
            continue
        h, w = image.pixels.shape
        sizes[(w, h)] += 1
        formats[image.format] += 1
        if size is not None and min(h, w) < size and r.path in used:
            small.append(str(r.path))
        if image.colour:
            problems.append(_colour_problem(r.path))
        by_hash[file_sha256(r.path)].append(r)

    if small:
        problems.append(
            Problem(
                "warning",
                small[0] + (f" and {len(small) - 1} more" if len(small) > 1 else ""),
                f"{len(small)} image(s) smaller than the model input of {size} px "
                "on their short side: they are upscaled (blurred)",
                "use a smaller --image-size, or larger images",
            )
        )
    problems += _duplicate_problems(by_hash)
    problems += _leak_problems(catalog)
    problems += _empty_class_problems(catalog, grades)
    problems.sort(key=lambda p: p.severity != "error")  # stable: errors first, order kept
    notes = [*catalog.notes, *_grade_notes(catalog, grades)]
    if size is not None and sizes:
        notes.append(_size_note(sizes, size))
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
        patients=_patients_per_split(catalog, grades),
    )


def _colour_problem(path: Path) -> Problem:
    """A colour image: how much of it is coloured says whether it is a burned-in mark."""
    try:
        share = colour_share(path)
    except (OSError, ValueError):
        share = float("nan")
    marks = (
        f"{100 * share:.1f} % of its pixels are coloured (a burned-in annotation, ruler or marker?)"
        if share == share and share < 0.5
        else "a colour photograph or scan?"
    )
    return Problem(
        "warning",
        str(path),
        f"colour image, converted to grey: {marks}; the marks stay in the grey image",
        "check it is a radiograph; crop or remove burned-in annotations, or drop the image",
    )


def _grade_notes(catalog: Catalog, grades: tuple[int, int]) -> list[str]:
    """Grades of the data set that the task does not use, with their counts, once."""
    other = Counter(r.grade for r in catalog.records if r.grade not in grades)
    if not other:
        return []
    names = sorted(other)
    word = "grades" if len(names) > 1 else "grade"
    counts = ", ".join(f"KL-{g}: {other[g]}" for g in names)
    return [
        f"{sum(other.values())} images of {word} {', '.join(map(str, names))} are not used "
        f"({counts}; {len(catalog.records)} images in all): this task compares KL-{grades[0]} "
        f"and KL-{grades[1]} (--grades picks the pair)"
    ]


def _size_note(sizes: Counter[tuple[int, int]] | dict, size: int) -> str:
    """The images' short side against the model's input side."""
    sides = sorted(min(w, h) for (w, h), n in sizes.items() for _ in range(n))
    median = sides[len(sides) // 2]
    verb = "downscaled" if median > size else "upscaled" if median < size else "kept"
    found = (
        f"{sides[0]} px"
        if sides[0] == sides[-1]
        else f"{sides[0]}-{sides[-1]} px (median {median})"
    )
    return (
        f"images are {found} on their short side: centre-cropped to a square and {verb} to "
        f"the model's {size} px"
    )


def _patients_per_split(catalog: Catalog, grades: tuple[int, int]) -> dict[str, int]:
    """Patients with an image of the two grades, per split (as training will assign them)."""
    if not catalog.records or (
        not catalog.has_splits and any(r.split is not None for r in catalog.records)
    ):
        return {}
    seen: dict[str, set[str]] = defaultdict(set)
    for r in ensure_splits(catalog).records:
        if r.grade in grades:
            seen[str(r.split)].add(r.patient_id)
    return {s: len(p) for s, p in sorted(seen.items(), key=lambda kv: _split_order(kv[0]))}


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
    from kecae.data.cache import cache_key, default_cache_dir

    catalog = load_catalog(data, strict=False, patient_regex=patient_regex, side_map=side_map)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir(catalog.root)
    settings = json.dumps([CHECK_VERSION, patient_regex, side_map, list(grades), size])
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
    """The fatal problems ``kecae data check`` finds in ``data`` (empty when none).

    Without ``accept`` a fatal problem is a :class:`KecaeError` naming the first one and the way
    out; with it they are logged and returned (the caller records them). The check is cached
    (:func:`cached_check`).
    """
    report = cached_check(
        data,
        patient_regex=patient_regex,
        side_map=side_map,
        grades=grades,
        cache_dir=cache_dir,
        progress=progress,
    )
    errors = report.errors
    if errors and not accept:
        raise fatal_problems_error(report, data)
    for p in errors:
        log.warning("accepted data problem: %s", p)
    return errors


def fatal_problems_error(report: CheckReport, data: str | os.PathLike) -> KecaeError:
    """The one-line error for a data set with fatal problems: the first, and the ways out."""
    first = report.errors[0]
    return KecaeError(
        f"kecae data check finds {len(report.errors)} fatal problem(s) in {report.root}; first: "
        f"{first.file}: {first.message} (fix: {first.fix}). Fix the data (`kecae data check "
        f"{data}` lists them all), or pass --accept-data-problems to train anyway (the run's "
        "config records it)"
    )


def _duplicate_problems(by_hash: dict[str, list]) -> list[Problem]:
    problems = []
    for group in by_hash.values():
        if len(group) < 2:
            continue
        files = ", ".join(str(r.path) for r in group)
        splits = {r.split for r in group}
        grades = {r.grade for r in group}
        if len(grades) > 1:
            problems.append(
                Problem(
                    "error",
                    files,
                    f"identical images with different KL grades {sorted(grades)}",
                    "keep one copy with the right grade",
                )
            )
        elif len(splits) > 1:
            problems.append(
                Problem(
                    "error",
                    files,
                    f"identical images in splits "
                    f"{sorted(map(str, splits))}: the test set leaks into training",
                    "keep one copy and delete the others",
                )
            )
        else:
            problems.append(
                Problem(
                    "warning",
                    files,
                    f"{len(group)} identical images",
                    "keep one copy, or the image counts several times",
                )
            )
    return problems


def _leak_problems(catalog: Catalog) -> list[Problem]:
    files_of = defaultdict(list)
    for r in catalog.records:
        files_of[r.patient_id].append(r)
    problems = []
    for patient, splits in find_split_leaks(catalog.records).items():
        where = ", ".join(f"{r.path} ({r.split})" for r in files_of[patient][:4])
        problems.append(
            Problem(
                "error",
                where,
                f"patient {patient!r} is in splits {sorted(splits)}",
                "move all of this patient's images into one split (train, val or test)",
            )
        )
    return problems


def _empty_class_problems(catalog: Catalog, grades: tuple[int, ...]) -> list[Problem]:
    if not catalog.records:
        return []
    auto = not catalog.has_splits
    if auto:
        if any(r.split is not None for r in catalog.records):
            return []  # a half-filled split column: already reported by the catalog
        catalog = ensure_splits(catalog)  # what training will do: patient-level 70/15/15, seed 0
    counts = catalog.counts()
    problems = []
    for split in catalog.splits:
        for g in grades:
            if counts.get((split, g), 0) == 0:
                where = (
                    f"split {split!r} as kecae would assign it (70/15/15 by patient)"
                    if auto
                    else f"split {split!r}"
                )
                file = catalog.manifest or (catalog.root if auto else catalog.root / split)
                fix = (
                    f"add KL-{g} images (at least a few patients), or give splits explicitly"
                    if auto
                    else f"add KL-{g} images to that split"
                )
                problems.append(Problem("error", str(file), f"no KL-{g} images in {where}", fix))
    return problems
