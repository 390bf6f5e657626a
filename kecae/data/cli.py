"""``kecae data check PATH`` and ``kecae data cache PATH``: thin wrappers over kecae.data."""

from __future__ import annotations

import argparse
import json

from kecae.utils import KecaeError, atomic_write_text


def add_parser(subparsers) -> None:
    """Register the ``data`` sub-command and its actions."""
    parser = subparsers.add_parser(
        "data", help="inspect and cache a data set of knee X-rays",
        description="Inspect a data set (folder per grade or CSV manifest) or pre-build its cache.")
    parser.set_defaults(func=lambda args: parser.print_help() or 1)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    check = actions.add_parser(
        "check", help="report counts, image sizes and every problem; modifies nothing",
        description="Read every image and report counts per split and grade, image sizes and "
                    "problems. Exits 2 when a problem is fatal.")
    check.add_argument("path", help="data folder (grade folders or manifest.csv) or a .csv file")
    check.add_argument("--patient-regex", metavar="REGEX",
                       help="folder layout: regex with a named group 'patient' (and optional "
                            "'side') applied to file names, "
                            "e.g. '(?P<patient>\\d{7})(?P<side>[LR])'")
    check.add_argument("--grades", default="0,2", metavar="A,B",
                       help="the two KL grades the task compares: a split without one of them "
                            "is an error (default 0,2)")
    check.add_argument("--size", type=int, metavar="PX",
                       help="the model's input side: smaller images are reported (upscaled)")
    check.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    check.add_argument("--no-progress", action="store_true", help="no progress bar")
    check.set_defaults(func=run_check)

    cache = actions.add_parser(
        "cache", help="decode and preprocess images into the cache (e.g. before multi-GPU runs)",
        description="Build the preprocessed-image cache of one split so later runs start at once.")
    cache.add_argument("path", help="data folder or .csv manifest")
    cache.add_argument("--size", type=int, default=299, help="image side in pixels (paper: 299)")
    cache.add_argument("--split", default=None, help="train / val / test (default: all images)")
    cache.add_argument("--grades", default="0,2", help="comma-separated KL grades (default 0,2)")
    cache.add_argument("--fit", choices=("crop", "pad", "pad-edge"), default="crop",
                       help="make images square by centre crop or padding")
    cache.add_argument("--cache-dir", default=None, help="default: <data>/.kecae_cache")
    cache.add_argument("--patient-regex", metavar="REGEX",
                       help="folder layout without split folders: the patients that the "
                            "patient-level splits keep together (as for data check)")
    cache.set_defaults(func=run_cache)


def parse_grades(text: str, option: str = "--grades") -> tuple[int, ...]:
    """``"0,2"`` -> (0, 2): distinct KL grades 0-4, or a :class:`KecaeError` with an example."""
    try:
        grades = tuple(int(g) for g in text.split(","))
    except ValueError:
        grades = ()
    if not grades or len(set(grades)) != len(grades) or not all(0 <= g <= 4 for g in grades):
        raise KecaeError(f"{option} {text!r}: give distinct comma-separated KL grades 0-4, "
                         "e.g. 0,2")
    return grades


def run_check(args: argparse.Namespace) -> int:
    from kecae.configargs import check_value
    from kecae.data.check import check_dataset

    grades = parse_grades(args.grades)
    if len(grades) != 2:
        raise KecaeError(f"--grades {args.grades!r}: give the two KL grades the task compares, "
                         "healthy first, e.g. 0,2")
    if args.size is not None:
        check_value("size", args.size)
    report = check_dataset(args.path, patient_regex=args.patient_regex, grades=grades,
                           size=args.size, progress=not args.no_progress)
    print(report.format())
    if args.json:
        atomic_write_text(args.json, json.dumps(report.to_dict(), indent=2) + "\n")
    if not report.ok:
        first = report.errors[0]
        raise KecaeError(f"{len(report.errors)} fatal problem(s) in {report.root}; first: "
                         f"{first.file}: {first.message}; fix: {first.fix}")
    return 0


def run_cache(args: argparse.Namespace) -> int:
    from kecae.configargs import check_value
    from kecae.data.cache import load_image_set

    grades = parse_grades(args.grades)
    check_value("size", args.size)
    images = load_image_set(args.path, size=args.size, split=args.split, grades=grades,
                            fit=args.fit, cache_dir=args.cache_dir,
                            patient_regex=args.patient_regex)
    print(f"{len(images)} images of {images.size} x {images.size} px cached "
          f"({images.images.filename})")
    return 0
