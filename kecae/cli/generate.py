"""`kecae generate`: key-exchanged images from a trained checkpoint."""

from __future__ import annotations

import argparse

from kecae.cli.options import add_options, from_args
from kecae.console import run_console
from kecae.generation import GenerateConfig, generate


def cmd_generate(args: argparse.Namespace) -> int:

    cfg = from_args(GenerateConfig, args)
    with run_console(cfg.checkpoint):
        s = generate(cfg)
    rate = f", {s['images_per_s']:.0f} images/s" if s["images_per_s"] else ""
    print(
        f"{s['images']} images for {cfg.pairs} pairs in {cfg.out} ({s['written_pairs']} pairs "
        f"new, {s['skipped_pairs']} already there{rate}); manifest {cfg.out}/manifest.csv"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="write key-exchanged images X'1 / X'2",
        description="Write X'1 (KL-0 knee with KL-2 key features, label KL-2) and "
        "X'2 (the reverse, label KL-0) for N pairs of the train split, in the "
        "public layout DIR/<grade>/*.png with DIR/manifest.csv. Resumable.",
    )
    add_options(p, GenerateConfig)
    p.set_defaults(func=cmd_generate)
