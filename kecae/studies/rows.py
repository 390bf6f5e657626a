"""The rows of the downstream study's Table II: what each trains on, and its statistics over
seeds from the sub-runs' metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kecae.results import DownstreamRow, ValidationCurve
from kecae.studies.subruns import mean_and_std, split_metric
from kecae.training.logs import read_log


@dataclass(frozen=True)
class TrainingSet:
    """One row of Table II: what its classifiers train on."""

    folder: str  # its sub-folder under fraction_<f>/<arch>/
    group: str  # compared, label check or option
    description: str
    augment: str = "none"  # the batch augmentation (kecae.registry.AUGMENTATIONS)
    real_grades: tuple[int, ...] | None = None  # real training grades kept (None: both)
    pool: str | None = None  # generated part that joins the training pool
    mix: str | None = None  # generated part drawn into every batch (pairs, confirmed)
    ratio: float | None = None  # generated per real image (None: --gen-ratio)
    pretrain: bool = False  # the first half of the budget on the mixed part alone


def _ratio_row(r: float) -> TrainingSet:
    return TrainingSet(
        f"T_prime_x{r:g}", "option", f"T' at {r:g} generated per real", mix="pairs", ratio=r
    )


#: The rows, in table order.
TRAINING_SETS: dict[str, TrainingSet] = {
    "T": TrainingSet("T", "compared", "the real training images of the fraction"),
    "T+classic": TrainingSet("T_classic", "compared", "T, flips, rotations, intensity", "classic"),
    "T+mixup": TrainingSet("T_mixup", "compared", "T with mixup", "mixup"),
    "T+cutmix": TrainingSet("T_cutmix", "compared", "T with CutMix", "cutmix"),
    "T'": TrainingSet("T_prime", "compared", "T, generated images in every batch", mix="pairs"),
    "T'+classic": TrainingSet(
        "T_prime_classic", "compared", "T' with classic", "classic", mix="pairs"
    ),
    "X'": TrainingSet(
        "X", "label check", "generated only, T's class counts", real_grades=(), pool="x"
    ),
    "X'1+T0": TrainingSet(
        "X1_T0",
        "label check",
        "KL-2 class: X'1 (as many as T's); KL-0: real",
        real_grades=(0,),
        pool="x1",
    ),
    "X'2+T2": TrainingSet(
        "X2_T2",
        "label check",
        "KL-0 class: X'2 (as many as T's); KL-2: real",
        real_grades=(2,),
        pool="x2",
    ),
    "T'confirmed": TrainingSet(
        "T_prime_confirmed", "option", "T' with X' the supervisor confirms", mix="confirmed"
    ),
    **{f"T'x{r:g}": _ratio_row(r) for r in (0.25, 0.5, 2.0, 3.0)},
    "X'->T": TrainingSet(
        "pretrain_X_T", "option", "pre-trained on X', fine-tuned on T", mix="pairs", pretrain=True
    ),
}

#: The rows every other row is compared with, per seed.
BASELINES = ("T", "T+classic")
COMPARED = [n for n, s in TRAINING_SETS.items() if s.group == "compared"]
CHECKS = [n for n, s in TRAINING_SETS.items() if s.group != "compared"]


def row_result(
    arch: str, fraction: float, name: str, runs: list[dict[str, Any]], seeds: list[int], steps: int
) -> DownstreamRow:
    """One cell of Table II from its seeds' classifier runs."""
    stats = {
        key: mean_and_std([split_metric(m, key) for m in runs])
        for key in ("accuracy", "precision", "recall", "auc")
    }
    val = [float(m["val"]["accuracy"]) for m in runs]
    return DownstreamRow(
        model=arch,
        train_fraction=fraction,
        training_set=name,
        accuracy_mean=stats["accuracy"][0],
        accuracy_std=stats["accuracy"][1],
        precision_mean=stats["precision"][0],
        precision_std=stats["precision"][1],
        recall_mean=stats["recall"][0],
        recall_std=stats["recall"][1],
        auc_mean=stats["auc"][0],
        auc_std=stats["auc"][1],
        n_seeds=len(runs),
        n_train_real=int(runs[0]["n_train_real"]),
        n_train_generated=int(runs[0]["n_train_generated"]),
        accuracy_values=[split_metric(m, "accuracy") for m in runs],
        seeds=seeds[: len(runs)],
        group=TRAINING_SETS[name].group,
        val_accuracy_mean=mean_and_std(val)[0],
        val_accuracy_std=mean_and_std(val)[1],
        val_accuracy_values=val,
        steps=steps,
        best_step_mean=float(np.mean([m.get("best_step", math.nan) for m in runs])),
    )


def validation_curve(
    arch: str, fraction: float, name: str, runs: list[dict[str, Any]]
) -> ValidationCurve:
    """Validation accuracy and training loss along the budget, mean ± std over seeds."""
    logs = [read_log(Path(m["out"]) / "log.csv") for m in runs]
    n = min(len(lg.rows) for lg in logs)
    val = np.array([lg.column("val_accuracy")[:n] for lg in logs])
    loss = np.array([lg.column("train_loss")[:n] for lg in logs])
    return ValidationCurve(
        model=arch,
        train_fraction=fraction,
        training_set=name,
        steps=[int(s) for s in logs[0].column("step")[:n]],
        val_accuracy_mean=val.mean(0).tolist(),
        val_accuracy_std=(val.std(0, ddof=1) if len(logs) > 1 else np.zeros(n)).tolist(),
        train_loss_mean=loss.mean(0).tolist(),
    )
