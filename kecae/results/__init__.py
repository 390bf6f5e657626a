"""The sections of ``metrics.json``, typed: every metric's key is defined once, in this package.

``kecae evaluate``, the studies and the pipeline build these dataclasses and write them with
:meth:`Section.to_dict`; the report and the headline printer read them back with
:meth:`Section.from_dict`, which takes what is there (a missing entry reads as ``None``) so an
older or partial run folder still reads. A rename here breaks its users loudly (an attribute or
keyword error), never silently.

Layout conventions of the written JSON, kept for every tool that reads it:

- a :class:`Rate` ``key`` is written as ``key``, ``key_ci_low``, ``key_ci_high`` and ``key_n``
  (a share with its Wilson 95 % interval and sample size);
- a metric with a spread over seeds or folds has a ``key_std`` sibling;
- the two exchange directions are ``kl0_to_kl2`` (X'1: a KL-0 knee given a KL-2 key) and
  ``kl2_to_kl0`` (X'2); their keys follow the patterns in :data:`ClassifierRates.KEYS` and
  :data:`FidelityDirection.KEYS`;
- NaN and infinity are written as ``null`` (strict JSON readers refuse NaN).

The types live in one module per producer (:mod:`.base`: :class:`Section`, :class:`Rate` and the
direction names; :mod:`.evaluation`, :mod:`.fidelity` and :mod:`.grade_match`: `kecae evaluate`;
:mod:`.downstream` and :mod:`.studies`: the studies); import them from here.
"""

from kecae.results.base import (
    CONFIG_SECTION,
    DIRECTIONS,
    EVALUATION_SECTION,
    KL0_TO_KL2,
    KL2_TO_KL0,
    READER_STUDY_SECTION,
    TARGETS_SECTION,
    TIMINGS_SECTION,
    Rate,
    Section,
    is_finite,
    lookup,
    optional,
    sections_of,
)
from kecae.results.downstream import (
    PAIRED_TEST,
    BudgetCheck,
    Downstream,
    DownstreamFraction,
    DownstreamRow,
    DownstreamShortcut,
    PairedDifference,
    SamplingSize,
    SiteCheck,
    ValidationCurve,
)
from kecae.results.evaluation import (
    ClassifierRates,
    ExchangeSuccess,
    JudgeRates,
    JudgeSummary,
    Plausibility,
    Quality,
    Separability,
    SupervisorSummary,
    Target,
    read_targets,
)
from kecae.results.fidelity import Fidelity, FidelityDirection, KeyTransfer, Oracle
from kecae.results.grade_match import (
    DistributionMatch,
    FailureAnalysis,
    GradeMatch,
    GradeMatchDirection,
)
from kecae.results.studies import (
    TUNE_OBJECTIVE_TERMS,
    Ablation,
    AblationCell,
    AblationColumn,
    AblationRowResult,
    LambdaGrid,
    Robustness,
    RobustnessMetric,
    Tune,
    TuneFinal,
    TuneTrial,
    format_value,
    mean_pm,
)

__all__ = [
    "CONFIG_SECTION",
    "DIRECTIONS",
    "EVALUATION_SECTION",
    "KL0_TO_KL2",
    "KL2_TO_KL0",
    "PAIRED_TEST",
    "READER_STUDY_SECTION",
    "TARGETS_SECTION",
    "TIMINGS_SECTION",
    "TUNE_OBJECTIVE_TERMS",
    "Ablation",
    "AblationCell",
    "AblationColumn",
    "AblationRowResult",
    "BudgetCheck",
    "ClassifierRates",
    "DistributionMatch",
    "Downstream",
    "DownstreamFraction",
    "DownstreamRow",
    "DownstreamShortcut",
    "ExchangeSuccess",
    "FailureAnalysis",
    "Fidelity",
    "FidelityDirection",
    "GradeMatch",
    "GradeMatchDirection",
    "JudgeRates",
    "JudgeSummary",
    "KeyTransfer",
    "LambdaGrid",
    "Oracle",
    "PairedDifference",
    "Plausibility",
    "Quality",
    "Rate",
    "Robustness",
    "RobustnessMetric",
    "SamplingSize",
    "Section",
    "Separability",
    "SiteCheck",
    "SupervisorSummary",
    "Target",
    "Tune",
    "TuneFinal",
    "TuneTrial",
    "ValidationCurve",
    "format_value",
    "is_finite",
    "lookup",
    "mean_pm",
    "optional",
    "read_targets",
    "sections_of",
]
