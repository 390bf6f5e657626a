"""The sections of ``metrics.json``, typed: every metric's key is defined here, once.

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
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

S = TypeVar("S", bound="Section")

#: The two exchange directions.
KL0_TO_KL2, KL2_TO_KL0 = "kl0_to_kl2", "kl2_to_kl0"
DIRECTIONS = (KL0_TO_KL2, KL2_TO_KL0)

#: Sections without a dataclass here: the targets (:func:`read_targets`), the pipeline's
#: settings and step times, and the reader study (``kecae.reader_study.analyze``).
TARGETS_SECTION, CONFIG_SECTION, TIMINGS_SECTION = "targets", "config", "timings"
READER_STUDY_SECTION = "reader_study"


@dataclass(frozen=True)
class Rate:
    """A share of True with its Wilson 95 % interval: ``value`` is NaN (null) for no sample."""

    value: float
    ci_low: float
    ci_high: float
    n: int

    SUFFIXES: ClassVar[tuple[str, ...]] = ("", "_ci_low", "_ci_high", "_n")

    @classmethod
    def of(cls, mask: Any) -> Rate:
        """The share of True in a boolean array (:func:`kecae.evaluation.metrics.fraction`)."""
        import numpy as np

        from kecae.evaluation.metrics import fraction

        f = fraction(np.asarray(mask, dtype=bool))
        return cls(f["value"], f["ci_low"], f["ci_high"], f["n"])

    def items(self, key: str) -> dict[str, Any]:
        """The four entries of this rate under ``key``."""
        values = (self.value, self.ci_low, self.ci_high, self.n)
        return {key + s: v for s, v in zip(self.SUFFIXES, values, strict=True)}

    @classmethod
    def read(cls, d: dict[str, Any], key: str) -> Rate:
        """The rate under ``key`` (its entries ``None`` where absent)."""
        values: list[Any] = [d.get(key + s) for s in cls.SUFFIXES]
        return cls(*values)


class Section:
    """A dataclass that is one section (or part) of metrics.json; ``NAME`` is its key there.

    :meth:`to_dict` writes the fields in order: a :class:`Rate` as its four entries, a nested
    section as a dict, lists and dicts element by element. :meth:`from_dict` is its inverse and
    takes what is there.
    """

    NAME: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]  # every subclass is one

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("optional"):
                continue
            if isinstance(value, Rate):
                out.update(value.items(f.name))
            else:
                out[f.name] = _plain(value)
        return out

    @classmethod
    def from_dict(cls: type[S], d: Any) -> S:
        d = d if isinstance(d, dict) else {}
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            reader = f.metadata.get("read")
            if f.type in ("Rate", Rate):
                values[f.name] = Rate.read(d, f.name)
            elif reader is not None:
                values[f.name] = reader(d.get(f.name))
            else:
                values[f.name] = d.get(f.name)
        return cls(**values)

    @classmethod
    def path(cls, key: str) -> str:
        """``section.key``: the address of one of this section's numbers in metrics.json (a
        target's metric, an ablation column); an unknown key is a KeyError."""
        if key not in cls.written_keys():
            raise KeyError(f"{cls.__name__} has no key {key!r}")
        return f"{cls.NAME}.{key}"

    @classmethod
    def written_keys(cls) -> frozenset[str]:
        """Every key this section writes at its top level (a rate's four entries included)."""
        names: set[str] = set()
        for f in dataclasses.fields(cls):
            if f.type in ("Rate", Rate):
                names.update(f.name + s for s in Rate.SUFFIXES)
            else:
                names.add(f.name)
        return frozenset(names)


def _plain(value: Any) -> Any:
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def optional(default: Any = None) -> Any:
    """A field left out of the JSON while it is ``None`` (added by a later step)."""
    return field(default=default, metadata={"optional": True})


def _sections_of(cls: type[S]) -> dict[str, Any]:
    """Field metadata: read a list of ``cls`` sections."""
    return {
        "read": lambda v: (
            [cls.from_dict(x) for x in v if isinstance(x, dict)] if isinstance(v, list) else None
        )
    }


def lookup(metrics: dict[str, Any], path: str) -> Any:
    """The value at ``section.key`` in a metrics.json object (None when absent)."""
    d: Any = metrics
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


