"""`kecae run` (the whole job on your data) and `kecae demo` (the same on built-in phantoms)."""

from __future__ import annotations

import argparse

from kecae.cli.options import add_options, from_args
from kecae.pipeline import DEMO_HIDES, DemoConfig, RunConfig, run_demo, run_pipeline


def cmd_run(args: argparse.Namespace) -> int:

    run_pipeline(from_args(RunConfig, args))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:

    run_demo(from_args(DemoConfig, args))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="the whole job on your data: classifiers, KECAE, images, evaluation, report",
        description="data check, supervisor, independent judge, KECAE, "
        "generation, evaluation and report on your data set, in one run folder. "
        "Finished steps are reused, an interrupted run resumes; a rerun with "
        "other settings is refused (--fresh starts a new folder).",
    )
    add_options(p, RunConfig)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser(
        "demo",
        help="the whole job on built-in phantoms (make demo)",
        description="The whole job on built-in phantoms: data check, supervisor, "
        "independent judge, KECAE, generation, evaluation and report, each step "
        'reused when done. Scale it up with the options (make demo ARGS="--kecae-'
        'steps 20000 --kl0 3185 --kl2 2126").',
    )
    add_options(p, DemoConfig, exclude=DEMO_HIDES)
    p.set_defaults(func=cmd_demo)
