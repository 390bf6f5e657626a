"""`kecae report`: write the self-contained HTML report of a run folder."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def cmd_report(args: argparse.Namespace) -> int:
    from kecae.report import write_report

    path = write_report(args.run)
    print(path)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the HTML report of a run folder",
                       description="Write RUN/report.html: one self-contained page (figures "
                       "embedded, no network) with every number and figure the run folder "
                       "holds. Parts not computed yet are listed with the command that "
                       "computes them.")
    p.add_argument("--run", required=True, metavar="DIR",
                   help="run folder (metrics.json, kecae/log.csv, eval/*.npz, ...)")
    p.set_defaults(func=cmd_report)
