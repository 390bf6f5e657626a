"""What a catalog is made of: one :class:`Record` per image, the :class:`Problem` list, the
:class:`Catalog`, the split names it accepts and the side map that reads L/R values.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from kecae.errors import KecaeError

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


def format_side_map(side_map: dict[str, str]) -> str:
    """``{"1": "R", "2": "L"}`` -> ``"--side-map 1=R --side-map 2=L"``, as the option is given."""
    return " ".join(f"--side-map {k}={v}" for k, v in side_map.items())


class SideMap:
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


def nonzero(counter: Counter) -> dict[str, int]:
    return {k: v for k, v in sorted(counter.items()) if v}