# ---------------------------------------------------------------------------------------------
# kecae evaluate
# ---------------------------------------------------------------------------------------------


@dataclass
class Separability(Section):
    """``separability``: the paper's Fig. 3 metric, SVM-RBF accuracy on the latents of test
    images, beside the same SVM on the judge's penultimate features."""

    NAME: ClassVar[str] = "separability"

    svm_hk_accuracy: float  # 5-fold accuracy on the key vectors hK (mean over folds)
    svm_hk_accuracy_std: float  # sample std over the folds
    svm_hn_accuracy: float  # on the non-key vectors hN
    svm_hn_accuracy_std: float
    svm_judge_features_accuracy: float  # on the judge's features of the same images
    svm_judge_features_accuracy_std: float
    n: int  # test images
    folds: int
    latent_dim: int  # elements of one flattened hN
    key_dim: int  # elements of one flattened hK


@dataclass
class Plausibility(Section):
    """``plausibility``: share of images that pass a rule fitted on real training images and
    thresholded on real validation images; the real test images are its control."""

    NAME: ClassVar[str] = "plausibility"

    quantile: float  # nominal pass rate of real held-out images
    n_fit: int  # real training images the Gaussian is fitted on
    n_calibration: int  # real validation images that set the threshold
    real_test: Rate  # control: real test images passing
    x_ex: Rate  # exchanged images X' (both directions) passing
    x_ex_kl0_to_kl2: Rate
    x_ex_kl2_to_kl0: Rate
    recon: Rate  # reconstructions X̂ passing
    control: Rate  # no-exchange outputs passing
    features_only_real_test: Rate  # the feature rule alone (no joint-found condition)
    features_only_x_ex: Rate
    ratio_to_real: float  # x_ex / real_test
    knn_real_test: Rate  # k-NN manifold precision against the training images
    knn_x_ex: Rate
    knn_recon: Rate
    rule: str  # the rule in words


@dataclass
class ClassifierRates(Section):
    """One classifier's calls in one direction: the donor's grade on X' and its controls."""

    KEYS: ClassVar[dict[str, str]] = {
        "raw": "{who}_{d}_raw",
        "control": "{who}_control_{d}",
        "recon": "{who}_recon_{d}",
        "lift": "{who}_lift_{d}",
        "success": "{who}_{d}",
        "agreement": "{who}_agreement_{d}",
        "agreement_control": "{who}_agreement_control_{d}",
        "relative": "{who}_relative_{d}",
    }

    raw: Rate  # X' called the donor's grade (label only)
    control: Rate  # the same on the no-exchange output (the recipient given its own key)
    recon: Rate  # the same on the reconstruction X̂
    lift: float  # raw − control

    @classmethod
    def key(cls, name: str, who: str, direction: str) -> str:
        """The metrics.json key of field ``name`` of ``who`` in ``direction``."""
        return cls.KEYS[name].format(who=who, d=direction)

    def flat(self, who: str, direction: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value, key = getattr(self, f.name), self.key(f.name, who, direction)
            out.update(value.items(key) if isinstance(value, Rate) else {key: value})
        return out

    @classmethod
    def unflat(cls: type[S], d: dict[str, Any], who: str, direction: str) -> S:
        values = {}
        for f in dataclasses.fields(cls):
            key = ClassifierRates.key(f.name, who, direction)
            values[f.name] = Rate.read(d, key) if f.type in ("Rate", Rate) else d.get(key)
        return cls(**values)


@dataclass
class JudgeRates(ClassifierRates):
    """The independent judge in one direction: also success and agreement with the donor."""

    success: Rate  # the donor's grade AND a plausible image
    agreement: Rate  # X' gets the grade the judge gives the donor itself
    agreement_control: Rate  # the same on the no-exchange output
    relative: float  # raw / the judge's recall on real test images of the donor's grade


@dataclass
class ExchangeSuccess(Section):
    """``exchange_success``: does X' take the donor's grade? The judge (never seen by the
    generator) and the supervisor (which trained it), each beside its controls."""

    NAME: ClassVar[str] = "exchange_success"

    n: int  # test pairs
    judge_independent: bool  # other architecture and seed than the supervisor
    judge: dict[str, JudgeRates]  # per direction
    supervisor: dict[str, ClassifierRates]  # per direction
    rule: str  # the rules in words

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n, "judge_independent": self.judge_independent}
        for d in DIRECTIONS:
            out.update(self.judge[d].flat("judge", d))
            out.update(self.supervisor[d].flat("supervisor", d))
        out["rule"] = self.rule
        return out

    @classmethod
    def from_dict(cls, d: Any) -> ExchangeSuccess:
        d = d if isinstance(d, dict) else {}
        return cls(
            n=d.get("n"),
            judge_independent=d.get("judge_independent"),
            judge={x: JudgeRates.unflat(d, "judge", x) for x in DIRECTIONS},
            supervisor={x: ClassifierRates.unflat(d, "supervisor", x) for x in DIRECTIONS},
            rule=d.get("rule"),
        )

    @classmethod
    def written_keys(cls) -> frozenset[str]:
        empty: dict[str, Any] = {}
        names = {"n", "judge_independent", "rule"}
        for d in DIRECTIONS:
            for who, rates in (("judge", JudgeRates), ("supervisor", ClassifierRates)):
                names.update(rates.unflat(empty, who, d).flat(who, d))
        return frozenset(names)


