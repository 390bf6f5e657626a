"""`kecae reader-study prepare|serve|analyze`: parse, call :mod:`kecae.reader_study`, print."""

from __future__ import annotations

import argparse


def cmd_prepare(args: argparse.Namespace) -> int:
    from kecae.reader_study.prepare import prepare_study

    s = prepare_study(args.generated, args.out, pairs=args.pairs, readers=args.readers,
                      controls=args.controls, seed=args.seed)
    print(f"reader study in {s.study}: {s.generated_images} generated images ({s.pairs} pairs) "
          f"and {s.controls} real controls at {s.image_size} px, {len(s.links)} readers")
    print(f"serve it with `kecae reader-study serve {s.study}`, then send each reader their "
          f"link (also in {s.study}/links.txt; keep them private):")
    for name, path in s.links.items():
        print(f"  {name}: http://127.0.0.1:8765{path}  (at the default --host and --port)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from kecae.reader_study.app import serve

    serve(args.study, host=args.host, port=args.port, threads=args.threads)
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from kecae.reader_study.analyze import analyze_study, format_table, write_outputs

    res = analyze_study(args.study, n_boot=args.bootstrap, seed=args.seed)
    print(format_table(res))
    json_path, csv_path = write_outputs(res, args.study)
    print(f"\nwritten {json_path} and {csv_path}")
    if args.run:
        from kecae.runfolder import write_section

        path = write_section(args.run, "reader_study", res.to_dict())
        print(f"written {path} (section 'reader_study'); HTML: kecae report --run {args.run}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reader-study", help="blinded reader study: prepare, serve, analyze",
                       description="A reader study of generated images, as in the paper's "
                       "Table III: prepare a blinded image set, serve it to radiologists in a "
                       "small web app, analyze their calls.")
    rs = p.add_subparsers(dest="reader_study_command", metavar="STEP", required=True)

    pp = rs.add_parser("prepare", help="a blinded, shuffled image set and a study database",
                       description="Choose M random pairs of a generated folder and write a "
                       "blinded study: images under random ids, each reader's order, a SQLite "
                       "database and one private link per reader.")
    pp.add_argument("--generated", required=True, metavar="DIR",
                    help="folder written by `kecae generate` (with manifest.csv)")
    pp.add_argument("--pairs", required=True, type=int, metavar="M",
                    help="pairs to show; each gives X'1 and X'2")
    pp.add_argument("--readers", required=True, nargs="+", metavar="NAME",
                    help="reader names, one personal link each")
    pp.add_argument("--controls", type=int, default=0, metavar="K",
                    help="real images mixed in as controls, half KL-0 and half KL-2 "
                    "(default: 0)")
    pp.add_argument("--seed", type=int, default=0, help="seeds the choices and orders")
    pp.add_argument("--out", required=True, metavar="STUDY", help="study folder to create")
    pp.set_defaults(func=cmd_prepare)

    ps = rs.add_parser("serve", help="the web app the readers answer in",
                       description="Serve a study to its readers. Answers are committed one by "
                       "one; stop and restart at any time.")
    ps.add_argument("study", metavar="STUDY")
    ps.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default: 127.0.0.1, this machine only)")
    ps.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0: any free)")
    ps.add_argument("--threads", type=int, default=8, help="request threads (default: 8)")
    ps.set_defaults(func=cmd_serve)

    pa = rs.add_parser("analyze", help="Table III: accuracy, realism, Cohen's/Fleiss' kappa",
                       description="Accuracy per reader and label, mean realism, control "
                       "images, phase-2 agreement, and Cohen's / Fleiss' kappa with bootstrap "
                       "95 % intervals; writes STUDY/analysis.json and STUDY/analysis.csv.")
    pa.add_argument("study", metavar="STUDY")
    pa.add_argument("--run", metavar="RUN",
                    help="also write the 'reader_study' section of RUN/metrics.json (report)")
    pa.add_argument("--bootstrap", type=int, default=2000, metavar="B",
                    help="bootstrap resamples for the intervals (default: 2000)")
    pa.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    pa.set_defaults(func=cmd_analyze)
