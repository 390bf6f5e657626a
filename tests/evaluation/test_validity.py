"""Degenerate classifiers (kecae.evaluation.validity), on confusion matrices worked by hand."""

from __future__ import annotations

import pytest

from kecae.evaluation.validity import classifier_validity


@pytest.mark.parametrize(
    "confusion, degenerate, words",
    [
        # the run: both classifiers call every knee KL-0 (8 KL-0, 7 KL-2)
        ([[8, 0], [7, 0]], True, "calls 100 % of the test knees KL-0 (accuracy 53.3 %"),
        # 19 of 20 calls KL-2 (95 %): degenerate
        ([[1, 9], [0, 10]], True, "calls 95 % of the test knees KL-2"),
        # both classes called, but no better than the majority rate (60 %) + 2 points
        ([[40, 20], [19, 21]], True, "61.0 % accurate, no better than calling every knee KL-0"),
        # a working classifier
        ([[50, 10], [8, 32]], False, ""),
    ],
)
def test_classifier_validity(confusion, degenerate, words):
    v = classifier_validity(confusion, (0, 2), who="the judge")
    assert v["degenerate"] is degenerate and words in v["reason"]
    assert v["n"] == sum(map(sum, confusion))
    assert sum(v["called_share"]) == pytest.approx(1.0)


def test_other_grades_and_bad_input():
    v = classifier_validity([[0, 5], [0, 5]], (0, 1))
    assert v["reason"].endswith("KL-1 (accuracy 50.0 %, the share of the larger grade is 50.0 %)")
    assert classifier_validity([[0, 0], [0, 0]])["degenerate"] is None
    with pytest.raises(ValueError, match="2x2"):
        classifier_validity([[1, 2, 3]])
