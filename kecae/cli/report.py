"""`kecae report --run DIR`: write the self-contained HTML report of a run folder."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from kecae.cli.options import add_options, from_args
from kecae.config import setting
from kecae.console import run_console
from kecae.report import write_report


@dataclass
class ReportConfig:
    """The report of one run folder."""

    run: str = setting(
        "", required=True, metavar="DIR"
    )  # run folder (metrics.json, kecae/log.csv, eval/*.npz, ...)


def cmd_report(args: argparse.Namespace) -> int:

    cfg = from_args(ReportConfig, args)
    with run_console(cfg.run):
        print(write_report(cfg.run))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write the HTML report of a run folder",
        description="Write RUN/report.html: one self-contained page (figures "
        "embedded, no network) with every number and figure the run folder "
        "holds. Parts not computed yet are listed with the command that "
        "computes them.",
    )
    add_options(p, ReportConfig, config_file=False)
    p.set_defaults(func=cmd_report)
