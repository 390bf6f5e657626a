"""The sections of the studies that compare KECAE recipes: the λ grid, the ablation, the tuning
search and the robustness over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from kecae.results.base import KL0_TO_KL2, KL2_TO_KL0, Section, sections_of
from kecae.results.evaluation import ClassifierRates, ExchangeSuccess, Plausibility, Separability
from kecae.results.fidelity import Fidelity, FidelityDirection


@dataclass
class LambdaGrid(Section):
    """``lambda_grid`` (``kecae study lambda-grid``): Fig. 3, SVM accuracy over λ1 × λ2."""

    NAME: ClassVar[str] = "lambda_grid"

    lambda1: list[float]  # rows: J_SUP weights
    lambda2: list[float]  # columns: J_LDA weights
    svm_hk_accuracy: list[list[float]]
    svm_hk_accuracy_std: list[list[float]]
    svm_hn_accuracy: list[list[float]]
    svm_hn_accuracy_std: list[list[float]]
    final_mse: list[list[float]]
    steps: int
    n_images: int
    folds: int
    preset: str
    batch_size: int
    num_pairs: int
    seed: int
    image_size: int
    note: str


@dataclass
class AblationCell(Section):
    """One column of one ablation row: mean (and std) over the row's seeds."""

    mean: float | None
    std: float | None
    values: list[float | None]


@dataclass
class AblationRowResult(Section):
    """One row of the ablation table."""

    name: str
    description: str
    model: dict[str, Any]  # KECAEConfig fields of the row
    train: dict[str, Any]  # KECAETrainConfig fields of the row
    seeds: int
    cells: dict[str, AblationCell] = field(
        metadata={"read": lambda v: {k: AblationCell.from_dict(x) for k, x in (v or {}).items()}}
    )
    targets_met: float  # mean over seeds
    closeness: float  # mean closeness to the targets in [0, 1]
    targets: dict[str, list[bool | None]]  # target -> met per seed


@dataclass
class AblationColumn(Section):
    """What an ablation column shows."""

    metric: str  # section.key of the row's metrics.json
    kind: str  # pct, num, db or int
    better: str  # high, low or info


@dataclass
class Ablation(Section):
    """``ablation`` (``kecae study ablation``): rows of KECAE options on one budget."""

    NAME: ClassVar[str] = "ablation"

    rows: list[AblationRowResult] = field(metadata=sections_of(AblationRowResult))
    ranking: list[str]
    best: list[str]
    columns: dict[str, AblationColumn] = field(
        metadata={"read": lambda v: {k: AblationColumn.from_dict(x) for k, x in (v or {}).items()}}
    )
    budget: dict[str, Any]
    shared: dict[str, Any]  # data, supervisor, judge (paths stored relative to the run)
    examples: dict[str, str]  # best row -> its examples.npz, relative to the run
    note: str


def _judge_path(name: str, direction: str) -> str:
    return ExchangeSuccess.path(ClassifierRates.key(name, "judge", direction))


def _transfer_path(direction: str) -> str:
    return Fidelity.path(FidelityDirection.key("key_transfer_median", direction))


#: The terms of ``kecae tune``'s objective: name -> the metrics.json entry it reads.
TUNE_OBJECTIVE_TERMS: dict[str, str] = {
    "agreement KL-0→KL-2": _judge_path("agreement", KL0_TO_KL2),
    "agreement KL-2→KL-0": _judge_path("agreement", KL2_TO_KL0),
    "key transfer KL-0→KL-2": _transfer_path(KL0_TO_KL2),
    "key transfer KL-2→KL-0": _transfer_path(KL2_TO_KL0),
    "non-key SSIM": Fidelity.path("nonkey_ssim_median"),
    "plausible X′ / real": Plausibility.path("ratio_to_real"),
    "separability": Separability.path("svm_hk_accuracy"),
}


@dataclass
class TuneTrial(Section):
    """One trial of ``kecae tune``: its settings and its validation objective."""

    number: int
    state: str  # COMPLETE, FAIL, RUNNING (Optuna's trial states)
    params: dict[str, Any]
    objective: float | None  # the validation objective (kecae.studies.tune_objective.OBJECTIVE)
    terms: dict[str, float | None]  # its terms, each in [0, 1]
    folder: str | None  # the trial's run folder, relative to the run


@dataclass
class TuneFinal(Section):
    """One row of the final comparison: a setting trained on the same budget, its validation
    objective and its test evaluation."""

    name: str  # best, paper or run
    description: str
    params: dict[str, Any]  # the settings this row changes from the run's
    val_objective: float | None
    val_terms: dict[str, float | None]
    test_objective: float | None
    test_terms: dict[str, float | None]
    targets_met: int | None  # of the targets of the test evaluation
    targets_total: int | None
    checkpoint: str  # its KECAE, relative to the run


@dataclass
class Tune(Section):
    """``tune`` (``kecae tune``): Optuna's search of the KECAE settings on a validation
    objective, and the best trial against the paper's λ and the run's own settings."""

    NAME: ClassVar[str] = "tune"

    objective: str  # the formula in words
    sampler: str
    seed: int
    steps: int  # optimiser steps of every trial and every final row
    batch_size: int
    eval_pairs: int
    search_space: dict[str, str]  # setting -> its range
    trials: list[TuneTrial] = field(metadata=sections_of(TuneTrial))
    best_trial: int | None
    best_params: dict[str, Any]
    final: list[TuneFinal] = field(metadata=sections_of(TuneFinal))
    storage: str  # the Optuna SQLite file, relative to the run
    note: str


@dataclass
class RobustnessMetric(Section):
    """One metric over the seeds: its values, mean ± sample std and worst seed."""

    name: str  # the target's name or the column's
    metric: str  # section.key of a seed's metrics.json
    kind: str  # pct, num or int
    better: str  # high, low or info (no worst)
    target: str | None  # e.g. ">= 0.7" when it is a target
    values: list[float | None]  # per seed (None: not computed, or a −inf median)
    mean: float | None
    std: float | None  # sample std (None for one value)
    worst: float | None  # lowest where higher is better, highest where lower is (None: info)
    worst_seed: int | None
    met: list[bool | None] | None = None  # per seed, for a target


def format_value(v: float | None, kind: str) -> str:
    """One value of a :class:`RobustnessMetric` as shown: percent for rates, whole numbers for
    counts, ``—`` where none was computed."""
    if v is None:
        return "—"  # not computed, or a −inf median (most measurements refused)
    return {"pct": f"{100 * v:.1f}", "int": f"{v:.0f}"}.get(kind, f"{v:.3f}")


def mean_pm(m: RobustnessMetric) -> str:
    """``mean ± std`` of one metric (percent for rates)."""
    if m.mean is None:
        return "—"
    text = format_value(m.mean, m.kind)
    return text + (f" ± {format_value(m.std, m.kind)}" if m.std is not None else "")


@dataclass
class Robustness(Section):
    """``robustness`` (``kecae study robustness``): the run's recipe trained afresh per seed."""

    NAME: ClassVar[str] = "robustness"

    seeds: list[int]
    metrics: list[RobustnessMetric] = field(metadata=sections_of(RobustnessMetric))
    targets_met: list[int]  # per seed
    targets_total: list[int]  # per seed: targets with a value
    worst_seed: int  # fewest targets met (the first of a tie)
    reused_seed: int | None  # the seed whose models are the run's own
    recipe: dict[str, Any]  # what every seed trains: architectures, preset, budget
    eval_pairs: int
    eval_seed: int
    seconds: list[float]  # per seed: its sub-runs, added up over the study's calls (one core)
    note: str
