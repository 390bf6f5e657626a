"""A folder-per-grade data set read into a catalog: grade folders, patient IDs from file names
(the patient regex, checked against the names and suggested when it does not fit), sides.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from kecae.data.readers import is_image_file
from kecae.data.records import KL_GRADES, SPLIT_ALIASES, Catalog, Problem, Record, SideMap, nonzero
from kecae.errors import KecaeError

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


def load_folders(root: Path, strict: bool, regex: re.Pattern | None, sides: SideMap) -> Catalog:
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
        root=root, records=records, skipped=nonzero(skipped), problems=problems, layout="folders"
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
