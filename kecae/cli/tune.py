"""`kecae tune --run DIR`: parse, build the config, run (or continue) the Optuna study
(:mod:`kecae.studies.tune`), print the trials and the final comparison."""

from __future__ import annotations

import argparse
from typing import Any

from kecae.cli.options import add_options, from_args
from kecae.studies.tune import TuneConfig, run_tune
from kecae.studies.tune_table import format_tune


def cmd_tune(args: argparse.Namespace) -> int:

    cfg = from_args(TuneConfig, args)
    print(format_tune(run_tune(cfg)))
    print(
        f"written {cfg.run}/metrics.json (section 'tune'); trials and the Optuna storage in "
        f"{cfg.run}/studies/tune/ (a rerun continues the study); HTML: kecae report --run "
        f"{cfg.run}"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p: Any = sub.add_parser(
        "tune",
        help="search λ1, λ2, lr and the exchange options with Optuna (TPE)",
        description="Train one KECAE per trial with the run's recipe and the trial's settings "
        "(λ1, λ2, lr and the exchange options of --param) for the same steps, score it on "
        "validation pairs (the mean of the judge's agreement with the donor both ways, key "
        "transfer both ways, non-key SSIM, plausibility ratio and hK-minus-hN separability), "
        "let Optuna's seeded TPE sampler pick the next; then train and test the best trial "
        "against the paper's λ and the run's own settings on the test split. The study is "
        "stored in RUN/studies/tune/optuna.sqlite3: a rerun continues it.",
    )
    add_options(p, TuneConfig)
    p.set_defaults(func=cmd_tune)
