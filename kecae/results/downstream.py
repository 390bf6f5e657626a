"""The sections of the downstream studies: classifiers trained on T against T′ per training
fraction (with its shortcut and site checks) and the sampling-size curve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from kecae.results.base import Rate, Section, sections_of

#: The test of a paired difference over seeds, in words (every study that reports one).
PAIRED_TEST = "two-sided paired t-test over seeds (scipy.stats.ttest_rel)"


@dataclass
class PairedDifference(Section):
    """Per-seed differences of a row's test accuracy against a baseline row (same model, same
    training fraction, same seed: the same initial weights)."""

    baseline: str  # the training set compared with (T or T+classic)
    mean: float
    std: float  # sample std of the per-seed differences
    n: int  # seeds
    values: list[float]
    p_value: float  # PAIRED_TEST (NaN when n < 2 or every difference is equal)
    wilcoxon_p: float  # exact two-sided Wilcoxon signed-rank p (NaN when undefined)
    wilcoxon_min_p: float  # the smallest p that test can give with n seeds: 2 / 2**n
    ci_low: float | None = None  # 95 % interval of the mean difference (Student t)
    ci_high: float | None = None
    mde: float | None = None  # minimal detectable effect: 80 % power, two-sided 0.05, this spread


def _difference(v: Any) -> PairedDifference | None:
    return PairedDifference.from_dict(v) if isinstance(v, dict) else None


@dataclass
class DownstreamRow(Section):
    """One (model, training fraction, training set) cell of Table II: mean ± sample std over
    seeds, and the paired differences against T and against T+classic."""

    model: str
    train_fraction: float  # share of the real training patients (1.0: all)
    training_set: str  # a name of kecae.studies.downstream.TRAINING_SETS
    accuracy_mean: float
    accuracy_std: float
    precision_mean: float
    precision_std: float
    recall_mean: float
    recall_std: float
    auc_mean: float
    auc_std: float
    n_seeds: int
    n_train_real: int
    n_train_generated: int
    accuracy_values: list[float]
    seeds: list[int]
    paired_vs_t: PairedDifference | None = field(
        default=None, metadata={"read": _difference, "optional": True}
    )
    paired_vs_classic: PairedDifference | None = field(
        default=None, metadata={"read": _difference, "optional": True}
    )
    group: str | None = None  # compared, label check or option (TRAINING_SETS)
    val_accuracy_mean: float | None = None  # the selected checkpoints on validation
    val_accuracy_std: float | None = None
    val_accuracy_values: list[float] | None = None
    steps: int | None = None  # optimiser steps of every seed (the fraction's budget)
    best_step_mean: float | None = None  # where validation chose the weights, mean over seeds


@dataclass
class ValidationCurve(Section):
    """Validation accuracy of one row along its step budget, mean ± std over seeds: the
    evidence that the budget lets the row converge."""

    model: str
    train_fraction: float
    training_set: str
    steps: list[int]  # optimiser steps at each validation
    val_accuracy_mean: list[float]
    val_accuracy_std: list[float]
    train_loss_mean: list[float]


@dataclass
class BudgetCheck(Section):
    """T of one seed trained for twice the fraction's step budget, beside T at the budget:
    a budget that lets T converge leaves little for more steps."""

    model: str
    seed: int
    steps: int  # twice the budget
    val_accuracy: float
    test_accuracy: float
    budget_val_accuracy: float  # T at the budget, same seed
    budget_test_accuracy: float


@dataclass
class SiteCheck(Section):
    """The shortcut regime: does the key exchange keep the recipient's acquisition site? The
    marker is found on the images (:func:`kecae.phantoms.site.has_marker`)."""

    x1_site_kept: Rate  # X'1: the marker as on its KL-0 recipient (present or absent)
    x2_site_kept: Rate  # X'2: as on its KL-2 recipient
    real_kl2_marked: Rate  # real KL-2 training images with the marker (the correlation)
    x1_marked: Rate  # X'1 (labelled KL-2) with the marker
    real_kl0_marked: Rate
    x2_marked: Rate  # X'2 (labelled KL-0) with the marker
    detector_accuracy: Rate  # the marker detector on the real training images


def _site(v: Any) -> SiteCheck | None:
    return SiteCheck.from_dict(v) if isinstance(v, dict) else None


@dataclass
class DownstreamFraction(Section):
    """What one training fraction trained on, and where its generated images come from."""

    train_fraction: float
    data: str  # the data set the fraction's classifiers (and generator) read
    n_patients: int  # real training patients kept
    n_train_real: int  # their KL-0 and KL-2 training images
    supervisor: str | None  # the supervisor of the fraction's KECAE (None: no T' row)
    kecae: str | None  # the KECAE checkpoint that made the generated images
    kecae_reused: bool  # the run's own KECAE (same settings, same data) was used
    kecae_steps: int | None
    generated: str | None  # the generated folder
    generated_pairs: int  # pairs T' draws from (2 images each)
    n_kl0: int | None = None  # real KL-0 training images
    n_kl2: int | None = None
    steps: int | None = None  # the step budget of every row of this fraction
    subsets: dict[str, int] | None = None  # generated images in each part the rows draw from
    supervisor_confirms: float | None = None  # share of X' the supervisor gives their label
    supervisor_confirms_n: int | None = None  # X' it was asked about
    budget_checks: list[BudgetCheck] | None = field(default=None, metadata=sections_of(BudgetCheck))
    site_check: SiteCheck | None = field(default=None, metadata={"read": _site})


@dataclass
class Downstream(Section):
    """``downstream`` (``kecae study downstream``): Table II at each training fraction, in the
    i.i.d. regime (the run's own data)."""

    NAME: ClassVar[str] = "downstream"

    rows: list[DownstreamRow] = field(metadata=sections_of(DownstreamRow))
    fractions: list[DownstreamFraction] = field(metadata=sections_of(DownstreamFraction))
    test: str  # the test of the paired differences, in words
    test_n: int
    val_n: int
    batch_size: int
    seeds: list[int]
    image_size: int
    data: str
    gen_ratio: float  # generated per real image in T''s batches (and in its pool)
    subsample_seed: int
    generator_targets_missed: list[str] | None  # the run's KECAE: targets missed (None: none read)
    generator_targets_total: int  # targets in the run's metrics.json
    note: str
    regime: str | None = None  # iid, or site_bias_<b> (the shortcut regime)
    site_bias: float | None = None
    answer: str | None = None  # the study's answer in one sentence
    curves: list[ValidationCurve] | None = field(
        default=None, metadata=sections_of(ValidationCurve)
    )
    lr: float | None = None
    lr_schedule: str | None = None
    filter_confidence: float | None = None  # the supervisor's confidence a filtered X' needs
    seconds: float | None = None  # time the study's sub-runs took, in all (one core)


@dataclass
class DownstreamShortcut(Downstream):
    """``downstream_shortcut``: the same study in the shortcut regime, on phantoms made like
    the run's own with acquisition sites that go with the grade in train and validation."""

    NAME: ClassVar[str] = "downstream_shortcut"


@dataclass
class SamplingSize(Section):
    """``sampling_size`` (``kecae study sampling``): Fig. 5, accuracy against N pairs."""

    NAME: ClassVar[str] = "sampling_size"

    N: list[int]  # the numbers of generated pairs (the paper's symbol)
    accuracy_mean: list[float]
    accuracy_std: list[float]
    accuracy_values: list[list[float]]
    train_loss_curves: dict[str, list[float]]  # N -> per-epoch loss, mean over seeds
    train_loss_curves_per_seed: dict[str, list[list[float]]]
    n_train_generated: list[int]
    arch: str
    n_seeds: int
    seeds: list[int]
    epochs: int
    patience: int
    test_n: int | None
    image_size: int
    generated_from: str | None
    note: str
