"""`kecae evaluate --run DIR`: every number about a trained KECAE, into DIR/metrics.json."""

from __future__ import annotations

import argparse

from kecae.config import add_options, from_args
from kecae.errors import KecaeError
from kecae.evaluation.config import EvaluateConfig


def cmd_evaluate(args: argparse.Namespace) -> int:
    from kecae.evaluation.evaluate import evaluate
    from kecae.evaluation.summary import format_headline

    cfg = from_args(EvaluateConfig, args)
    if not cfg.run:
        raise KecaeError("--run DIR is required")
    m = evaluate(cfg)
    print(f"metrics written to {cfg.run}/metrics.json\n" + format_headline(m))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="measure a trained KECAE run (metrics.json)",
        description="Separability of the latents, exchange success judged by an "
        "independent classifier, ground-truth fidelity on phantoms, image quality.",
    )
    add_options(p, EvaluateConfig)
    p.set_defaults(func=cmd_evaluate)
