"""`kecae reader-study prepare|serve|analyze`: parse, call :mod:`kecae.reader_study`, print."""

from __future__ import annotations

import argparse

from kecae.cli.options import add_options, from_args
from kecae.metrics_file import write_section
from kecae.reader_study.analyze import analyze_study
from kecae.reader_study.config import AnalyzeConfig, PrepareConfig, ServeConfig
from kecae.reader_study.prepare import prepare_study
from kecae.reader_study.server import serve
from kecae.reader_study.table import format_table, write_outputs


def cmd_prepare(args: argparse.Namespace) -> int:

    cfg = from_args(PrepareConfig, args)
    s = prepare_study(
        cfg.generated,
        cfg.out,
        pairs=cfg.pairs,
        readers=cfg.readers,
        controls=cfg.controls,
        seed=cfg.seed,
    )
    print(
        f"reader study in {s.study}: {s.generated_images} generated images ({s.pairs} pairs) "
        f"and {s.controls} real controls at {s.image_size} px, {len(s.links)} readers"
    )
    print(
        f"serve it with `kecae reader-study serve {s.study}`, then send each reader their "
        f"link (also in {s.study}/links.txt; keep them private):"
    )
    for name, path in s.links.items():
        print(f"  {name}: http://127.0.0.1:8765{path}  (at the default --host and --port)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:

    cfg = from_args(ServeConfig, args)
    serve(cfg.study, host=cfg.host, port=cfg.port, threads=cfg.threads)
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:

    cfg = from_args(AnalyzeConfig, args)
    res = analyze_study(cfg.study, n_boot=cfg.bootstrap, seed=cfg.seed)
    print(format_table(res))
    json_path, csv_path = write_outputs(res, cfg.study)
    print(f"\nwritten {json_path} and {csv_path}")
    if cfg.run:
        path = write_section(cfg.run, "reader_study", res.to_dict())
        print(f"written {path} (section 'reader_study'); HTML: kecae report --run {cfg.run}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reader-study",
        help="blinded reader study: prepare, serve, analyze",
        description="A reader study of generated images, as in the paper's "
        "Table III: prepare a blinded image set, serve it to radiologists in a "
        "small web app, analyze their calls.",
    )
    steps = p.add_subparsers(dest="reader_study_command", metavar="STEP", required=True)

    pp = steps.add_parser(
        "prepare",
        help="a blinded, shuffled image set and a study database",
        description="Choose M random pairs of a generated folder and write a "
        "blinded study: images under random ids, each reader's order, a SQLite "
        "database and one private link per reader.",
    )
    add_options(pp, PrepareConfig, config_file=False)
    pp.set_defaults(func=cmd_prepare)

    ps = steps.add_parser(
        "serve",
        help="the web app the readers answer in",
        description="Serve a study to its readers. Answers are committed one "
        "by one; stop and restart at any time.",
    )
    add_options(ps, ServeConfig, config_file=False)
    ps.set_defaults(func=cmd_serve)

    pa = steps.add_parser(
        "analyze",
        help="Table III: accuracy, realism, Cohen's/Fleiss' kappa",
        description="Accuracy per reader and label, mean realism, control "
        "images, phase-2 agreement, and Cohen's / Fleiss' kappa with bootstrap "
        "95 % intervals; writes STUDY/analysis.json and STUDY/analysis.csv.",
    )
    add_options(pa, AnalyzeConfig, config_file=False)
    pa.set_defaults(func=cmd_analyze)