@dataclass
class JudgeSummary(Section):
    """``judge``: the independent classifier and its accuracy on every real test image."""

    NAME: ClassVar[str] = "judge"

    arch: str
    checkpoint: str  # path of its weights
    seed: int | None
    test_accuracy: float
    n_test: int
    confusion: list[list[int]]  # [[tn, fp], [fn, tp]], KL-2 positive
    auc: float
    recall_kl2: float
    recall_kl0: float
    test_accuracy_at_training: float | None = optional()  # its own run's test accuracy


@dataclass
class SupervisorSummary(Section):
    """``supervisor``: the classifier whose loss trained KECAE."""

    NAME: ClassVar[str] = "supervisor"

    arch: str
    checkpoint: str
    seed: int | None
    test_accuracy: float | None  # from its run's metrics.json


@dataclass
class KeyTransfer(Section):
    """How far X' moved the recipient's joint-space width to the donor's (1 = the donor's);
    a refused measurement of X' counts as a failure."""

    median: float
    iqr: float
    success_rate: float  # share of informative pairs >= 0.7
    n: int  # informative pairs
    failed: int  # refused X' (failures)
    excluded: int  # uninformative pairs (recipient and donor widths too close)


@dataclass
class FidelityDirection(Section):
    """Ground-truth fidelity in one direction."""

    KEYS: ClassVar[dict[str, str]] = {
        "key_transfer_median": "key_transfer_median{s}",
        "key_transfer_iqr": "key_transfer_iqr{s}",
        "key_transfer_success_rate": "key_transfer_success_rate{s}",
        "key_transfer_n": "key_transfer_n{s}",
        "key_transfer_failed": "key_transfer_failed{s}",
        "key_transfer_excluded": "key_transfer_excluded{s}",
        "recon_key_transfer_median": "recon_key_transfer_median{s}",
        "recon_key_transfer_failed": "recon_key_transfer_failed{s}",
        "nonkey_ssim_median": "nonkey_ssim_median_{d}",
        "refusal_rate_x_ex": "refusal_rate_x_ex_{d}",
        "jsw_x_ex_median": "jsw_{image}_median",
    }
    #: per direction: the key suffix of the key-transfer entries, and the exchanged image
    NAMING: ClassVar[dict[str, tuple[str, str]]] = {
        KL0_TO_KL2: ("", "x1_ex"),
        KL2_TO_KL0: ("_kl2_to_kl0", "x2_ex"),
    }

    key_transfer_median: float  # against the real recipient and donor
    key_transfer_iqr: float
    key_transfer_success_rate: float
    key_transfer_n: int
    key_transfer_failed: int
    key_transfer_excluded: int
    recon_key_transfer_median: float  # against X̂ of recipient and donor (no blur penalty)
    recon_key_transfer_failed: int
    nonkey_ssim_median: float  # SSIM of X' vs its recipient outside the joint band
    refusal_rate_x_ex: float  # X' whose joint the measurement could not find
    jsw_x_ex_median: float  # median measured JSW of X', px

    @classmethod
    def key(cls, name: str, direction: str) -> str:
        suffix, image = cls.NAMING[direction]
        return cls.KEYS[name].format(s=suffix, d=direction, image=image)

    def flat(self, direction: str) -> dict[str, Any]:
        return {
            self.key(f.name, direction): getattr(self, f.name) for f in dataclasses.fields(self)
        }

    @classmethod
    def unflat(cls, d: dict[str, Any], direction: str) -> FidelityDirection:
        values: dict[str, Any] = {
            f.name: d.get(cls.key(f.name, direction)) for f in dataclasses.fields(cls)
        }
        return cls(**values)


