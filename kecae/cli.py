"""The `kecae` command line: parses arguments and calls the library. No logic lives here.

Each part of the package contributes its sub-commands through an ``add_parser(subparsers)``
function in its own ``cli`` module; the sub-command's handler is stored as ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from kecae import __version__
from kecae.utils import KecaeError

#: Modules that register sub-commands, in the order they appear in ``kecae --help``.
COMMAND_MODULES = (
    "kecae.phantoms.cli",
    "kecae.data.cli",
    "kecae.training.cli",
    "kecae.generation_cli",
    "kecae.evaluation.cli",
    "kecae.report_cli",
    "kecae.studies_cli",
    "kecae.reader_study.cli",
    "kecae.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kecae",
        description="Synthetic knee X-rays for early knee OA data augmentation (KECAE).",
    )
    parser.add_argument("--version", action="version", version=f"kecae {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        result = args.func(args)
    except KecaeError as exc:
        print(f"kecae {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kecae {args.command}: interrupted; finished work is kept and a rerun resumes",
              file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
