"""`kecae train-classifier` and `kecae train`: parse, build the config, call the trainer."""

from __future__ import annotations

import argparse
from typing import Any

from kecae.cli.options import add_options, from_args, given_fields
from kecae.errors import KecaeError
from kecae.training.config import ClassifierTrainConfig, KECAETrainConfig

# The trainers and presets (torch) are imported when the command runs: kept out of
# `kecae --help`, which imports this module for its options.


def _require(cfg: Any, *names: str) -> None:
    for name in names:
        if not getattr(cfg, name):
            raise KecaeError(f"--{name.replace('_', '-')} is required (or set it in --config)")


def cmd_train_classifier(args: argparse.Namespace) -> int:
    from kecae.training.classifier_trainer import train_classifier

    cfg = from_args(ClassifierTrainConfig, args)
    _require(cfg, "data")
    metrics = train_classifier(cfg)
    t = metrics["test"]
    print(
        f"{cfg.arch}: test accuracy {t['accuracy']:.4f}  precision {t['precision']:.4f}  "
        f"recall {t['recall']:.4f}  AUC {t.get('auc', float('nan')):.4f}  "
        f"(n={metrics['n_test']}); run folder {metrics.get('out', cfg.out)}"
    )
    return 0


def _require_members(preset: str, count: int, views: list[dict[str, Any]], given: set[str]) -> None:
    """A preset measured against ``count`` supervisors needs its members' checkpoints (``views``:
    the model settings of members 1..count-1): say how to train them, and the ways out, before
    anything is read. ``given``: the fields the --config file or the command line sets (either
    may name the members, or the number of supervisors)."""
    if count < 2 or given & {"supervisors", "supervisor_members"}:
        return
    how = [
        f"member {k}: `kecae train-classifier --seed S"
        + "".join(f" --model {name}={value}" for name, value in view.items())
        + "`"
        for k, view in enumerate(views, start=1)
    ]
    raise KecaeError(
        f"the {preset} preset trains against {count} frozen supervisors: pass "
        f"--supervisor-members with {count - 1} more checkpoint(s) ({'; '.join(how)}), or "
        "--supervisors 1 for one supervisor, or let `kecae run` / `kecae demo` train them"
    )


def cmd_train(args: argparse.Namespace) -> int:
    from kecae.models.presets import preset_member_model, preset_training
    from kecae.training.kecae_trainer import train_kecae

    preset = from_args(KECAETrainConfig, args).preset
    try:
        base = preset_training(preset)
    except ValueError as exc:
        raise KecaeError(str(exc)) from exc
    count = int(base.get("supervisors", 1))
    views = [preset_member_model(preset, k) for k in range(1, count)]
    _require_members(preset, count, views, given_fields(KECAETrainConfig, args))
    cfg = from_args(KECAETrainConfig, args, base=base)
    _require(cfg, "data")
    summary = train_kecae(cfg)
    last = summary.get("last_terms") or {}
    if last:
        print(
            "KECAE: "
            + "  ".join(f"{k} {last[k]:.4g}" for k in ("total", "mse", "sup", "lda") if k in last)
            + f"; checkpoint {summary['checkpoint']}"
        )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-classifier",
        help="train a KL-0 vs KL-2 classifier",
        description="Train a KL-0 vs KL-2 classifier on the train split, select on "
        "validation (early stopping), report test metrics. Re-running a finished "
        "run folder returns its metrics; an interrupted one resumes. Works under "
        "torchrun (DDP).",
    )
    add_options(p, ClassifierTrainConfig)
    p.set_defaults(func=cmd_train_classifier)

    p = sub.add_parser(
        "train",
        help="train KECAE (Algorithm 1)",
        description="Train KECAE with the hybrid loss and a frozen supervisor. "
        "A run folder with a checkpoint resumes where it stopped. A --preset "
        "brings the loss settings it was measured with (see README); options "
        "given here win. Works under torchrun (DDP): the global batch is split "
        "over the processes.",
    )
    add_options(p, KECAETrainConfig)
    p.set_defaults(func=cmd_train)
