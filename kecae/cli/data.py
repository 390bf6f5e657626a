"""`kecae data check PATH` and `kecae data cache PATH`: thin wrappers over :mod:`kecae.data`."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass

from kecae.cli.options import add_options, from_args
from kecae.config import setting
from kecae.data.cache import load_image_set
from kecae.data.check import check_dataset
from kecae.errors import KecaeError
from kecae.files import atomic_write_text, writable_file


@dataclass
class DataCheckConfig:
    """`kecae data check`: every problem of a data set; nothing is modified."""

    path: str = setting(
        "", positional=True
    )  # data folder (grade folders or manifest.csv) or a .csv
    patient_regex: str | None = setting(
        None, metavar="REGEX"
    )  # e.g. '(?P<patient>\d{7})_(?P<side>[12])' for 9003175_1.png
    side_map: dict[str, str] = setting(
        factory=dict, metavar="VALUE=L|R"
    )  # side values other than L, R, left, right, 1 (= R) and 2 (= L)
    grades: list[int] = setting(
        factory=lambda: [0, 2], flag="--grades", metavar="G"
    )  # the two KL grades compared, e.g. 0 2 or 0 1
    size: int | None = setting(
        None, metavar="PX"
    )  # the model's input side: smaller images are reported
    max_pixels: int | None = setting(
        None, metavar="N", range=(1, math.inf, True, "a whole number of pixels >= 1")
    )  # refuse larger images from their header (default: KECAE_MAX_IMAGE_PIXELS or 50000000)
    json: str | None = setting(None, metavar="FILE")  # also write the report as JSON to FILE
    progress: bool = True  # progress bar


@dataclass
class DataCacheConfig:
    """`kecae data cache`: one split decoded and preprocessed into the cache."""

    path: str = setting("", positional=True)  # data folder or .csv manifest
    size: int = 299  # image side in pixels (paper: 299)
    split: str | None = None  # train / val / test (default: all images)
    grades: list[int] = setting(factory=lambda: [0, 2], flag="--grades", metavar="G")  # KL grades
    fit: str = setting(
        "crop", choices=("crop", "pad", "pad-edge")
    )  # square by centre crop or padding
    cache_dir: str | None = None  # default: <data>/.kecae_cache
    patient_regex: str | None = setting(
        None, metavar="REGEX"
    )  # folder layout: the patients splits keep together
    side_map: dict[str, str] = setting(
        factory=dict, metavar="VALUE=L|R"
    )  # side values other than L, R, left, right, 1 (= R) and 2 (= L)


def run_check(args: argparse.Namespace) -> int:

    cfg = from_args(DataCheckConfig, args)
    if cfg.json:
        writable_file(cfg.json, "--json")  # before the check, which may take minutes
    report = check_dataset(
        cfg.path,
        patient_regex=cfg.patient_regex,
        side_map=cfg.side_map,
        grades=tuple(cfg.grades),
        size=cfg.size,
        progress=cfg.progress,
        max_pixels=cfg.max_pixels,
    )
    print(report.format())
    if cfg.json:
        atomic_write_text(cfg.json, json.dumps(report.to_dict(), indent=2) + "\n")
    if not report.ok:
        first = report.errors[0]
        raise KecaeError(
            f"{len(report.errors)} fatal problem(s) in {report.root}; first: "
            f"{first.file}: {first.message}; fix: {first.fix}"
        )
    return 0


def run_cache(args: argparse.Namespace) -> int:

    cfg = from_args(DataCacheConfig, args)
    images = load_image_set(
        cfg.path,
        size=cfg.size,
        split=cfg.split,
        grades=cfg.grades,
        fit=cfg.fit,
        cache_dir=cfg.cache_dir,
        patient_regex=cfg.patient_regex,
        side_map=cfg.side_map,
    )
    print(
        f"{len(images)} images of {images.size} x {images.size} px cached "
        f"({getattr(images.images, 'filename', '')})"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``data`` sub-command and its actions."""
    parser = sub.add_parser(
        "data",
        help="inspect and cache a data set of knee X-rays",
        description="Inspect a data set (folder per grade or CSV manifest) or pre-build its cache.",
    )
    parser.set_defaults(func=lambda args: parser.print_help() or 1)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    check = actions.add_parser(
        "check",
        help="report counts, image sizes and every problem; modifies nothing",
        description="Read every image and report counts per split and grade, image sizes and "
        "problems. Exits 2 when a problem is fatal.",
    )
    add_options(check, DataCheckConfig)
    check.set_defaults(func=run_check)

    cache = actions.add_parser(
        "cache",
        help="decode and preprocess images into the cache (e.g. before multi-GPU runs)",
        description="Build the preprocessed-image cache of one split so later runs start at once.",
    )
    add_options(cache, DataCacheConfig)
    cache.set_defaults(func=run_cache)
