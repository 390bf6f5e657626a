"""`kecae phantoms OUT`: write the built-in synthetic knee radiograph data set."""

from __future__ import annotations

import argparse
import math
import os
import sys


def _splits(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(v) for v in text.split(","))
    except ValueError:
        parts = ()
    if (len(parts) != 3 or not all(math.isfinite(p) and p >= 0 for p in parts)
            or abs(sum(parts) - 1.0) > 1e-6):
        raise argparse.ArgumentTypeError(
            f"expected three finite fractions >= 0 summing to 1, like 0.7,0.15,0.15, got {text!r}")
    return parts  # type: ignore[return-value]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "phantoms", help="write synthetic knee X-rays (KL-0 / KL-2) with ground truth",
        description="Write synthetic AP knee radiographs as OUT/<split>/<grade>/<id>.png plus "
                    "OUT/ground_truth.csv (a kecae manifest with joint-space widths, osteophytes "
                    "and every rendering parameter). Same arguments give identical files; "
                    "rerunning resumes an interrupted run.")
    p.add_argument("out", metavar="OUT", help="output folder (new, empty, or an earlier run)")
    p.add_argument("--kl0", type=int, default=3185, help="number of KL-0 knees (default: 3185)")
    p.add_argument("--kl2", type=int, default=2126, help="number of KL-2 knees (default: 2126)")
    p.add_argument("--kl1", type=int, default=0, help="number of KL-1 knees (default: 0)")
    p.add_argument("--kl3", type=int, default=0, help="number of KL-3 knees (default: 0)")
    p.add_argument("--kl4", type=int, default=0, help="number of KL-4 knees (default: 0)")
    p.add_argument("--size", type=int, default=224, help="image side in pixels (default: 224)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--splits", type=_splits, default=(0.7, 0.15, 0.15),
                   help="train,val,test patient fractions (default: 0.7,0.15,0.15)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="worker processes; the output is byte-identical for any number "
                   "(default: the CPU count, at most 4)")
    p.add_argument("--noise-free", action="store_true", help="leave out the quantum noise")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kecae.configargs import check_value
    from kecae.phantoms.dataset import make_phantoms
    from kecae.utils import KecaeError

    for name in ("kl0", "kl1", "kl2", "kl3", "kl4"):
        if getattr(args, name) < 0:
            raise KecaeError(f"--{name} {getattr(args, name)}: must be a whole number >= 0")
    check_value("seed", args.seed)
    check_value("size", args.size)
    check_value("workers", args.workers)
    try:
        csv_path = make_phantoms(args.out, n_kl0=args.kl0, n_kl2=args.kl2, size=args.size,
                                 seed=args.seed, splits=args.splits, workers=args.workers,
                                 noise_free=args.noise_free, n_kl1=args.kl1, n_kl3=args.kl3,
                                 n_kl4=args.kl4, progress=not args.no_progress)
    except ValueError as exc:  # bad option values: say which and how to fix, no traceback
        print(f"kecae phantoms: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {csv_path}")
    return 0
