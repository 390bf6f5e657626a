"""What a user reads first: the targets a working KECAE must meet, and the headline numbers.

:func:`check_targets` turns the sections of ``kecae evaluate`` into the ``targets`` section;
:func:`format_headline` prints the numbers ``kecae evaluate``, ``kecae run`` and ``kecae demo``
end with. Both read the typed sections of :mod:`kecae.results`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kecae.evaluation.validity import classifier_validity
from kecae.results import (
    KL0_TO_KL2,
    KL2_TO_KL0,
    ClassifierRates,
    ExchangeSuccess,
    Fidelity,
    FidelityDirection,
    GradeMatch,
    JudgeSummary,
    Oracle,
    Plausibility,
    Quality,
    Separability,
    SupervisorSummary,
    Target,
    lookup,
    read_targets,
)

#: ``TargetSpec.needs``: the target is computed from the phantoms' ground truth (joint-space
#: widths, osteophytes), so never on real radiographs.
PHANTOMS = "phantoms"

#: What a target's status can be (:func:`target_status`).
MET, MISSED, NEEDS_GROUND_TRUTH, NOT_MEANINGFUL, NOT_COMPUTED = (
    "met",
    "not met",
    "needs phantom ground truth",
    "not meaningful",
    "not computed",
)


@dataclass(frozen=True)
class TargetSpec:
    """A target: a metric (``section.key``), a side and a threshold; ``needs`` the data it can
    be computed on (``""``: any, :data:`PHANTOMS`: phantoms only) and ``uses`` the classifiers
    whose calls its value is read from (a degenerate one makes it not meaningful)."""

    name: str
    metric: str
    op: str  # ">=" or "<="
    threshold: float
    needs: str = ""
    uses: tuple[str, ...] = ()

    def met(self, value: Any) -> bool | None:
        """Whether ``value`` meets the target; None when it was not computed."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return bool(value >= self.threshold if self.op == ">=" else value <= self.threshold)


def _judge(name: str, direction: str) -> str:
    return ExchangeSuccess.path(ClassifierRates.key(name, "judge", direction))


def _transfer(direction: str) -> str:
    return Fidelity.path(FidelityDirection.key("key_transfer_median", direction))


#: The targets, in the order the report lists them.
TARGETS = (
    TargetSpec(
        "judge agrees with its call on the donor, KL-0 -> KL-2",
        _judge("agreement", KL0_TO_KL2),
        ">=",
        0.9,
        uses=("judge",),
    ),
    TargetSpec(
        "judge agrees with its call on the donor, KL-2 -> KL-0",
        _judge("agreement", KL2_TO_KL0),
        ">=",
        0.9,
        uses=("judge",),
    ),
    TargetSpec(
        "label-only rate minus the no-exchange control, KL-0 -> KL-2",
        _judge("lift", KL0_TO_KL2),
        ">=",
        0.40,
        uses=("judge",),
    ),
    TargetSpec(
        "label-only rate minus the no-exchange control, KL-2 -> KL-0",
        _judge("lift", KL2_TO_KL0),
        ">=",
        0.40,
        uses=("judge",),
    ),
    TargetSpec(
        "plausible X' / plausible real held-out images",
        Plausibility.path("ratio_to_real"),
        ">=",
        0.9,
    ),
    TargetSpec(
        "key transfer median, KL-0 -> KL-2 (refusals fail)",
        _transfer(KL0_TO_KL2),
        ">=",
        0.7,
        needs=PHANTOMS,
    ),
    TargetSpec(
        "key transfer median, KL-2 -> KL-0 (refusals fail)",
        _transfer(KL2_TO_KL0),
        ">=",
        0.7,
        needs=PHANTOMS,
    ),
    TargetSpec(
        "osteophyte rate of X'1 minus the real KL-2 rate, |points|",
        Fidelity.path("osteophyte_gap_kl0_to_kl2"),
        "<=",
        0.10,
        needs=PHANTOMS,
    ),
    TargetSpec(
        "osteophyte rate of X'2 minus the real KL-0 rate, |points|",
        Fidelity.path("osteophyte_gap_kl2_to_kl0"),
        "<=",
        0.10,
        needs=PHANTOMS,
    ),
    TargetSpec(
        "no caricatures: judge calls X'1 KL-2 minus its rate on the oracle's X'1",
        GradeMatch.key(KL0_TO_KL2, "caricature_excess"),
        "<=",
        0.05,
        needs=PHANTOMS,
        uses=("judge",),
    ),
    TargetSpec(
        "no caricatures: judge calls X'2 KL-0 minus its rate on the oracle's X'2",
        GradeMatch.key(KL2_TO_KL0, "caricature_excess"),
        "<=",
        0.05,
        needs=PHANTOMS,
        uses=("judge",),
    ),
    TargetSpec(
        "non-key SSIM (median)", Fidelity.path("nonkey_ssim_median"), ">=", 0.9, needs=PHANTOMS
    ),
    TargetSpec("SVM on hK", Separability.path("svm_hk_accuracy"), ">=", 0.85),
    TargetSpec("SVM on hN", Separability.path("svm_hn_accuracy"), "<=", 0.65),
)


