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
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kecae.data.readers import is_image_file
from kecae.errors import KecaeError
from kecae.files import atomic_path
from kecae.paths import store_path

#: KL grades a catalog accepts.
KL_GRADES = (0, 1, 2, 3, 4)

#: Folder or manifest split names -> canonical split name.
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
    "auto_test": "auto_test",
}

#: Manifest file names looked for inside a data folder, in order of preference.
MANIFEST_NAMES = ("manifest.csv", "ground_truth.csv")

#: Manifest column names (lower case) read as each field, in order of preference.
COLUMN_SYNONYMS: dict[str, tuple[str, ...]] = {
    "path": ("path", "file", "filename", "file_name", "filepath", "file_path", "image_path"),
    "grade": ("grade", "kl", "kl_grade", "klgrade", "kl_score", "klg", "xrkl"),
    "patient_id": ("patient_id", "patient", "patientid", "id", "subject_id", "subject", "pid"),
    "side": ("side", "laterality", "knee_side", "knee"),
    "split": ("split", "subset", "partition"),
    "image_id": ("image_id",),
}

#: Side values (lower case) -> "L" / "R". Numbers follow the OAI convention (SIDE 1 = right,
#: 2 = left), also used in the file names of the public Kaggle set (``9003175_1.png``).
DEFAULT_SIDE_MAP: dict[str, str] = {
    "l": "L",
    "left": "L",
    "r": "R",
    "right": "R",
    "1": "R",
    "2": "L",
}

#: Share of file names a ``--patient-regex`` must match: below it the regex is wrong for the data.
REGEX_MIN_MATCH = 0.9

_GRADE_DIR = re.compile(r"^(?:kl|grade)?[-_ ]?(\d+)$", re.IGNORECASE)

#: Patient regexes tried on file names when none is given (to suggest one), most specific first.
_REGEX_CANDIDATES = (
    r"(?P<patient>\d{5,})_(?P<side>[12])",
    r"(?P<patient>\d{5,})-(?P<side>[12])",
    r"(?P<patient>\d{5,})_?(?P<side>[LR])",
    r"(?P<patient>\d{5,})-(?P<side>[LR])",
    r"(?P<patient>\d{5,})[_-](?P<side>(?i:left|right))",
)


@dataclass(frozen=True)
class Record:
    """One image of the data set."""

    path: Path  # absolute path of the image file
    grade: int  # Kellgren-Lawrence grade, 0-4
    split: str | None  # "train", "val", "test", "auto_test", or None when not yet assigned
    patient_id: str  # images of one patient must stay in one split
    side: str | None  # "L", "R" or None when unknown
    image_id: str  # unique within the catalog: the path relative to the root, without suffix


@dataclass(frozen=True)
class Problem:
    """Something wrong with the data set; ``severity`` "error" is fatal, "warning" is not."""

    severity: str  # "error" or "warning"
    file: str  # the file (or folder / manifest row) at fault
    message: str  # what is wrong
    fix: str  # what the user should do
    can_accept: bool = False  # an error a run may train through with --accept-data-problems

    def __str__(self) -> str:
        return f"{self.severity.upper()}: {self.file}: {self.message}; fix: {self.fix}"


@dataclass
class Catalog:
    """All images of a data set, plus what was skipped and what is wrong with it."""

    root: Path  # the data folder (for a manifest: the CSV's folder)
    records: list[Record]  # in a deterministic order (sorted paths / manifest order)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> number of files skipped
    problems: list[Problem] = field(default_factory=list)  # bad rows / folders (non-strict load)
    layout: str = "folders"  # "folders" or "manifest"
    manifest: Path | None = None  # the CSV read, if any
    notes: list[str] = field(default_factory=list)  # choices made while reading (columns, sides)
    extra: dict[str, dict[str, str]] = field(default_factory=dict)  # image id -> other columns

    @property
    def has_splits(self) -> bool:
        """True when every record has a split."""
        return bool(self.records) and all(r.split is not None for r in self.records)

    @property
    def splits(self) -> list[str]:
        """The split names present, train / val / test first."""
        order = {"train": 0, "val": 1, "test": 2, "auto_test": 3}
        names = {r.split for r in self.records if r.split is not None}
        return sorted(names, key=lambda s: (order.get(s, 9), s))

    def select(self, split: str | None = None, grades=None) -> list[Record]:
        """Records of one split (None: all) whose grade is in ``grades`` (None: all)."""
        if split is not None:
            split = SPLIT_ALIASES.get(split.lower(), split.lower())
        wanted = None if grades is None else {int(g) for g in grades}
        return [
            r
            for r in self.records
            if (split is None or r.split == split) and (wanted is None or r.grade in wanted)
        ]

    def counts(self) -> dict[tuple[str | None, int], int]:
        """Number of images per (split, grade)."""
        return dict(
            sorted(
                Counter((r.split, r.grade) for r in self.records).items(),
                key=lambda kv: (str(kv[0][0]), kv[0][1]),
            )
        )


