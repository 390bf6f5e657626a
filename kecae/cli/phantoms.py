"""`kecae phantoms OUT`: write the built-in synthetic knee radiograph data set."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass

from kecae.cli.options import add_options, from_args
from kecae.config import Range, setting
from kecae.errors import KecaeError
from kecae.files import writable_folder

# The phantom renderer (SciPy) is imported when the command runs: kept out of
# `kecae --help`, which imports this module for its options.


def parse_splits(text: str) -> list[float]:
    """``0.7,0.15,0.15`` -> three finite fractions >= 0 that sum to 1 (an argparse error else)."""
    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError:
        parts = []
    if (
        len(parts) != 3
        or not all(math.isfinite(p) and p >= 0 for p in parts)
        or abs(sum(parts) - 1.0) > 1e-6
    ):
        raise argparse.ArgumentTypeError(
            f"expected three finite fractions >= 0 summing to 1, like 0.7,0.15,0.15, got {text!r}"
        )
    return parts


_COUNT: Range = (0, math.inf, True, "a whole number >= 0")


@dataclass
class PhantomsConfig:
    """A phantom data set: how many knees of each grade, at which size, from which seed."""

    out: str = setting(
        "", positional=True, metavar="OUT"
    )  # output folder (new, empty, or an earlier run)
    kl0: int = setting(3185, range=_COUNT)  # number of KL-0 knees
    kl2: int = setting(2126, range=_COUNT)  # number of KL-2 knees
    kl1: int = setting(0, range=_COUNT)  # number of KL-1 knees
    kl3: int = setting(0, range=_COUNT)  # number of KL-3 knees
    kl4: int = setting(0, range=_COUNT)  # number of KL-4 knees
    size: int = 224  # image side in pixels
    seed: int = 0  # random seed
    splits: list[float] = setting(
        factory=lambda: [0.7, 0.15, 0.15], parse=parse_splits, metavar="TRAIN,VAL,TEST"
    )  # patient fractions per split
    workers: int = setting(
        factory=lambda: min(4, os.cpu_count() or 1)
    )  # processes (same output for any)
    noise_free: bool = False  # leave out the quantum noise
    site_bias: float | None = setting(
        None, range=(0, 1, True, "a probability in [0, 1], e.g. 0.85")
    )  # sites with a marker, grade-correlated in train/val (e.g. 0.85)
    progress: bool = True  # progress bar


def run(args: argparse.Namespace) -> int:
    from kecae.phantoms.dataset import make_phantoms

    cfg = from_args(PhantomsConfig, args)
    writable_folder(cfg.out, "OUT")
    try:
        csv_path = make_phantoms(
            cfg.out,
            n_kl0=cfg.kl0,
            n_kl2=cfg.kl2,
            size=cfg.size,
            seed=cfg.seed,
            splits=tuple(cfg.splits),
            workers=cfg.workers,
            noise_free=cfg.noise_free,
            n_kl1=cfg.kl1,
            n_kl3=cfg.kl3,
            n_kl4=cfg.kl4,
            site_bias=cfg.site_bias,
            progress=cfg.progress,
        )
    except ValueError as exc:  # bad option values: say which and how to fix, no traceback
        raise KecaeError(str(exc)) from exc
    print(f"wrote {csv_path}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "phantoms",
        help="write synthetic knee X-rays (KL-0 / KL-2) with ground truth",
        description="Write synthetic AP knee radiographs as OUT/<split>/<grade>/<id>.png plus "
        "OUT/ground_truth.csv (a kecae manifest with joint-space widths, osteophytes "
        "and every rendering parameter). Same arguments give identical files; "
        "rerunning resumes an interrupted run.",
    )
    add_options(p, PhantomsConfig)
    p.set_defaults(func=run)