@dataclass
class Fidelity(Section):
    """``fidelity`` (phantom data only): did X' take the donor's joint space and osteophytes
    and keep the recipient's anatomy elsewhere?"""

    NAME: ClassVar[str] = "fidelity"

    n: int  # test pairs
    directions: dict[str, FidelityDirection]
    nonkey_ssim_median: float  # both directions
    jsw_x1_median: float  # median measured JSW of the KL-0 inputs, px
    jsw_x2_median: float  # of the KL-2 inputs
    refusal_rate: float  # X' (both directions) whose joint could not be found
    refusal_rate_real: float  # real test images
    refusal_rate_recon: float  # reconstructions
    osteophyte_rate_real_kl0: Rate  # the osteophyte detector on real KL-0 test images
    osteophyte_rate_real_kl2: Rate
    osteophyte_rate_x1_ex: Rate  # on X'1 (should match real KL-2)
    osteophyte_rate_x2_ex: Rate  # on X'2 (should match real KL-0)
    osteophyte_rate_x1_self: Rate  # no-exchange output of X1 (control)
    osteophyte_rate_x2_self: Rate
    osteophyte_gap_kl0_to_kl2: float  # |rate on X'1 − rate on real KL-2|
    osteophyte_gap_kl2_to_kl0: float
    osteophyte_transfer_rate: Rate  # X'1 gains osteophytes when the donor has them
    osteophyte_removal_rate: Rate  # X'2 loses them when the donor has none

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n}
        for d in DIRECTIONS:
            out.update(self.directions[d].flat(d))
        rest = super().to_dict()
        del rest["n"], rest["directions"]
        return {**out, **rest}

    @classmethod
    def from_dict(cls, d: Any) -> Fidelity:
        d = d if isinstance(d, dict) else {}
        base = super().from_dict({k: v for k, v in d.items() if k != "directions"})
        return dataclasses.replace(
            base, directions={x: FidelityDirection.unflat(d, x) for x in DIRECTIONS}
        )

    @classmethod
    def written_keys(cls) -> frozenset[str]:
        per_direction = {
            FidelityDirection.key(f.name, d)
            for d in DIRECTIONS
            for f in dataclasses.fields(FidelityDirection)
        }
        return (super().written_keys() - {"directions"}) | per_direction


@dataclass
class Oracle(Section):
    """``oracle`` (phantom data only): the evaluation's rules applied to perfect exchanges,
    rendered from the phantoms' ground truth (each recipient's parameters with its donor's key
    features). Their scores are the ceiling a generator can reach with this judge and this
    measurement; the controls (no-exchange outputs, reconstructions) are the model's own."""

    NAME: ClassVar[str] = "oracle"

    exchange_success: ExchangeSuccess = field(metadata={"read": ExchangeSuccess.from_dict})
    plausibility: Plausibility = field(metadata={"read": Plausibility.from_dict})
    fidelity: Fidelity = field(metadata={"read": Fidelity.from_dict})
    description: str = ""


@dataclass
class DistributionMatch(Section):
    """Two samples of joint-space widths compared (:func:`kecae.evaluation.grade_match.
    distribution_match`): the first is what is judged, the second the reference."""

    ks: float  # two-sample Kolmogorov-Smirnov statistic, the largest CDF gap in [0, 1]
    ks_p: float  # its two-sided p-value (assumes independent draws)
    wasserstein: float  # first Wasserstein distance, px
    n: int  # measured values of the first sample
    n_reference: int
    n_missing: int  # unmeasured (refused) values of the first sample, left out


def _distribution(v: Any) -> DistributionMatch | None:
    return DistributionMatch.from_dict(v) if isinstance(v, dict) else None


