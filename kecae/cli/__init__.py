"""The `kecae` command line: parses arguments and calls the library. No logic lives here.

Each command has its module in this package (argparse only) with an ``add_parser(subparsers)``
function; options come from the command's configuration dataclass
(:func:`kecae.cli.options.add_options`), and the sub-command's handler is stored as ``func``. A
:class:`~kecae.errors.KecaeError` ends the command with its one-line message and exit status 2,
as does a full disk or a read-only file system met anywhere. The run folders a command locks
(:mod:`kecae.runlock`) are released when it ends.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys

from kecae import __version__, console, threads
from kecae.errors import KecaeError
from kecae.files import output_error
from kecae.runlock import lock_scope

#: Errors of a write that only the user can fix (space, quota, a read-only file system): every
#: command reports them in one line, wherever they happen.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})

#: Modules that register sub-commands, in the order they appear in ``kecae --help``.
COMMAND_MODULES = (
    "kecae.cli.phantoms",
    "kecae.cli.data",
    "kecae.cli.train",
    "kecae.cli.generate",
    "kecae.cli.evaluate",
    "kecae.cli.report",
    "kecae.cli.study",
    "kecae.cli.tune",
    "kecae.cli.reader_study",
    "kecae.cli.run",
)


def build_parser() -> argparse.ArgumentParser:
    """The ``kecae`` parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="kecae",
        description="Synthetic knee X-rays for early knee OA data augmentation (KECAE).",
    )
    parser.add_argument("--version", action="version", version=f"kecae {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--threads",
        dest="cpu_threads",
        type=int,
        metavar="N",
        help="CPU threads of torch (default: OMP_NUM_THREADS, else the idle cores, looked at "
        "again every second while training)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``kecae`` command line; returns the exit status."""

    parser = build_parser()
    args = parser.parse_args(argv)
    console.COMMAND_LINE = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        threads.configure(args.cpu_threads)  # before torch loads: OpenMP reads it once
        with lock_scope():  # the run folders the command locks are released when it ends
            result = args.func(args)
    except KecaeError as exc:
        print(f"kecae {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        # a full disk or a read-only file system met by a write that is not an atomic one
        print(
            f"kecae {args.command}: error: {output_error(exc.filename or '(unknown)', exc)}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(
            f"kecae {args.command}: interrupted; finished work is kept and a rerun resumes",
            file=sys.stderr,
        )
        return 130
    return int(result or 0)
