"""What ``kecae data check`` finds in a catalog: each kind of problem (small or colour images, bad
splits, duplicates, patient leaks, a missing grade) and the notes on choices made for the user.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from kecae.data.readers import colour_share
from kecae.data.records import Catalog, Problem
from kecae.data.splits import ensure_splits, find_split_leaks

#: The split names kecae knows (``valid``, ``validation``, ``testing`` are read as these).
KNOWN_SPLITS = ("train", "val", "test", "auto_test")


#: The splits every training command needs.
NEEDED_SPLITS = ("train", "val", "test")


#: Below this side (px, the short side) an image is too small to show a knee joint: the check
#: warns even when it does not know the model's input size.
MIN_IMAGE_SIDE = 32


def split_order(s: str | None) -> tuple[int, str]:
    return ({"train": 0, "val": 1, "test": 2, "auto_test": 3}.get(s or "", 9), s or "")


def colour_problem(path: Path) -> Problem:
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


def grade_notes(catalog: Catalog, grades: tuple[int, int]) -> list[str]:
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


def size_note(sizes: Counter[tuple[int, int]] | dict, size: int) -> str:
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


def patients_per_split(catalog: Catalog, grades: tuple[int, int]) -> dict[str, int]:
    """Patients with an image of the two grades, per split (as training will assign them)."""
    if not catalog.records or (
        not catalog.has_splits and any(r.split is not None for r in catalog.records)
    ):
        return {}
    seen: dict[str, set[str]] = defaultdict(set)
    for r in ensure_splits(catalog).records:
        if r.grade in grades:
            seen[str(r.split)].add(r.patient_id)
    return {s: len(p) for s, p in sorted(seen.items(), key=lambda kv: split_order(kv[0]))}


def small_image_problems(small: list[tuple[int, int, str]], size: int | None) -> list[Problem]:
    """One warning for the images under the model's input side (or :data:`MIN_IMAGE_SIDE`)."""
    if not small:
        return []
    short, long, first = min(small)
    more = f" and {len(small) - 1} more" if len(small) > 1 else ""
    if size is not None:
        message = (
            f"{len(small)} image(s) smaller than the model input of {size} px on their short "
            f"side (the smallest {short} x {long} px): they are upscaled (blurred)"
        )
        fix = "use a smaller --image-size, or larger images"
    else:
        message = (
            f"{len(small)} image(s) under {MIN_IMAGE_SIDE} px on their short side (the "
            f"smallest {short} x {long} px): too small to show a knee joint; they are upscaled"
        )
        fix = "check that these are radiographs (not thumbnails or icons), or remove them"
    return [Problem("warning", first + more, message, fix)]


def split_problems(catalog: Catalog) -> list[Problem]:
    """Split names kecae does not know, and a split column (or split folders) without one of
    train, val and test: training would stop later on the missing split."""
    if not catalog.has_splits:
        return []  # none (kecae assigns them) or half-filled (reported by the catalog)
    where = str(catalog.manifest or catalog.root)
    counts = Counter(r.split for r in catalog.records)
    problems = [
        Problem(
            "error",
            where,
            f"unknown split {name!r} ({n} image(s)): kecae's splits are train, val and test "
            "(also auto_test, a second test set)",
            "rename it to train, val or test (valid, validation and testing are read as val "
            "and test), or leave the whole split column empty to let kecae assign them",
        )
        for name, n in sorted(counts.items(), key=lambda kv: str(kv[0]))
        if name not in KNOWN_SPLITS
    ]
    for name in NEEDED_SPLITS:
        if name not in counts:
            how = (
                ", or leave the whole split column empty (kecae then assigns 70/15/15 by patient)"
                if catalog.manifest
                else f" (a {name}/ folder)"
            )
            problems.append(
                Problem(
                    "error",
                    where,
                    f"no {name!r} split: kecae trains on train, selects on val and tests on "
                    f"test, and the splits given are {sorted(map(str, counts))}",
                    f"give some patients the split {name!r}{how}",
                )
            )
    return problems


def duplicate_problems(by_hash: dict[str, list]) -> list[Problem]:
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
                    can_accept=True,
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
                    can_accept=True,
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


def leak_problems(catalog: Catalog) -> list[Problem]:
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
                can_accept=True,
            )
        )
    return problems


def empty_class_problems(catalog: Catalog, grades: tuple[int, ...]) -> list[Problem]:
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