@dataclass
class FailureAnalysis(Section):
    """Why the judge disagrees with its call on the donor, one kind per X' it disagrees on
    (:func:`kecae.evaluation.grade_match.failure_analysis`)."""

    n_disagree: int  # X' whose judge's call is not its call on the donor
    n: int  # pairs
    refused: int  # no joint found on X'
    osteophyte_extra: int  # an osteophyte the donor lacks (X'2: kept from the recipient)
    osteophyte_missing: int  # the donor's osteophyte absent on X' (X'1: not added)
    joint_narrow: int  # joint space narrower than the donor's beyond the tolerance
    joint_wide: int  # wider than the donor's beyond the tolerance
    osteophyte_and_joint: int  # both
    other: int  # the measurement sees the donor's key: an artefact or the judge's own error


def _failures(v: Any) -> FailureAnalysis | None:
    return FailureAnalysis.from_dict(v) if isinstance(v, dict) else None


@dataclass
class GradeMatchDirection(Section):
    """One direction: does X' look like a real knee of its intended grade, not a caricature?"""

    jsw: DistributionMatch = field(metadata={"read": _distribution})  # X' vs real, intended grade
    jsw_control: DistributionMatch = field(metadata={"read": _distribution})  # real halves
    key_transfer_q25: float  # quartiles of the key-transfer ratio (−inf: refused X')
    key_transfer_q75: float
    overshoot_rate: float  # share of informative pairs with a ratio > 1.5
    overshoot_n: int
    judge_intended: float  # the judge calls X' its intended grade
    failures: FailureAnalysis = field(metadata={"read": _failures})
    jsw_oracle: DistributionMatch | None = field(
        default=None, metadata={"read": _distribution, "optional": True}
    )  # the oracle's X' vs the same real knees
    judge_intended_oracle: float | None = optional()  # the same rate on the oracle's X'
    caricature_excess: float | None = optional()  # judge_intended − judge_intended_oracle
    failures_oracle: FailureAnalysis | None = field(
        default=None, metadata={"read": _failures, "optional": True}
    )


def _grade_direction(v: Any) -> GradeMatchDirection:
    return GradeMatchDirection.from_dict(v)


@dataclass
class GradeMatch(Section):
    """``grade_match`` (phantoms): X' against real knees of its intended grade, the judge's
    over-confidence against perfect exchanges, and why the judge disagrees on some X'."""

    NAME: ClassVar[str] = "grade_match"

    kl0_to_kl2: GradeMatchDirection = field(metadata={"read": _grade_direction})
    kl2_to_kl0: GradeMatchDirection = field(metadata={"read": _grade_direction})
    overshoot_at: float  # key-transfer ratio above which X' overshoots the donor
    joint_tolerance_px: float  # the failure analysis' smallest joint tolerance
    rule: str

    def direction(self, d: str) -> GradeMatchDirection:
        return self.kl0_to_kl2 if d == KL0_TO_KL2 else self.kl2_to_kl0

    @classmethod
    def key(cls, direction: str, name: str) -> str:
        """``grade_match.<direction>.<name>``: the address of one direction's number (``name``
        may go on into a nested part: ``jsw.wasserstein``)."""
        if (
            direction not in DIRECTIONS
            or name.split(".")[0] not in GradeMatchDirection.written_keys()
        ):
            raise KeyError(f"GradeMatch has no {direction}.{name}")
        return f"{cls.NAME}.{direction}.{name}"


@dataclass
class Quality(Section):
    """``quality``: reconstruction PSNR / SSIM and in-domain Fréchet distances."""

    NAME: ClassVar[str] = "quality"

    recon_psnr: float  # dB, X̂ vs X
    recon_psnr_std: float
    recon_ssim: float
    recon_ssim_std: float
    n: int  # images
    frechet: float  # X' vs real test images, judge features
    frechet_recon: float  # X̂ vs real test images
    frechet_real_floor: float  # two halves of the real training images
    frechet_feature: str  # which features
    frechet_n_real: int
    frechet_n_generated: int
    # median share of the image an edit mask covers; left out for a model without an edit
    edit_mask_area_kl0_to_kl2: float | None = optional()
    edit_mask_area_kl2_to_kl0: float | None = optional()


