"""A manifest (CSV) data set read into a catalog: the columns and their synonyms, grades, sides
and splits row by row, every bad row a problem naming it.
"""

from __future__ import annotations

import csv
from pathlib import Path

from kecae.data.records import KL_GRADES, Catalog, Problem, Record, SideMap, normalise_split
from kecae.errors import KecaeError

#: Manifest column names (lower case) read as each field, in order of preference.
COLUMN_SYNONYMS: dict[str, tuple[str, ...]] = {
    "path": ("path", "file", "filename", "file_name", "filepath", "file_path", "image_path"),
    "grade": ("grade", "kl", "kl_grade", "klgrade", "kl_score", "klg", "xrkl"),
    "patient_id": ("patient_id", "patient", "patientid", "id", "subject_id", "subject", "pid"),
    "side": ("side", "laterality", "knee_side", "knee"),
    "split": ("split", "subset", "partition"),
    "image_id": ("image_id",),
}


# ---------------------------------------------------------------- CSV manifest


def _find_column(header: list[str], names: tuple[str, ...]) -> str | None:
    lower = {h.strip().lower(): h for h in header}
    return next((lower[n] for n in names if n in lower), None)


def load_manifest(csv_path: Path, strict: bool, sides: SideMap) -> Catalog:
    root = csv_path.parent
    rows, header, path_col, grade_col, cols, renamed = _columns(csv_path)

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

    problems += _manifest_problems(csv_path, records, no_patient, strict)
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


def _columns(
    csv_path: Path,
) -> tuple[list[dict[str, str]], list[str], str, str, dict[str, str | None], list[str]]:
    """The manifest's rows and header, its path and grade columns, the other known columns
    (``None`` when absent) and the columns read under another name (``"ID -> patient_id"``)."""
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
    return rows, header, path_col, grade_col, cols, renamed


def _manifest_problems(
    csv_path: Path, records: list[Record], no_patient: int, strict: bool
) -> list[Problem]:
    """Problems of the manifest as a whole: a split column filled in part, rows without a
    patient id."""
    problems: list[Problem] = []
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
    return problems


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
