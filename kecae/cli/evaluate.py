"""`kecae evaluate --run DIR`: every number about a trained KECAE, into DIR/metrics.json.

On a run folder the defaults are the run's own settings; other settings write beside the run's
numbers, and a rerun with nothing changed re-uses them (:mod:`kecae.evaluation.rerun`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kecae.cli.options import add_options, from_args
from kecae.console import run_console
from kecae.errors import KecaeError
from kecae.evaluation.config import EvaluateConfig
from kecae.evaluation.summary import format_headline
from kecae.runfolder import RunLayout

# The evaluation (SciPy, scikit-learn, scikit-image) is imported when the command runs: kept out of
# `kecae --help`, which imports this module for its options.


def cmd_evaluate(args: argparse.Namespace) -> int:
    from kecae.evaluation.rerun import run_defaults

    if not args.run:
        raise KecaeError("--run DIR is required")
    layout = RunLayout(args.run)
    if not layout.root.is_dir():
        raise KecaeError(
            f"--run {args.run}: no such folder; pass the folder `kecae run --out` or "
            "`kecae demo --out` wrote"
        )
    cfg = from_args(EvaluateConfig, args, base=run_defaults(layout.root))
    with run_console(layout.root):
        return _evaluate(cfg)


def _evaluate(cfg: EvaluateConfig) -> int:
    from kecae.evaluation.rerun import evaluate_run

    metrics, where, reused = evaluate_run(cfg)
    path = Path(where) / "metrics.json"
    if reused:
        print(f"{path} already holds the evaluation of these settings and checkpoints: re-used")
    elif Path(where).resolve() != Path(cfg.run).resolve():
        print(
            f"these settings differ from the run's own evaluation ({cfg.run}/metrics.json, "
            f"kept): written to {path}"
        )
    else:
        print(f"metrics written to {path}")
    sup = RunLayout(cfg.run).supervisor.metrics
    print(format_headline(metrics, json.loads(sup.read_text()) if sup.is_file() else None))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="measure a trained KECAE run (metrics.json)",
        description="Separability of the latents, exchange success judged by an "
        "independent classifier, ground-truth fidelity on phantoms, image quality. On a "
        "`kecae run` folder the defaults are the run's own settings (its test pairs, seed and "
        "device); other settings are written beside, to RUN/evaluations/<what differs>/, and "
        "a rerun with nothing changed re-uses RUN/metrics.json.",
    )
    add_options(p, EvaluateConfig)
    p.set_defaults(func=cmd_evaluate)