def check_targets(
    sections: dict[str, Any], oracle: dict[str, Any] | None = None
) -> dict[str, Target]:
    """Each target with its measured value (from the written form of ``sections``) and whether
    it is met: None when not computed, or when the value is read from a degenerate judge (not
    meaningful, :func:`classifier_checks`). A −inf median (most measurements refused) is a miss.
    With ``oracle`` (the written ``oracle`` section, phantoms only) each target also gets the
    value perfect exchanges score on the same metric, where the oracle has it."""
    degenerate = {who for who, v in classifier_checks(sections).items() if v["degenerate"]}
    out = {}
    for spec in TARGETS:
        value = lookup(sections, spec.metric)
        out[spec.name] = Target(
            metric=spec.metric,
            target=f"{spec.op} {spec.threshold}",
            value=value,
            met=None if degenerate.intersection(spec.uses) else spec.met(value),
            oracle=lookup(oracle, spec.metric) if oracle else None,
        )
    return out


def spec_of(target: Target) -> TargetSpec | None:
    """The :data:`TARGETS` entry a written target was checked against (by its metric)."""
    return next((spec for spec in TARGETS if spec.metric == target.metric), None)


def grades_in(metrics: dict[str, Any]) -> tuple[int, int]:
    """The run's grade pair as metrics.json records it (the pipeline's settings), else 0 and 2."""
    config = metrics.get("config")
    for settings in config.values() if isinstance(config, dict) else ():
        grades = settings.get("grades") if isinstance(settings, dict) else None
        if isinstance(grades, list) and len(grades) == 2:
            return int(grades[0]), int(grades[1])
    return 0, 2


