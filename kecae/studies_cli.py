"""`kecae study downstream|sampling|lambda-grid --run DIR`: parse, build the config, call
:mod:`kecae.studies`, print a compact table. Each study writes its section of DIR/metrics.json
and resumes from its finished sub-runs under DIR/studies/<name>/."""

from __future__ import annotations

import argparse
from typing import Any

from kecae.utils import KecaeError


def _common_classifier_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, metavar="DIR",
                   help="run folder (made by kecae run or demo)")
    p.add_argument("--data", help="data set (default: the one in DIR/kecae/config.yaml)")
    p.add_argument("--patient-regex", metavar="REGEX",
                   help="folder layout: regex with a group 'patient' (default: the run's)")
    p.add_argument("--image-size", type=int,
                   help="classifier input, px (default: the KECAE model's size)")
    p.add_argument("--epochs", type=int, help="most epochs per classifier (default: 30)")
    p.add_argument("--patience", type=int,
                   help="early stopping: epochs without a better validation accuracy (default: 6)")
    p.add_argument("--batch-size", type=int, help="classifier batch (default: 64)")
    p.add_argument("--lr", type=float, help="AdamW learning rate (default: 1e-3)")
    p.add_argument("--seeds", type=int, help="seeds per cell (default: 3)")
    p.add_argument("--first-seed", type=int, help="seeds are S, S+1, ... (default: 0)")
    _device_args(p)


def _device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="auto / cpu / cuda (default: auto)")
    p.add_argument("--cache-dir", help="preprocessed-image cache (default: next to the data)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction,
                   help="the trainers' progress bars")


def _given(args: argparse.Namespace, *names: str, **renamed: str) -> dict[str, Any]:
    """Config values of the options that were given (``field=option`` in ``renamed``); an unset
    option is None and leaves the dataclass default in force, so the defaults live in one place."""
    pairs = [(n, n) for n in names] + list(renamed.items())
    return {field: getattr(args, opt) for field, opt in pairs if getattr(args, opt) is not None}


_COMMON = ("run", "data", "image_size", "epochs", "patience", "batch_size", "lr", "seeds",
           "first_seed", "device", "cache_dir", "progress", "patient_regex")


def _build(cls: type, values: dict[str, Any]) -> Any:
    from kecae.configargs import check_values

    try:
        cfg = cls(**values)
    except ValueError as exc:  # argument combinations argparse cannot check
        raise KecaeError(str(exc)) from exc
    check_values(cfg)  # every number in its range (batch size, lr, seeds, ...)
    return cfg


def _done(args: argparse.Namespace, name: str, table: str) -> int:
    print(table)
    print(f"written {args.run}/metrics.json (section '{name}'); sub-runs in "
          f"{args.run}/studies/; HTML: kecae report --run {args.run}")
    return 0


def cmd_downstream(args: argparse.Namespace) -> int:
    from kecae import studies

    cfg = _build(studies.DownstreamConfig, _given(args, *_COMMON, "generated", "pairs",
                                                  archs="arch", training_sets="sets"))
    return _done(args, "downstream", studies.format_downstream(studies.run_downstream(cfg)))


def cmd_sampling(args: argparse.Namespace) -> int:
    from kecae import studies

    cfg = _build(studies.SamplingConfig, _given(args, *_COMMON, "sizes", "arch", "checkpoint",
                                                "gen_seed"))
    return _done(args, "sampling_size", studies.format_sampling(studies.run_sampling(cfg)))


def cmd_lambda_grid(args: argparse.Namespace) -> int:
    from kecae import studies

    cfg = _build(studies.LambdaGridConfig, _given(
        args, "run", "lambda1", "lambda2", "kecae_steps", "data", "supervisor", "preset",
        "batch_size", "num_pairs", "images", "seed", "device", "cache_dir", "progress"))
    return _done(args, "lambda_grid", studies.format_lambda_grid(studies.run_lambda_grid(cfg)))