def normalise_split(name: str) -> str:
    """Canonical split name: ``valid`` -> ``val`` etc.; unknown names are lower-cased."""
    return SPLIT_ALIASES.get(name.strip().lower(), name.strip().lower())


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
    sides = _Sides(side_map)
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
        catalog = _load_manifest(path, strict, sides)
    else:
        manifest = next((path / n for n in MANIFEST_NAMES if (path / n).is_file()), None)
        if manifest is not None:
            catalog = _load_manifest(manifest, strict, sides)
        else:
            catalog = _load_folders(path, strict, regex, sides)
    sides.finish(catalog, strict)
    _check_unique_ids(catalog, strict)
    return catalog


def _special_file(path: Path) -> bool:
    """True for something that exists but is neither a regular file nor a folder."""
    return path.exists() and not path.is_file() and not path.is_dir()


def format_side_map(side_map: dict[str, str]) -> str:
    """``{"1": "R", "2": "L"}`` -> ``"--side-map 1=R --side-map 2=L"``, as the option is given."""
    return " ".join(f"--side-map {k}={v}" for k, v in side_map.items())


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


class _Sides:
    """Side values -> "L" / "R" through the side map; remembers what it mapped and what it could
    not, so the catalog can say so once."""

    def __init__(self, side_map: dict[str, str] | None) -> None:
        self.user = {
            str(k).strip().lower(): str(v).strip().upper() for k, v in (side_map or {}).items()
        }
        bad = {k: v for k, v in self.user.items() if v not in ("L", "R")}
        if bad:
            k, v = next(iter(bad.items()))
            raise KecaeError(
                f"--side-map {k}={v}: a side is L or R, e.g. --side-map 1=R --side-map 2=L "
                "(OAI: 1 is the right knee)"
            )
        self.map = {**DEFAULT_SIDE_MAP, **self.user}
        self.used: Counter[str] = Counter()  # numeric or user-mapped values seen
        self.unknown: dict[str, list[str]] = {}  # value -> files that carry it

    def __call__(self, value: str | None, file: str) -> str | None:
        if value is None or not value.strip():
            return None
        key = value.strip().lower()
        side = self.map.get(key)
        if side is None:
            self.unknown.setdefault(value.strip(), []).append(file)
            return None
        if key in self.user or key not in ("l", "left", "r", "right"):
            self.used[key] += 1
        return side

    def finish(self, catalog: Catalog, strict: bool) -> None:
        if self.used:
            mapped = ", ".join(f"{k} -> {self.map[k]} ({n} images)" for k, n in self.used.items())
            swapped = {k: "L" if self.map[k] == "R" else "R" for k in self.used}
            catalog.notes.append(
                f"side values mapped: {mapped}"
                + ("" if self.user else " (OAI's convention: 1 is the right knee)")
                + f"; {format_side_map(swapped)} maps them the other way"
            )
        for value, files in self.unknown.items():
            problem = Problem(
                "error",
                files[0] + (f" and {len(files) - 1} more" if len(files) > 1 else ""),
                f"side value {value!r} ({len(files)} images) is not one of "
                f"{', '.join(sorted(self.map))}",
                f"map it with --side-map {value}=L (or {value}=R), or correct the side",
            )
            if strict:
                raise KecaeError(f"{problem.file}: {problem.message}; fix: {problem.fix}")
            catalog.problems.append(problem)


def suggest_patient_regex(stems: list[str]) -> str | None:
    """A patient regex that matches at least 90 % of ``stems`` (file names without suffix) and
    gives a patient and a side, among a few common naming schemes; None when none does."""
    if not stems:
        return None
    for text in _REGEX_CANDIDATES:
        regex = re.compile(text)
        if sum(regex.search(s) is not None for s in stems) >= REGEX_MIN_MATCH * len(stems):
            return text
    return None


def compile_patient_regex(text: str | None) -> re.Pattern | None:
    """``--patient-regex`` compiled; a bad one is a :class:`KecaeError` with an example."""
    if not text:
        return None
    example = "e.g. '(?P<patient>\\d{7})(?P<side>[LR])' for names like 9001695L.png"
    try:
        regex = re.compile(text)
    except re.error as exc:
        raise KecaeError(
            f"--patient-regex {text!r} is not a valid regular expression ({exc}): {example}"
        ) from exc
    if "patient" not in regex.groupindex:
        raise KecaeError(f"--patient-regex {text!r} needs a named group 'patient': {example}")
    return regex


# ---------------------------------------------------------------- folder per grade