def classifier_checks(
    metrics: dict[str, Any], supervisor: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Whether the judge (metrics.json's ``judge`` section: its confusion on every real test
    image) and the supervisor (its run's metrics.json, when given: its test confusion) are
    degenerate (:func:`kecae.evaluation.validity.classifier_validity`); who -> verdict, for
    those whose confusion is known."""

    grades = grades_in(metrics)
    confusions = {
        "judge": (metrics.get(JudgeSummary.NAME) or {}).get("confusion"),
        "supervisor": ((supervisor or {}).get("test") or {}).get("confusion"),
    }
    out = {}
    for who, cm in confusions.items():
        try:
            out[who] = classifier_validity(cm, grades, who=f"the {who}")
        except (ValueError, TypeError):  # absent or not a 2x2 matrix of counts
            continue
    return out


def target_status(target: Target, degenerate: dict[str, str]) -> tuple[str, str]:
    """``(status, why)`` of one target: :data:`MET`, :data:`MISSED`, :data:`NOT_MEANINGFUL`
    (its value is read from a classifier in ``degenerate``: who -> reason),
    :data:`NEEDS_GROUND_TRUTH` (a phantom-only target on other data) or :data:`NOT_COMPUTED`."""
    spec = spec_of(target)
    if spec is not None and spec.needs == PHANTOMS and target.value is None:
        return NEEDS_GROUND_TRUTH, (
            "computed from the phantoms' ground truth (joint-space widths, osteophytes, the "
            "oracle's perfect exchanges), which real radiographs do not have"
        )
    uses = [who for who in (spec.uses if spec else ()) if who in degenerate]
    if uses:
        return NOT_MEANINGFUL, f"{degenerate[uses[0]]}: this rate is read from its calls"
    if target.met is True:
        return MET, ""
    if target.met is False:
        return MISSED, ""
    return NOT_COMPUTED, "the evaluation could not compute it on these data"


@dataclass(frozen=True)
class TargetCount:
    """The targets of a run, counted by :func:`target_status`."""

    met: int
    computable: int  # met or not met (a value that means something)
    needs_ground_truth: int
    not_meaningful: int
    not_computed: int
    total: int

    def text(self) -> str:
        """E.g. ``2 of 7 computable targets met; 4 need phantom ground truth``."""
        words = f"{self.met} of {self.computable} computable targets met"
        extra = []
        if self.not_meaningful:
            extra.append(f"{self.not_meaningful} not meaningful (a degenerate classifier)")
        if self.not_computed:
            extra.append(f"{self.not_computed} not computed")
        if self.needs_ground_truth:
            extra.append(f"{self.needs_ground_truth} need phantom ground truth")
        return "; ".join([words, *extra])


def count_targets(
    targets: dict[str, Target], degenerate: dict[str, str]
) -> tuple[TargetCount, dict[str, tuple[str, str]]]:
    """Every target's :func:`target_status` and their count."""
    status = {name: target_status(t, degenerate) for name, t in targets.items()}
    kinds = [s for s, _ in status.values()]
    return (
        TargetCount(
            met=kinds.count(MET),
            computable=kinds.count(MET) + kinds.count(MISSED),
            needs_ground_truth=kinds.count(NEEDS_GROUND_TRUTH),
            not_meaningful=kinds.count(NOT_MEANINGFUL),
            not_computed=kinds.count(NOT_COMPUTED),
            total=len(kinds),
        ),
        status,
    )


def degenerate_reasons(checks: dict[str, dict[str, Any]]) -> dict[str, str]:
    """who -> reason, for the degenerate classifiers of :func:`classifier_checks`."""
    return {who: v["reason"] for who, v in checks.items() if v["degenerate"]}


def format_headline(metrics: dict[str, Any], supervisor: dict[str, Any] | None = None) -> str:
    """The numbers a user looks at first, one per line, each beside its control. A degenerate
    judge or supervisor (``supervisor``: its run's metrics.json) is said first, and the rates
    read from it are marked not meaningful; the targets are counted over those computable on
    these data."""
    es = ExchangeSuccess.from_dict(metrics.get(ExchangeSuccess.NAME))
    pl = Plausibility.from_dict(metrics.get(Plausibility.NAME))
    fid = Fidelity.from_dict(metrics.get(Fidelity.NAME))
    sep = Separability.from_dict(metrics.get(Separability.NAME))
    qual = Quality.from_dict(metrics.get(Quality.NAME))
    judge = JudgeSummary.from_dict(metrics.get(JudgeSummary.NAME))
    sup = SupervisorSummary.from_dict(metrics.get(SupervisorSummary.NAME))
    jd, sd = es.judge, es.supervisor
    degenerate = degenerate_reasons(classifier_checks(metrics, supervisor))
    count, _ = count_targets(read_targets(metrics.get("targets")), degenerate)
    forward, back = fid.directions[KL0_TO_KL2], fid.directions[KL2_TO_KL0]
    low, high = grades_in(metrics)
    up, down = f"KL-{low}->KL-{high}", f"KL-{high}->KL-{low}"
    flags = [
        f"  WARNING: {reason}; the rates read from the {who}'s calls are not meaningful"
        for who, reason in degenerate.items()
    ]
    judge_note = " [not meaningful: degenerate judge]" if "judge" in degenerate else ""
    sup_note = " [not meaningful: degenerate supervisor]" if "supervisor" in degenerate else ""
    truth = (
        f"  key transfer median {_num(forward.key_transfer_median)} ({down} "
        f"{_num(back.key_transfer_median)}; refused X' count as failures); osteophytes on X'1 "
        f"{_pct(fid.osteophyte_rate_x1_ex.value)} vs real KL-{high} "
        f"{_pct(fid.osteophyte_rate_real_kl2.value)}; non-key SSIM "
        f"{_num(fid.nonkey_ssim_median)}"
        if isinstance(metrics.get(Fidelity.NAME), dict)
        else "  key transfer, osteophytes, non-key SSIM: need phantom ground truth "
        "(not computed on these data)"
    )
    return "\n".join(
        [
            *flags,
            f"  judge ({judge.arch}) gives X' the grade it gives the "
            f"donor: {up} {_pct(jd[KL0_TO_KL2].agreement.value)}, {down} "
            f"{_pct(jd[KL2_TO_KL0].agreement.value)} (control "
            f"{_pct(jd[KL0_TO_KL2].agreement_control.value)} / "
            f"{_pct(jd[KL2_TO_KL0].agreement_control.value)}){judge_note}",
            f"  judge calls X' the donor's grade: {_pct(jd[KL0_TO_KL2].raw.value)} / "
            f"{_pct(jd[KL2_TO_KL0].raw.value)} (no-exchange control "
            f"{_pct(jd[KL0_TO_KL2].control.value)} / {_pct(jd[KL2_TO_KL0].control.value)})"
            f"{judge_note}; supervisor {_pct(sd[KL0_TO_KL2].raw.value)} / "
            f"{_pct(sd[KL2_TO_KL0].raw.value)}{sup_note}",
            f"  plausible: X' {_pct(pl.x_ex.value)}, real test images {_pct(pl.real_test.value)} "
            f"(nominal {_num(pl.quantile, '{:.0%}')})",
            truth,
            f"  SVM accuracy on hK {_num(sep.svm_hk_accuracy)}, on hN {_num(sep.svm_hn_accuracy)}",
            f"  reconstruction PSNR {_num(qual.recon_psnr, '{:.2f}')} dB, SSIM "
            f"{_num(qual.recon_ssim)}; judge test accuracy {_num(judge.test_accuracy)}, "
            f"supervisor {_num(sup.test_accuracy)}",
            *_oracle_line(metrics),
            f"  targets: {count.text()}",
        ]
    )


def _oracle_line(metrics: dict[str, Any]) -> list[str]:
    """On phantoms: what a perfect exchange scores on the same rules (the ceiling)."""
    if not isinstance(metrics.get(Oracle.NAME), dict):
        return []
    oracle = Oracle.from_dict(metrics[Oracle.NAME])
    jd, fid = oracle.exchange_success.judge, oracle.fidelity.directions
    return [
        f"  a perfect exchange (oracle) scores: agreement {_pct(jd[KL0_TO_KL2].agreement.value)} / "
        f"{_pct(jd[KL2_TO_KL0].agreement.value)}, key transfer "
        f"{_num(fid[KL0_TO_KL2].key_transfer_median)} / "
        f"{_num(fid[KL2_TO_KL0].key_transfer_median)}, osteophytes on X'1 "
        f"{_pct(oracle.fidelity.osteophyte_rate_x1_ex.value)}"
    ]


def _num(value: Any, fmt: str = "{:.3f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _pct(value: Any) -> str:
    return _num(value, "{:.1%}")