def cmd_ablation(args: argparse.Namespace) -> int:
    from kecae import ablation
    from kecae.configargs import dataclass_from_args

    try:
        cfg = dataclass_from_args(ablation.AblationConfig, args)
    except ValueError as exc:
        raise KecaeError(str(exc)) from exc
    section = ablation.run_ablation(cfg)
    print(ablation.format_ablation(section))
    print(f"written {args.run}/metrics.json (section 'ablation') and "
          f"{args.run}/studies/ablation/table.md; HTML: kecae report --run {args.run}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from kecae.names import CLASSIFIER_NAMES, PRESET_NAMES

    study = sub.add_parser("study", help="augmentation studies: Table II, Fig. 5, Fig. 3",
                           description="Does KECAE help a classifier? Each study trains its "
                           "sub-runs under RUN/studies/<name>/ (a rerun reuses finished ones) and "
                           "writes its section of RUN/metrics.json, which `kecae report` shows.")
    kinds = study.add_subparsers(dest="study", metavar="STUDY", required=True)
    archs = sorted(CLASSIFIER_NAMES)

    p = kinds.add_parser("downstream", help="classifiers on T, T+classic and T' (Table II)",
                         description="Train each --arch from scratch on T (real images), "
                         "T+classic (flips, small rotations, intensity) and T' (T plus the "
                         "generated pairs), --seeds times, on fixed validation/test splits; "
                         "report mean ± std and the paired per-seed difference against T.")
    _common_classifier_args(p)
    p.add_argument("--arch", nargs="+", choices=archs,
                   help="classifiers (default: resnet18 vgg11)")
    p.add_argument("--sets", nargs="+",
                   choices=["T", "T+classic", "T'"], help="training sets (default: all three)")
    p.add_argument("--generated", metavar="DIR",
                   help="generated folder for T' (default: RUN/generated)")
    p.add_argument("--pairs", type=int,
                   help="generated pairs to add (default 0: all in the folder)")
    p.set_defaults(func=cmd_downstream)

    p = kinds.add_parser("sampling", help="accuracy against generated pairs N (Fig. 5)",
                         description="Generate the largest N pairs once with the run's KECAE "
                         "(or reuse a finished folder of the same checkpoint), then train --arch "
                         "on T plus the first N pairs for each --sizes N, --seeds times.")
    _common_classifier_args(p)
    p.add_argument("--sizes", nargs="+", type=int,
                   help="numbers of generated pairs N, 0 = T alone (default: 0 500 2000)")
    p.add_argument("--arch", choices=archs, help="classifier (default: resnet18)")
    p.add_argument("--checkpoint", help="KECAE checkpoint (default: RUN/kecae/checkpoints/last.pt)")
    p.add_argument("--gen-seed", type=int, help="seed of the pair sample (default: 0)")
    p.set_defaults(func=cmd_sampling)

    p = kinds.add_parser("lambda-grid", help="SVM separability over λ1 × λ2 (Fig. 3)",
                         description="Train one KECAE per (λ1, λ2) with the run's data, "
                         "supervisor and preset, then SVM-RBF 5-fold accuracy on hK and hN of "
                         "test images.")
    p.add_argument("--run", required=True, metavar="DIR",
                   help="run folder (made by kecae run or demo)")
    p.add_argument("--lambda1", nargs="+", type=float,
                   help="J_SUP weights, the grid's rows (default: 1e-5 1e-3 1e-1 1)")
    p.add_argument("--lambda2", nargs="+", type=float,
                   help="J_LDA weights, the grid's columns (default: 1e-5 1e-3 1e-1 1)")
    p.add_argument("--kecae-steps", type=int,
                   help="optimiser steps per KECAE (default: 300)")
    p.add_argument("--data", help="data set (default: the run's KECAE data)")
    p.add_argument("--supervisor", help="supervisor checkpoint (default: RUN/supervisor/best.pt)")
    p.add_argument("--preset", choices=sorted(PRESET_NAMES),
                   help="KECAE preset (default: the run's)")
    p.add_argument("--batch-size", type=int, help="KECAE batch of pairs (default: the run's)")
    p.add_argument("--num-pairs", type=int,
                   help="N pairs sampled for training (default: the run's)")
    p.add_argument("--images", type=int,
                   help="most test images for the SVM, half per class (default: 1000)")
    p.add_argument("--seed", type=int, help="seed of every cell (default: the run's KECAE seed)")
    _device_args(p)
    p.set_defaults(func=cmd_lambda_grid)

    from kecae.ablation import ROWS, AblationConfig
    from kecae.configargs import add_dataclass_args

    p = kinds.add_parser("ablation", help="which KECAE options make the exchange work",
                         description="Train one KECAE per row of options (--row NAME, repeated; "
                         "default: every row) on the run's data, supervisor and judge with one "
                         "budget, evaluate each with the fair metrics, give the best rows more "
                         "seeds, and write the table (metrics.json section 'ablation', "
                         "RUN/studies/ablation/table.md).")
    add_dataclass_args(p, AblationConfig, choices={"rows": list(ROWS)})
    p.set_defaults(func=cmd_ablation)
