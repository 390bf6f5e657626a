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
    cache.set_defaults(func=run_cache)


def run_check(args: argparse.Namespace) -> int:
    from kecae.data.check import check_dataset

    report = check_dataset(args.path, patient_regex=args.patient_regex,
                           progress=not args.no_progress)
    print(report.format())
    if args.json:
        atomic_write_text(args.json, json.dumps(report.to_dict(), indent=2) + "\n")
    if not report.ok:
        first = report.errors[0]
        raise KecaeError(f"{len(report.errors)} fatal problem(s) in {report.root}; first: "
                         f"{first.file}: {first.message}; fix: {first.fix}")
    return 0


def run_cache(args: argparse.Namespace) -> int:
    from kecae.data.cache import load_image_set

    try:
        grades = tuple(int(g) for g in args.grades.split(","))
    except ValueError:
        raise KecaeError(f"--grades {args.grades!r}: give comma-separated KL grades, e.g. 0,2")
    images = load_image_set(args.path, size=args.size, split=args.split, grades=grades,
                            fit=args.fit, cache_dir=args.cache_dir)
    print(f"{len(images)} images of {images.size} x {images.size} px cached "
          f"({images.images.filename})")
    return 0