def _grade_of_dir(name: str) -> int | None:
    m = _GRADE_DIR.match(name)
    return int(m.group(1)) if m else None


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _load_folders(root: Path, strict: bool, regex: re.Pattern | None, sides: _Sides) -> Catalog:
    skipped: Counter[str] = Counter()
    problems: list[Problem] = []
    subdirs = _visible_dirs(root)
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_ALIASES]
    # Without split folders the grade folders sit directly under the root.
    groups: list[tuple[str | None, Path]] = (
        [(SPLIT_ALIASES[d.name.lower()], d) for d in split_dirs] if split_dirs else [(None, root)]
    )
    if split_dirs:
        for d in subdirs:
            if d not in split_dirs:
                skipped["folder that is not a split (train/val/test/auto_test)"] += _count_files(d)

    records: list[Record] = []
    unmatched: list[Path] = []  # files whose name the patient regex does not match
    for split, folder in groups:
        skipped["file outside a grade folder"] += sum(
            1 for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
        )
        for gdir in _visible_dirs(folder):
            grade = _grade_of_dir(gdir.name)
            if grade is None:
                skipped["folder whose name is not a KL grade"] += _count_files(gdir)
                continue
            if grade not in KL_GRADES:
                n = _count_files(gdir)
                problem = Problem(
                    "error",
                    str(gdir),
                    f"folder of unknown KL grade {grade} ({n} files)",
                    "KL grades are 0-4: rename or move the folder",
                )
                if strict:
                    raise KecaeError(f"{problem.file}: {problem.message}; {problem.fix}")
                problems.append(problem)
                continue
            for f in _walk_files(gdir, skipped):
                patient, side_value, found = _patient_from_name(f.stem, regex)
                if not found:
                    unmatched.append(f)
                side = sides(side_value, str(f))
                rel = f.relative_to(root)
                records.append(
                    Record(
                        path=f,
                        grade=grade,
                        split=split,
                        patient_id=patient,
                        side=side,
                        image_id=rel.with_suffix("").as_posix(),
                    )
                )

    if not records and not problems:
        raise KecaeError(
            f"{root}: no images found; expected grade folders (root/<grade>/* or "
            "root/<split>/<grade>/*, grades 0-4) or a manifest.csv with path and grade columns"
        )
    catalog = Catalog(
        root=root, records=records, skipped=_nonzero(skipped), problems=problems, layout="folders"
    )
    if regex is None and records:
        guess = suggest_patient_regex([r.path.stem for r in records])
        catalog.problems.append(
            Problem(
                "warning",
                str(root),
                "no patient ids (folder layout): each image counts as its own "
                "patient, so two images of one patient may land in different splits",
                f"pass --patient-regex '{guess}' (it matches these names)"
                if guess
                else "add a manifest.csv with a patient_id column, or pass --patient-regex",
            )
        )
    matched = len(records) - len(unmatched)
    if regex is not None and records and matched < REGEX_MIN_MATCH * len(records):
        guess = suggest_patient_regex([r.path.stem for r in records])
        examples = ", ".join(p.name for p in unmatched[:3]) + (
            ", ..." if len(unmatched) > 3 else ""
        )
        problem = Problem(
            "error",
            str(root),
            f"--patient-regex {regex.pattern!r} matches {matched} of "
            f"{len(records)} file names (not matched: {examples}); "
            "unmatched images would each count as their own patient",
            f"pass --patient-regex '{guess}' (it matches these names)"
            if guess
            else "write a regex that matches the names (a group 'patient', and 'side' if any)",
        )
        if strict:
            raise KecaeError(f"{problem.file}: {problem.message}; fix: {problem.fix}")
        catalog.problems.append(problem)
    return catalog


def _walk_files(folder: Path, skipped: Counter) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted); hidden and non-image files counted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name.startswith("."):
                skipped["hidden file"] += 1
            elif not p.is_file():  # a pipe would block a reader forever; a broken link
                skipped["not a regular file (pipe, socket, device or broken link)"] += 1
            elif is_image_file(p):
                found.append(p)
            else:
                skipped["not an image file"] += 1
    return found


def _count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def _patient_from_name(stem: str, regex: re.Pattern | None) -> tuple[str, str | None, bool]:
    """(patient id, side value or None, whether the regex matched) of a file name."""
    if regex is None:
        return stem, None, True
    m = regex.search(stem)
    if m is None:
        return stem, None, False
    return m.group("patient"), m.groupdict().get("side"), True


def _nonzero(counter: Counter) -> dict[str, int]:
    return {k: v for k, v in sorted(counter.items()) if v}


# ---------------------------------------------------------------- CSV manifest


