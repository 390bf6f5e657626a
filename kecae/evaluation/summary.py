"""What a user reads first: the targets a working KECAE must meet, and the headline numbers.

:func:`check_targets` turns the sections of ``kecae evaluate`` into the ``targets`` section;
:func:`format_headline` prints the numbers ``kecae evaluate``, ``kecae run`` and ``kecae demo``
end with. Both read the typed sections of :mod:`kecae.results`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class TargetSpec:
    """A target on the demo's phantoms: a metric (``section.key``), a side and a threshold."""

    name: str
    metric: str
    op: str  # ">=" or "<="
    threshold: float

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
    ),
    TargetSpec(
        "judge agrees with its call on the donor, KL-2 -> KL-0",
        _judge("agreement", KL2_TO_KL0),
        ">=",
        0.9,
    ),
    TargetSpec(
        "label-only rate minus the no-exchange control, KL-0 -> KL-2",
        _judge("lift", KL0_TO_KL2),
        ">=",
        0.40,
    ),
    TargetSpec(
        "label-only rate minus the no-exchange control, KL-2 -> KL-0",
        _judge("lift", KL2_TO_KL0),
        ">=",
        0.40,
    ),
    TargetSpec(
        "plausible X' / plausible real held-out images",
        Plausibility.path("ratio_to_real"),
        ">=",
        0.9,
    ),
    TargetSpec(
        "key transfer median, KL-0 -> KL-2 (refusals fail)", _transfer(KL0_TO_KL2), ">=", 0.7
    ),
    TargetSpec(
        "key transfer median, KL-2 -> KL-0 (refusals fail)", _transfer(KL2_TO_KL0), ">=", 0.7
    ),
    TargetSpec(
        "osteophyte rate of X'1 minus the real KL-2 rate, |points|",
        Fidelity.path("osteophyte_gap_kl0_to_kl2"),
        "<=",
        0.10,
    ),
    TargetSpec(
        "osteophyte rate of X'2 minus the real KL-0 rate, |points|",
        Fidelity.path("osteophyte_gap_kl2_to_kl0"),
        "<=",
        0.10,
    ),
    TargetSpec(
        "no caricatures: judge calls X'1 KL-2 minus its rate on the oracle's X'1",
        GradeMatch.key(KL0_TO_KL2, "caricature_excess"),
        "<=",
        0.05,
    ),
    TargetSpec(
        "no caricatures: judge calls X'2 KL-0 minus its rate on the oracle's X'2",
        GradeMatch.key(KL2_TO_KL0, "caricature_excess"),
        "<=",
        0.05,
    ),
    TargetSpec("non-key SSIM (median)", Fidelity.path("nonkey_ssim_median"), ">=", 0.9),
    TargetSpec("SVM on hK", Separability.path("svm_hk_accuracy"), ">=", 0.85),
    TargetSpec("SVM on hN", Separability.path("svm_hn_accuracy"), "<=", 0.65),
)


def check_targets(
    sections: dict[str, Any], oracle: dict[str, Any] | None = None
) -> dict[str, Target]:
    """Each target with its measured value (from the written form of ``sections``) and whether
    it is met (None when not computed). A −inf median (most measurements refused) is a miss.
    With ``oracle`` (the written ``oracle`` section, phantoms only) each target also gets the
    value perfect exchanges score on the same metric, where the oracle has it."""
    out = {}
    for spec in TARGETS:
        value = lookup(sections, spec.metric)
        out[spec.name] = Target(
            metric=spec.metric,
            target=f"{spec.op} {spec.threshold}",
            value=value,
            met=spec.met(value),
            oracle=lookup(oracle, spec.metric) if oracle else None,
        )
    return out


def format_headline(metrics: dict[str, Any]) -> str:
    """The numbers a user looks at first, one per line, each beside its control."""
    es = ExchangeSuccess.from_dict(metrics.get(ExchangeSuccess.NAME))
    pl = Plausibility.from_dict(metrics.get(Plausibility.NAME))
    fid = Fidelity.from_dict(metrics.get(Fidelity.NAME))
    sep = Separability.from_dict(metrics.get(Separability.NAME))
    qual = Quality.from_dict(metrics.get(Quality.NAME))
    judge = JudgeSummary.from_dict(metrics.get(JudgeSummary.NAME))
    sup = SupervisorSummary.from_dict(metrics.get(SupervisorSummary.NAME))
    jd, sd = es.judge, es.supervisor
    met = [t.met for t in read_targets(metrics.get("targets")).values()]
    forward, back = fid.directions[KL0_TO_KL2], fid.directions[KL2_TO_KL0]
    return "\n".join(
        [
            f"  judge ({judge.arch}) gives X' the grade it gives the "
            f"donor: KL-0->KL-2 {_pct(jd[KL0_TO_KL2].agreement.value)}, KL-2->KL-0 "
            f"{_pct(jd[KL2_TO_KL0].agreement.value)} (control "
            f"{_pct(jd[KL0_TO_KL2].agreement_control.value)} / "
            f"{_pct(jd[KL2_TO_KL0].agreement_control.value)})",
            f"  judge calls X' the donor's grade: {_pct(jd[KL0_TO_KL2].raw.value)} / "
            f"{_pct(jd[KL2_TO_KL0].raw.value)} (no-exchange control "
            f"{_pct(jd[KL0_TO_KL2].control.value)} / {_pct(jd[KL2_TO_KL0].control.value)}); "
            f"supervisor {_pct(sd[KL0_TO_KL2].raw.value)} / {_pct(sd[KL2_TO_KL0].raw.value)}",
            f"  plausible: X' {_pct(pl.x_ex.value)}, real test images {_pct(pl.real_test.value)} "
            f"(nominal {_num(pl.quantile, '{:.0%}')})",
            f"  key transfer median {_num(forward.key_transfer_median)} (KL-2->KL-0 "
            f"{_num(back.key_transfer_median)}; refused X' count as failures); osteophytes on X'1 "
            f"{_pct(fid.osteophyte_rate_x1_ex.value)} vs real KL-2 "
            f"{_pct(fid.osteophyte_rate_real_kl2.value)}; non-key SSIM "
            f"{_num(fid.nonkey_ssim_median)}",
            f"  SVM accuracy on hK {_num(sep.svm_hk_accuracy)}, on hN {_num(sep.svm_hn_accuracy)}",
            f"  reconstruction PSNR {_num(qual.recon_psnr, '{:.2f}')} dB, SSIM "
            f"{_num(qual.recon_ssim)}; judge test accuracy {_num(judge.test_accuracy)}, "
            f"supervisor {_num(sup.test_accuracy)}",
            *_oracle_line(metrics),
            f"  targets met: {sum(x is True for x in met)} of {len(met)}",
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
