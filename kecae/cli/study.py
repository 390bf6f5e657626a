"""`kecae study downstream|sampling|lambda-grid|ablation --run DIR`: parse, build the config,
call the study (:mod:`kecae.studies`), print a compact table. Each study writes its section of
DIR/metrics.json and resumes from its finished sub-runs under DIR/studies/<name>/."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from kecae.cli.options import add_options, from_args
from kecae.results import Downstream, DownstreamShortcut, Robustness
from kecae.studies.ablation import AblationConfig, format_ablation, run_ablation
from kecae.studies.downstream import DownstreamConfig, format_downstream, run_downstream
from kecae.studies.lambda_grid import LambdaGridConfig, format_lambda_grid, run_lambda_grid
from kecae.studies.robustness import RobustnessConfig, format_robustness, run_robustness
from kecae.studies.sampling import SamplingConfig, format_sampling, run_sampling


def _done(run: str, name: str, table: str) -> int:
    print(table)
    print(
        f"written {run}/metrics.json (section '{name}'); sub-runs in {run}/studies/; HTML: "
        f"kecae report --run {run}"
    )
    return 0


#: Exit status of a study that --max-minutes stopped before it finished (rerun to continue).
STOPPED = 75


def cmd_downstream(args: argparse.Namespace) -> int:

    cfg = from_args(DownstreamConfig, args)
    section = run_downstream(cfg)
    if section is None and cfg.finished_only:
        print("--finished-only: no classifier has 2 finished seeds of every row yet")
        return STOPPED
    if section is None:
        print(
            f"stopped after --max-minutes {cfg.max_minutes:g}; finished sub-runs are kept: run "
            "the same command again to continue"
        )
        return STOPPED
    kind = DownstreamShortcut if cfg.site_bias is not None else Downstream
    return _done(cfg.run, kind.NAME, format_downstream(section, kind))


def cmd_sampling(args: argparse.Namespace) -> int:

    cfg = from_args(SamplingConfig, args)
    return _done(cfg.run, "sampling_size", format_sampling(run_sampling(cfg)))


def cmd_lambda_grid(args: argparse.Namespace) -> int:

    cfg = from_args(LambdaGridConfig, args)
    return _done(cfg.run, "lambda_grid", format_lambda_grid(run_lambda_grid(cfg)))


def cmd_ablation(args: argparse.Namespace) -> int:

    cfg = from_args(AblationConfig, args)
    section = run_ablation(cfg)
    print(format_ablation(section))
    print(
        f"written {cfg.run}/metrics.json (section 'ablation') and "
        f"{cfg.run}/studies/ablation/table.md; HTML: kecae report --run {cfg.run}"
    )
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:

    cfg = from_args(RobustnessConfig, args)
    section = run_robustness(cfg)
    if section is None:
        print(
            f"stopped after --max-minutes {cfg.max_minutes:g}; finished sub-runs are kept: run "
            "the same command again to continue"
        )
        return STOPPED
    return _done(cfg.run, Robustness.NAME, format_robustness(section))


#: name -> (config, handler, one-line help, description), in ``kecae study --help`` order.
STUDIES: dict[str, tuple[type, Callable[[argparse.Namespace], int], str, str]] = {
    "downstream": (
        DownstreamConfig,
        cmd_downstream,
        "Table II at training fractions: T, T+classic, T+mixup, T+CutMix, T', T'+classic, "
        "the label check and options, every row to one step budget",
        "For each --train-fraction, cut the real training split to that share of its patients "
        "(stratified, seeded; validation and test whole), train the supervisor and KECAE with "
        "the run's recipe on that subsample alone (fraction 1.0 reuses the run's own when the "
        "settings match) and generate images from it; then train each --arch from scratch on "
        "every row, --seeds times, each row of a fraction for the same number of optimiser "
        "steps with the best validation checkpoint kept, generated images drawn into the same "
        "batches. Reports mean ± std, and per seed the paired difference against T and "
        "T+classic with its 95 % interval, p-value and the smallest detectable effect. "
        "--site-bias 0.85 runs it in the shortcut regime; --quick runs a small version; "
        "--max-minutes stops between sub-runs (exit status 75; rerun to continue).",
    ),
    "sampling": (
        SamplingConfig,
        cmd_sampling,
        "accuracy against generated pairs N (Fig. 5)",
        "Generate the largest N pairs once with the run's KECAE (or reuse a finished folder of "
        "the same checkpoint), then train --arch on T plus the first N pairs for each --sizes N, "
        "--seeds times.",
    ),
    "lambda-grid": (
        LambdaGridConfig,
        cmd_lambda_grid,
        "SVM separability over λ1 × λ2 (Fig. 3)",
        "Train one KECAE per (λ1, λ2) with the run's data, supervisor and preset, then SVM-RBF "
        "5-fold accuracy on hK and hN of test images.",
    ),
    "ablation": (
        AblationConfig,
        cmd_ablation,
        "which KECAE options make the exchange work",
        "Train one KECAE per row of options (--row NAME, repeated; default: every row) on the "
        "run's data, supervisor and judge with one budget, evaluate each with the fair metrics, "
        "give the best rows more seeds, and write the table (metrics.json section 'ablation', "
        "RUN/studies/ablation/table.md).",
    ),
    "robustness": (
        RobustnessConfig,
        cmd_robustness,
        "the run's recipe trained afresh per seed: every metric as mean ± std and worst seed",
        "For each of --seeds seeds, train a supervisor, an independent judge and KECAE with the "
        "run's recipe and budget (their config.yaml; only the seed differs; the run's own seed "
        "reuses the run's models), generate the run's number of pairs and evaluate on the same "
        "test pairs; then every target and metric as mean ± std over the seeds beside its worst "
        "seed. --max-minutes stops between sub-runs (exit status 75; rerun to continue).",
    ),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    study = sub.add_parser(
        "study",
        help="augmentation studies: Table II at training fractions, Fig. 5, Fig. 3, ablation",
        description="Does KECAE help a classifier? Each study trains its "
        "sub-runs under RUN/studies/<name>/ (a rerun reuses finished ones) and "
        "writes its section of RUN/metrics.json, which `kecae report` shows.",
    )
    kinds = study.add_subparsers(dest="study", metavar="STUDY", required=True)
    for name, (config, handler, help_text, description) in STUDIES.items():
        p: Any = kinds.add_parser(name, help=help_text, description=description)
        add_options(p, config, exclude=getattr(config, "cli_exclude", ()))
        p.set_defaults(func=handler)