def _find_column(header: list[str], names: tuple[str, ...]) -> str | None:
    lower = {h.strip().lower(): h for h in header}
    return next((lower[n] for n in names if n in lower), None)


def _load_manifest(csv_path: Path, strict: bool, sides: _Sides) -> Catalog:
    root = csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise KecaeError(
            f"{csv_path}: cannot read the manifest ({exc}); save it as a UTF-8 "
            "CSV with a header row"
        ) from exc
    cols = {name: _find_column(header, names) for name, names in COLUMN_SYNONYMS.items()}
    path_col, grade_col = cols.pop("path"), cols.pop("grade")
    if path_col is None or grade_col is None:
        raise KecaeError(
            f"{csv_path}: the manifest needs a path column ({', '.join(COLUMN_SYNONYMS['path'])}) "
            f"and a grade column ({', '.join(COLUMN_SYNONYMS['grade'])}); found {header}: "
            "rename the columns"
        )
    renamed = [
        f"{column} -> {name}"
        for name, column in (("path", path_col), ("grade", grade_col), *cols.items())
        if column is not None and column != name
    ]

    records: list[Record] = []
    problems: list[Problem] = []
    extra: dict[str, dict[str, str]] = {}
    known = {path_col, grade_col, *(c for c in cols.values() if c is not None)}
    others = [h for h in header if h not in known]
    no_patient = 0

    def bad(row_no: int, file: str, message: str, fix: str) -> None:
        problem = Problem("error", f"{csv_path}:{row_no} ({file})", message, fix)
        if strict:
            raise KecaeError(f"{csv_path}, row {row_no}: {file}: {message}; {fix}")
        problems.append(problem)

    for row_no, row in enumerate(rows, start=2):  # row 1 is the header
        raw_path = (row.get(path_col) or "").strip()
        if not raw_path:
            bad(row_no, "<empty path>", "empty path", "fill in the path or delete the row")
            continue
        file = Path(raw_path).expanduser()
        file = (file if file.is_absolute() else root / file).resolve()
        grade = _parse_grade(row.get(grade_col))
        if grade is None:
            bad(
                row_no,
                raw_path,
                f"unknown KL grade {row.get(grade_col)!r}",
                "KL grades are integers 0-4: correct the grade or delete the row",
            )
            continue
        if not file.is_file():
            if file.exists():
                bad(
                    row_no,
                    raw_path,
                    f"not a regular file ({file})",
                    "list image files only: delete the row",
                )
            else:
                bad(
                    row_no,
                    raw_path,
                    f"file not found ({file})",
                    "fix the path (relative to the manifest's folder) or delete the row",
                )
            continue
        value = {k: (row.get(c) or "").strip() if c else "" for k, c in cols.items()}
        patient = value["patient_id"]
        if not patient:
            no_patient += 1
            patient = file.stem
        try:
            default_id = file.relative_to(root).with_suffix("").as_posix()
        except ValueError:  # an absolute path outside the manifest's folder
            default_id = file.with_suffix("").as_posix().lstrip("/")
        side, split = value["side"], value["split"]
        if others:
            extra[value["image_id"] or default_id] = {h: row.get(h) or "" for h in others}
        records.append(
            Record(
                path=file,
                grade=grade,
                split=normalise_split(split) if split else None,
                patient_id=patient,
                side=sides(side, f"{csv_path}:{row_no} ({raw_path})"),
                image_id=value["image_id"] or default_id,
            )
        )

    with_split = sum(r.split is not None for r in records)
    if 0 < with_split < len(records):
        message = f"{len(records) - with_split} rows have no split while {with_split} do"
        fix = "give every row a split (train/val/test), or leave the whole column empty"
        if strict:
            raise KecaeError(f"{csv_path}: {message}; {fix}")
        problems.append(Problem("error", str(csv_path), message, fix))
    if no_patient:
        problems.append(
            Problem(
                "warning",
                str(csv_path),
                f"{no_patient} rows without a patient id: each such image counts as its own "
                "patient",
                "add a patient_id column (or ID, subject_id) so splits stay patient-level",
            )
        )
    if not records and not problems:
        raise KecaeError(f"{csv_path}: the manifest lists no images; add rows (path, grade)")
    return Catalog(
        root=root,
        records=records,
        problems=problems,
        layout="manifest",
        manifest=csv_path,
        notes=[f"manifest columns read as: {', '.join(renamed)}"] if renamed else [],
        extra=extra,
    )


def _parse_grade(value) -> int | None:
    """An integer KL grade 0-4 from '2', '2.0', 'KL2'; None for anything else."""
    text = str(value or "").strip().lower().removeprefix("kl").strip("-_ ")
    try:
        number = float(text)
    except ValueError:
        return None
    if not number.is_integer() or int(number) not in KL_GRADES:
        return None
    return int(number)


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
