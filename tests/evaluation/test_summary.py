"""Targets counted over what these data can compute, a degenerate judge flagged, and the
headline printed from a metrics.json (hand-made sections, no models)."""

from __future__ import annotations

from kecae.evaluation.summary import (
    MET,
    MISSED,
    NEEDS_GROUND_TRUTH,
    NOT_MEANINGFUL,
    TARGETS,
    check_targets,
    classifier_checks,
    count_targets,
    degenerate_reasons,
    format_headline,
)
from kecae.results import read_targets


def _sections(confusion: list[list[int]], phantoms: bool) -> dict:
    """Written sections of a real-data run (no fidelity) or a phantom run: every judge rate 1.0
    (a degenerate judge 'agrees' with itself perfectly), SVM on hK 0.9, on hN 0.5."""
    rates = {}
    for d in ("kl0_to_kl2", "kl2_to_kl0"):
        rates[f"judge_agreement_{d}"] = 1.0
        rates[f"judge_lift_{d}"] = 0.5
    sections = {
        "exchange_success": rates,
        "plausibility": {"ratio_to_real": 0.95},
        "separability": {"svm_hk_accuracy": 0.9, "svm_hn_accuracy": 0.7},
        "judge": {"arch": "small", "confusion": confusion, "test_accuracy": 0.5},
    }
    if phantoms:
        sections["fidelity"] = {
            "key_transfer_median": 0.8,  # KL-0 -> KL-2 keeps the paper's plain name
            "key_transfer_median_kl2_to_kl0": 0.5,
            "osteophyte_gap_kl0_to_kl2": 0.05,
            "osteophyte_gap_kl2_to_kl0": 0.05,
            "nonkey_ssim_median": 0.95,
        }
        sections["grade_match"] = {
            d: {"caricature_excess": 0.0} for d in ("kl0_to_kl2", "kl2_to_kl0")
        }
    return sections


def _check(sections: dict) -> dict:
    sections["targets"] = {n: t.to_dict() for n, t in check_targets(sections).items()}
    return sections


def test_every_target_says_what_it_needs():
    # the key names a measure has; a fidelity target needs phantoms, a judge rate the judge
    for spec in TARGETS:
        assert spec.needs in ("", "phantoms") and set(spec.uses) <= {"judge", "supervisor"}
        if spec.metric.startswith("fidelity."):
            assert spec.needs == "phantoms"
        if spec.metric.startswith("exchange_success.judge_"):
            assert spec.uses == ("judge",)


def test_real_data_with_a_degenerate_judge():
    # the run: the judge calls every knee KL-0 ([[8, 0], [7, 0]])
    m = _check(_sections([[8, 0], [7, 0]], phantoms=False))
    checks = classifier_checks(m)
    assert (
        checks["judge"]["degenerate"]
        and "calls 100 % of the test knees KL-0" in (checks["judge"]["reason"])
    )
    targets = read_targets(m["targets"])
    # its "100 % agreement" is kept as measured but not counted as met
    agreement = targets["judge agrees with its call on the donor, KL-0 -> KL-2"]
    assert agreement.value == 1.0 and agreement.met is None
    count, status = count_targets(targets, degenerate_reasons(checks))
    # plausibility and SVM on hK met, SVM on hN not: 2 of the 3 that mean something here;
    # the ground-truth targets (the caricature checks too, though read from the judge) need
    # phantoms first
    assert (count.met, count.computable, count.not_meaningful, count.needs_ground_truth) == (
        2,
        3,
        4,
        7,
    )
    assert count.text() == (
        "2 of 3 computable targets met; 4 not meaningful (a degenerate classifier); "
        "7 need phantom ground truth"
    )
    kind, _ = status["no caricatures: judge calls X'1 KL-2 minus its rate on the oracle's X'1"]
    assert kind == NEEDS_GROUND_TRUTH
    assert status["SVM on hN"] == (MISSED, "")
    assert status["non-key SSIM (median)"][0] == NEEDS_GROUND_TRUTH
    kind, why = status["label-only rate minus the no-exchange control, KL-2 -> KL-0"]
    assert kind == NOT_MEANINGFUL and "the judge calls 100 %" in why
    text = format_headline(m)
    first = text.splitlines()[0]
    assert first.startswith("  WARNING: the judge calls 100 % of the test knees KL-0")
    assert "[not meaningful: degenerate judge]" in text
    assert "need phantom ground truth (not computed on these data)" in text
    assert text.splitlines()[-1] == f"  targets: {count.text()}"


def test_phantoms_with_a_working_judge():
    m = _check(_sections([[40, 10], [8, 42]], phantoms=True))
    assert not classifier_checks(m)["judge"]["degenerate"]
    count, status = count_targets(read_targets(m["targets"]), {})
    # 14 computable: all but SVM on hN (0.7 > 0.65) and the KL-2 -> KL-0 transfer (0.5) met
    assert (count.met, count.computable, count.total) == (12, 14, 14)
    assert count.text() == "12 of 14 computable targets met"
    assert status["SVM on hK"] == (MET, "")
    assert "WARNING" not in format_headline(m)


def test_a_degenerate_supervisor_is_flagged_from_its_run():
    m = _check(_sections([[40, 10], [8, 42]], phantoms=False))
    sup = {"test": {"confusion": [[10, 0], [9, 1]]}}  # 95 % called KL-0
    checks = classifier_checks(m, sup)
    assert checks["supervisor"]["degenerate"] and not checks["judge"]["degenerate"]
    text = format_headline(m, sup)
    assert text.startswith("  WARNING: the supervisor calls 95 % of the test knees KL-0")
    assert "[not meaningful: degenerate supervisor]" in text


def test_grade_words_follow_the_run():
    m = _check(_sections([[40, 10], [8, 42]], phantoms=False))
    m["config"] = {"run": {"grades": [0, 1]}}
    text = format_headline(m)
    assert "KL-0->KL-1" in text and "KL-0->KL-2" not in text
