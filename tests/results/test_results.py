"""kecae.results: every section writes and reads itself (to_dict / from_dict round trips), its
keys are typed (a key that a type does not write is a KeyError), a rate is four entries."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest

from kecae.results import (
    DIRECTIONS,
    KL0_TO_KL2,
    KL2_TO_KL0,
    ClassifierRates,
    ExchangeSuccess,
    Fidelity,
    FidelityDirection,
    JudgeRates,
    JudgeSummary,
    Plausibility,
    Quality,
    Rate,
    Robustness,
    RobustnessMetric,
    Section,
    Separability,
    SupervisorSummary,
    Target,
    format_value,
    is_finite,
    lookup,
    mean_pm,
    read_targets,
)

#: The flat sections: every field a number, a text, a flag or a rate.
FLAT = [Separability, Plausibility, JudgeSummary, SupervisorSummary, Quality]


def sample(cls: type, seed: int = 0) -> Any:
    """An instance of the flat dataclass ``cls`` with a distinct value in every field."""
    values: dict[str, Any] = {}
    for i, f in enumerate(dataclasses.fields(cls)):
        kind = str(f.type).split("|")[0].strip()
        x = seed + i + 1
        values[f.name] = {
            "Rate": Rate(x / 100, x / 200, x / 50, 10 * x),
            "float": x / 7,
            "int": x,
            "str": f"text {x}",
            "bool": x % 2 == 0,
            "list[list[int]]": [[x, 1], [2, x]],
        }[kind]
    return cls(**values)


def through_json(section: Section) -> dict[str, Any]:
    return json.loads(json.dumps(section.to_dict()))


@pytest.mark.parametrize("cls", FLAT, ids=lambda c: c.__name__)
def test_flat_sections_round_trip(cls):
    section = sample(cls)
    written = through_json(section)
    assert cls.from_dict(written) == section
    assert set(written) == set(cls.written_keys())


def test_a_rate_is_four_entries():
    rate = Rate(0.8, 0.7, 0.9, 40)
    assert rate.items("x_ex") == {
        "x_ex": 0.8,
        "x_ex_ci_low": 0.7,
        "x_ex_ci_high": 0.9,
        "x_ex_n": 40,
    }
    assert Rate.read(rate.items("x_ex"), "x_ex") == rate
    assert Rate.read({}, "x_ex") == Rate(None, None, None, None)


def _exchange_success() -> ExchangeSuccess:
    return ExchangeSuccess(
        n=400,
        judge_independent=True,
        judge={d: sample(JudgeRates, 10 * k) for k, d in enumerate(DIRECTIONS)},
        supervisor={d: sample(ClassifierRates, 20 + 10 * k) for k, d in enumerate(DIRECTIONS)},
        rule="the donor's grade",
    )


def test_exchange_success_round_trips_through_its_flat_keys():
    section = _exchange_success()
    written = through_json(section)
    assert ExchangeSuccess.from_dict(written) == section
    assert set(written) == set(ExchangeSuccess.written_keys())
    # the flat keys follow ClassifierRates.KEYS: who, then direction
    judge = section.judge[KL2_TO_KL0]
    assert written[ClassifierRates.key("agreement", "judge", KL2_TO_KL0)] == judge.agreement.value
    assert written["judge_agreement_kl2_to_kl0_n"] == judge.agreement.n
    assert written["supervisor_kl0_to_kl2_raw"] == section.supervisor[KL0_TO_KL2].raw.value


def test_fidelity_round_trips_with_its_direction_keys():
    base = sample(FidelityDirection)
    fields = {f.name for f in dataclasses.fields(Fidelity)} - {"n", "directions"}
    section = Fidelity(
        n=256,
        directions={KL0_TO_KL2: base, KL2_TO_KL0: sample(FidelityDirection, 30)},
        **sample_fidelity_rest(fields),
    )
    written = through_json(section)
    assert Fidelity.from_dict(written) == section
    assert set(written) == set(Fidelity.written_keys())
    assert written["key_transfer_median"] == base.key_transfer_median  # KL-0 -> KL-2: no suffix
    assert "key_transfer_median_kl2_to_kl0" in written
    assert Fidelity.path(FidelityDirection.key("nonkey_ssim_median", KL2_TO_KL0)) == (
        "fidelity.nonkey_ssim_median_kl2_to_kl0"
    )


def sample_fidelity_rest(names: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, f in enumerate(dataclasses.fields(Fidelity)):
        if f.name in names:
            out[f.name] = Rate(i / 100, i / 200, i / 50, i) if f.type == "Rate" else i / 9
    return out


def test_a_key_no_type_writes_is_a_key_error():
    assert Separability.path("svm_hk_accuracy") == "separability.svm_hk_accuracy"
    assert Plausibility.path("x_ex_ci_low") == "plausibility.x_ex_ci_low"
    with pytest.raises(KeyError, match="svm_accuracy"):
        Separability.path("svm_accuracy")
    with pytest.raises(KeyError):
        ExchangeSuccess.path("judge_agreement_kl0_to_kl1")


def test_missing_entries_read_as_none_and_optional_fields_are_left_out():
    quality = Quality.from_dict({"recon_psnr": 25.0})
    assert quality.recon_psnr == 25.0 and quality.frechet is None
    assert Quality.from_dict("not a section").n is None
    written = sample(Quality).to_dict()
    assert "edit_mask_area_kl0_to_kl2" in written  # set by sample()
    judge = dataclasses.replace(sample(JudgeSummary), test_accuracy_at_training=None)
    assert "test_accuracy_at_training" not in judge.to_dict()


def test_nested_lists_of_sections_round_trip():
    metric = RobustnessMetric(
        name="SVM on hK",
        metric=Separability.path("svm_hk_accuracy"),
        kind="pct",
        better="high",
        target=">= 0.85",
        values=[0.9, None, 0.8],
        mean=0.85,
        std=0.0707,
        worst=0.8,
        worst_seed=2,
        met=[True, None, False],
    )
    section = Robustness(
        seeds=[0, 1, 2],
        metrics=[metric, dataclasses.replace(metric, name="other", target=None, met=None)],
        targets_met=[9, 8, 7],
        targets_total=[14, 14, 14],
        worst_seed=2,
        reused_seed=0,
        recipe={"preset": "cpu"},
        eval_pairs=400,
        eval_seed=0,
        seconds=[1.0, 2.0, 3.0],
        note="n",
    )
    assert Robustness.from_dict(through_json(section)) == section
    assert mean_pm(metric) == "85.0 ± 7.1"
    assert format_value(None, "pct") == "—" and format_value(3.0, "int") == "3"


def test_targets_read_back_with_their_side_and_threshold():
    written = {"SVM on hK": Target("separability.svm_hk_accuracy", ">= 0.85", 0.9, True).to_dict()}
    target = read_targets(json.loads(json.dumps(written)))["SVM on hK"]
    assert (target.op, target.threshold, target.met) == (">=", 0.85, True)
    assert read_targets(None) == {}


def test_lookup_and_is_finite():
    metrics = {"fidelity": {"key_transfer_median": 0.8}}
    assert lookup(metrics, "fidelity.key_transfer_median") == 0.8
    assert lookup(metrics, "fidelity.missing") is None and lookup(metrics, "nothing.x") is None
    assert is_finite(1) and is_finite(0.5)
    assert not any(is_finite(v) for v in (None, math.nan, math.inf, True, "1"))
