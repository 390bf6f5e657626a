"""Paired comparisons over seeds (kecae.evaluation.paired) against hand computations and
against statsmodels' power solver."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from kecae.evaluation.paired import minimal_detectable_effect, paired_difference, paired_power


def test_paired_difference_by_hand():
    d = paired_difference([0.8, 0.9, 0.7], [0.75, 0.8, 0.7])
    assert d["values"] == pytest.approx([0.05, 0.1, 0.0])
    assert d["mean"] == pytest.approx(0.05) and d["std"] == pytest.approx(0.05)
    # paired t: t = mean / (std / sqrt(n)) = sqrt(3); two-sided p from Student t with 2 dof
    assert d["p_value"] == pytest.approx(2 * stats.t.sf(math.sqrt(3), 2))
    # 95 % interval: mean ± t(0.975, 2) · std / sqrt(3), t(0.975, 2) = 4.302653
    half = 4.302653 * 0.05 / math.sqrt(3)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((0.05 - half, 0.05 + half), rel=1e-6)
    # exact Wilcoxon: the zero difference is dropped; the 2 others both positive: p = 2 / 2**2
    assert d["wilcoxon_p"] == pytest.approx(0.5) and d["wilcoxon_min_p"] == 0.25
    three = paired_difference([0.9, 0.8, 0.7], [0.8, 0.75, 0.6])
    assert three["wilcoxon_p"] == pytest.approx(0.25)  # all 3 positive: the floor at 3 seeds
    single = paired_difference([0.6], [0.5])
    assert single["std"] == 0.0 and math.isnan(single["p_value"]) and math.isnan(single["mde"])
    assert math.isnan(single["ci_low"])
    with pytest.raises(ValueError, match="equal-length"):
        paired_difference([0.5, 0.6], [0.5])


@pytest.mark.parametrize("n", [3, 5, 8, 20])
def test_minimal_detectable_effect_matches_statsmodels(n):
    from statsmodels.stats.power import TTestPower

    # statsmodels solves for the standardised effect (mean / sd) of a one-sample t-test, which
    # is the paired t-test on the differences
    d = TTestPower().solve_power(nobs=n, alpha=0.05, power=0.8, alternative="two-sided")
    assert minimal_detectable_effect(0.02, n) == pytest.approx(0.02 * d, rel=1e-4)
    assert paired_power(0.02 * d, 0.02, n) == pytest.approx(0.8, abs=1e-6)


def test_minimal_detectable_effect_edges():
    # it scales with the spread: 5 seeds need 1.68 spreads of the per-seed differences
    assert minimal_detectable_effect(2.0, 5) == pytest.approx(2 * 1.682, abs=2e-3)
    assert minimal_detectable_effect(0.0, 5) == 0.0
    assert math.isnan(minimal_detectable_effect(1.0, 1))
    with pytest.raises(ValueError, match="n >= 2"):
        paired_power(1.0, 1.0, 1)
    assert paired_difference([0.7] * 5, [0.6] * 5)["mde"] == 0.0  # no spread at all