@dataclass
class Target(Section):
    """One target: the metric, the wanted side of a threshold, the measured value, and whether
    it is met (None when not computed)."""

    metric: str  # section.key in metrics.json
    target: str  # e.g. ">= 0.9"
    value: Any
    met: bool | None
    oracle: Any = optional()  # the same metric on perfect (oracle) exchanges; phantoms only

    @property
    def threshold(self) -> float:
        return float(self.target.split()[1])

    @property
    def op(self) -> str:
        return self.target.split()[0]


def read_targets(d: Any) -> dict[str, Target]:
    """The ``targets`` section: name -> :class:`Target`."""
    if not isinstance(d, dict):
        return {}
    return {
        name: Target.from_dict(t if isinstance(t, dict) else {"value": t}) for name, t in d.items()
    }


# ---------------------------------------------------------------------------------------------
# The studies
# ---------------------------------------------------------------------------------------------


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
    budget_checks: list[BudgetCheck] | None = field(
        default=None, metadata=_sections_of(BudgetCheck)
    )
    site_check: SiteCheck | None = field(default=None, metadata={"read": _site})


@dataclass
class Downstream(Section):
    """``downstream`` (``kecae study downstream``): Table II at each training fraction, in the
    i.i.d. regime (the run's own data)."""

    NAME: ClassVar[str] = "downstream"

    rows: list[DownstreamRow] = field(metadata=_sections_of(DownstreamRow))
    fractions: list[DownstreamFraction] = field(metadata=_sections_of(DownstreamFraction))
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
        default=None, metadata=_sections_of(ValidationCurve)
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

    rows: list[AblationRowResult] = field(metadata=_sections_of(AblationRowResult))
    ranking: list[str]
    best: list[str]
    columns: dict[str, AblationColumn] = field(
        metadata={"read": lambda v: {k: AblationColumn.from_dict(x) for k, x in (v or {}).items()}}
    )
    budget: dict[str, Any]
    shared: dict[str, Any]  # data, supervisor, judge (paths stored relative to the run)
    examples: dict[str, str]  # best row -> its examples.npz, relative to the run
    note: str


@dataclass
class TuneTrial(Section):
    """One trial of ``kecae tune``: its settings and its validation objective."""

    number: int
    state: str  # COMPLETE, FAIL, RUNNING (Optuna's trial states)
    params: dict[str, Any]
    objective: float | None  # the validation objective (kecae.studies.tune.OBJECTIVE)
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
    trials: list[TuneTrial] = field(metadata=_sections_of(TuneTrial))
    best_trial: int | None
    best_params: dict[str, Any]
    final: list[TuneFinal] = field(metadata=_sections_of(TuneFinal))
    storage: str  # the Optuna SQLite file, relative to the run
    note: str


@dataclass
class RobustnessMetric(Section):
    """One metric over the seeds: its values, mean ± sample std and worst seed."""

    name: str  # the target's name or the column's
    metric: str  # section.key of a seed's metrics.json
    kind: str  # pct or num
    better: str  # high, low or info (no worst)
    target: str | None  # e.g. ">= 0.7" when it is a target
    values: list[float | None]  # per seed (None: not computed, or a −inf median)
    mean: float | None
    std: float | None  # sample std (None for one value)
    worst: float | None  # lowest where higher is better, highest where lower is (None: info)
    worst_seed: int | None
    met: list[bool | None] | None = None  # per seed, for a target


@dataclass
class Robustness(Section):
    """``robustness`` (``kecae study robustness``): the run's recipe trained afresh per seed."""

    NAME: ClassVar[str] = "robustness"

    seeds: list[int]
    metrics: list[RobustnessMetric] = field(metadata=_sections_of(RobustnessMetric))
    targets_met: list[int]  # per seed
    targets_total: list[int]  # per seed: targets with a value
    worst_seed: int  # fewest targets met (the first of a tie)
    reused_seed: int | None  # the seed whose models are the run's own
    recipe: dict[str, Any]  # what every seed trains: architectures, preset, budget
    eval_pairs: int
    eval_seed: int
    seconds: list[float]  # per seed: the time of the study's call that finished it
    note: str


def is_finite(value: Any) -> bool:
    """A real, finite number (not None, NaN, infinity, a bool or a text)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
