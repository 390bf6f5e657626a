"""kecae.evaluation.grade_match on hand-made inputs: every number worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kecae.evaluation import grade_match as gm

NAN, INF = math.nan, math.inf


def test_distribution_match_shift_by_one():
    # CDFs of {1,2,3} and {2,3,4} differ by 1/3 at most; moving every mass by 1 px costs 1.
    # With 3 + 3 values every split has a gap >= 1/3, so the exact p-value is 1.
    m = gm.distribution_match([1.0, 2.0, 3.0, NAN], [2.0, 3.0, 4.0])
    assert m["ks"] == pytest.approx(1 / 3)
    assert m["wasserstein"] == pytest.approx(1.0)
    assert m["ks_p"] == pytest.approx(1.0)
    assert (m["n"], m["n_reference"], m["n_missing"]) == (3, 3, 1)


def test_distribution_match_disjoint_samples():
    # two of the C(8, 4) = 70 splits of 4 + 4 values separate them completely: p = 2 / 70
    m = gm.distribution_match([0.0] * 4, [1.0] * 4)
    assert m["ks"] == 1.0
    assert m["wasserstein"] == pytest.approx(1.0)
    assert m["ks_p"] == pytest.approx(2 / 70)


def test_distribution_match_nothing_measured_is_nan_not_zero():
    m = gm.distribution_match([NAN, NAN], [1.0, 2.0])
    assert math.isnan(m["ks"]) and math.isnan(m["wasserstein"]) and math.isnan(m["ks_p"])
    assert (m["n"], m["n_missing"]) == (0, 2)


def test_distribution_match_refuses_bad_input():
    with pytest.raises(ValueError, match="1-D"):
        gm.distribution_match(np.zeros((2, 2)), [1.0])
    with pytest.raises(ValueError, match="infinite"):
        gm.distribution_match([INF], [1.0])


def test_split_half_control_halves_and_odd_one_out():
    # five equal widths (and a NaN): halves of 2 and 2, identical, distance 0
    m = gm.split_half_control([3.0, 3.0, 3.0, NAN, 3.0, 3.0])
    assert (m["n"], m["n_reference"]) == (2, 2)
    assert m["ks"] == 0.0 and m["wasserstein"] == 0.0
    # halves of {0, 0, 10, 10}: either both hold {0, 10} (distance 0) or they are {0, 0} and
    # {10, 10} (distance 10); the seed picks one, the same every time
    a = gm.split_half_control([0.0, 0.0, 10.0, 10.0], seed=3)
    assert a == gm.split_half_control([0.0, 0.0, 10.0, 10.0], seed=3)
    assert a["wasserstein"] in (0.0, 10.0)
    with pytest.raises(ValueError, match="at least 2"):
        gm.split_half_control([1.0, NAN])


def test_transfer_spread_quartiles_failures_and_overshoot():
    # kept: -inf (a refused X'), 0.2, 1.0, 1.6, 2.0 (NaN left out). Inverted CDF: q25 is the
    # 2nd, the median the 3rd, q75 the 4th value; 1.6 and 2.0 overshoot (> 1.5), 2 of 5
    s = gm.transfer_spread([2.0, -INF, 1.0, NAN, 0.2, 1.6])
    assert (s["q25"], s["median"], s["q75"]) == (0.2, 1.0, 1.6)
    assert s["overshoot_rate"] == pytest.approx(0.4)
    assert (s["n_overshoot"], s["n"]) == (2, 5)
    # exactly 1.5 is half the gap past the donor, not more
    assert gm.transfer_spread([1.5, 1.0])["overshoot_rate"] == 0.0
    # failures below the first quartile make it a failure
    assert gm.transfer_spread([-INF, -INF, 1.0, 1.0])["q25"] == -INF
    empty = gm.transfer_spread([NAN])
    assert empty["n"] == 0 and math.isnan(empty["overshoot_rate"])
    with pytest.raises(ValueError, match=r"\+inf"):
        gm.transfer_spread([INF])


def test_intended_rate():
    assert gm.intended_rate([1, 1, 0, 1], 1) == 0.75
    assert gm.intended_rate([1, 1, 0, 1], 0) == 0.25
    assert math.isnan(gm.intended_rate([], 1))
    with pytest.raises(ValueError, match="class index"):
        gm.intended_rate([1], 2)
    with pytest.raises(ValueError, match="class indices"):
        gm.intended_rate([2], 1)


def test_mask_area_median_share_and_absent():
    masks = np.array(
        [
            [[0.0, 0.0], [0.0, 0.0]],  # 0
            [[1.0, 0.0], [0.0, 0.0]],  # 0.25
            [[1.0, 1.0], [0.5, 0.5]],  # 0.75
        ]
    )
    assert gm.mask_area(masks) == pytest.approx(0.25)
    assert gm.mask_area(masks[:, None]) == pytest.approx(0.25)  # (N, 1, H, W)
    assert gm.mask_area(None) is None  # no edit mask: absent, never 0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gm.mask_area(masks * 2)
    with pytest.raises(ValueError, match="N >= 1"):
        gm.mask_area(np.zeros((0, 2, 2)))


def _pairs():
    """Eleven pairs: (disagree, refused, osteophyte X', osteophyte donor, JSW X', recipient,
    donor) and the kind each must be counted as."""
    rows = [
        (True, True, False, False, NAN, 2.2, 3.5, "refused"),
        (True, False, True, False, 3.5, 2.2, 3.5, "osteophyte_extra"),  # X'2 kept a spur
        (True, False, False, True, 2.2, 3.5, 2.2, "osteophyte_missing"),  # X'1 without one
        (True, False, False, False, 2.3, 2.2, 3.5, "joint_narrow"),  # tol 0.65: 2.3 < 2.85
        (True, False, False, False, 6.9, 2.2, 3.5, "joint_wide"),  # the report's 6.9 vs 3.5
        (True, False, True, False, 2.2, 2.2, 3.5, "osteophyte_and_joint"),
        (True, False, False, False, 3.3, 2.2, 3.5, "other"),  # within 0.65 of the donor
        (False, False, True, False, 2.2, 2.2, 3.5, None),  # the judge agrees: not counted
        (True, False, False, False, 3.75, 3.0, 3.2, "joint_wide"),  # gap 0.2: tol 0.5
        (True, False, False, False, 3.65, 3.0, 3.2, "other"),  # within the 0.5 px minimum
        (True, False, False, False, 2.0, 3.5, NAN, "other"),  # donor unmeasured: no verdict
    ]
    columns = list(zip(*rows, strict=True))
    return [np.array(c) for c in columns[:7]], list(columns[7])


def test_failure_analysis_counts_every_kind_once():
    arrays, kinds = _pairs()
    f = gm.failure_analysis(*arrays)
    assert (f["n_disagree"], f["n"]) == (10, 11)
    want = {k: kinds.count(k) for k in gm.FAILURE_KINDS}
    assert {k: f[k] for k in gm.FAILURE_KINDS} == want
    assert want == {
        "refused": 1,
        "osteophyte_extra": 1,
        "osteophyte_missing": 1,
        "joint_narrow": 1,
        "joint_wide": 2,
        "osteophyte_and_joint": 1,
        "other": 3,
    }
    assert sum(f[k] for k in gm.FAILURE_KINDS) == f["n_disagree"]
    assert f["shares"]["joint_wide"] == pytest.approx(0.2)
    assert f["shares"]["other"] == pytest.approx(0.3)


def test_failure_analysis_tolerance_and_no_disagreement():
    arrays, _ = _pairs()
    # a 1 px minimum tolerance puts pair 8 (0.55 px above its donor) back within it
    f = gm.failure_analysis(*arrays, min_tolerance=1.0)
    assert f["joint_wide"] == 1 and f["other"] == 4
    none = gm.failure_analysis(np.zeros(11, bool), *arrays[1:])
    assert none["n_disagree"] == 0 and all(math.isnan(v) for v in none["shares"].values())
    with pytest.raises(ValueError, match="one entry per pair"):
        gm.failure_analysis(arrays[0][:3], *arrays[1:])


def test_direction_numbers_caricature_excess_against_the_oracle():
    # four X'2 (intended KL-0, class 0): the judge calls 4 of 4 KL-0, the oracle's X' 3 of 4:
    # X' is called its grade 25 points more often than a perfect exchange (a caricature)
    d = gm.DirectionInputs(
        intended=0,
        jsw_x=np.array([3.5, 3.6, 3.4, NAN]),
        refused=np.array([False, False, False, True]),
        osteophyte_x=np.array([False, True, False, False]),
        jsw_recipient=np.full(4, 2.2),
        jsw_donor=np.full(4, 3.5),
        osteophyte_donor=np.zeros(4, bool),
        jsw_real=np.array([3.4, 3.5, 3.6, 3.5]),
        transfer=np.array([1.0, 1.1, 0.9, -INF]),
        judge_x=np.array([0, 0, 0, 0]),
        judge_donor=np.array([0, 1, 0, 1]),
    )
    plain = gm.direction_numbers(d)
    assert plain["judge_intended"] == 1.0 and "caricature_excess" not in plain
    assert plain["jsw"]["n_missing"] == 1 and plain["overshoot_rate"] == 0.0
    # sorted -inf, 0.9, 1.0, 1.1: the first quartile is the refused X' (inverted CDF)
    assert (plain["key_transfer_q25"], plain["key_transfer_q75"]) == (-INF, 1.0)
    # the judge disagrees with its call on donors 1 and 3: X' 1 kept a spur, X' 3 was refused
    f = plain["failures"]
    assert (f["n_disagree"], f["osteophyte_extra"], f["refused"]) == (2, 1, 1)
    full = gm.direction_numbers(
        d._replace(
            oracle_jsw_x=np.full(4, 3.5),
            oracle_refused=np.zeros(4, bool),
            oracle_osteophyte_x=np.zeros(4, bool),
            oracle_judge_x=np.array([0, 0, 0, 1]),
        )
    )
    assert full["judge_intended_oracle"] == 0.75
    assert full["caricature_excess"] == pytest.approx(0.25)
    assert full["failures_oracle"]["n_disagree"] == 1  # oracle X' 1 called KL-0, donor KL-2
    assert full["failures_oracle"]["other"] == 1
