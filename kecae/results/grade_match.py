"""The ``grade_match`` section of `kecae evaluate` on phantom data: X' against real knees of its
intended grade, and why the judge disagrees with its call on the donor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from kecae.results.base import DIRECTIONS, KL0_TO_KL2, Section, optional


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
