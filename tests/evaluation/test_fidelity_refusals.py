"""The ground-truth section's osteophyte rates: a refused X' fails its direction."""

from __future__ import annotations

import numpy as np
import pytest

from kecae.evaluation.inputs import Measured
from kecae.evaluation.sections import fidelity_of


def _measured(ok, osteophytes, jsw):
    ok = np.asarray(ok, bool)
    return Measured(
        ok=ok,
        jsw=np.where(ok, np.asarray(jsw, float), np.nan),
        osteophytes=np.asarray(osteophytes, bool) & ok,
        joint_row=np.where(ok, 32.0, np.nan),
    )


def test_a_refused_x2_keeps_its_spur_and_a_refused_x1_gains_none():
    n = 4
    ones = [True] * n
    # recipients: X1 (KL-0) spur-free with wide joints, X2 (KL-2) all with a spur, narrow joints
    x1 = _measured(ones, [False] * n, [6.0] * n)
    x2 = _measured(ones, [True] * n, [2.0] * n)
    # X'2: pair 0 removed its spur, pair 1 kept it, pairs 2 and 3 refused by the measurement
    x2_ex = _measured([True, True, False, False], [False, True, False, False], [6.0, 6.0, 0, 0])
    # X'1: pair 0 gained a spur, pair 1 did not, pairs 2 and 3 refused
    x1_ex = _measured([True, True, False, False], [True, False, False, False], [2.0, 2.0, 0, 0])
    measured = {
        "x1": x1,
        "x2": x2,
        "x1_ex": x1_ex,
        "x2_ex": x2_ex,
        "x1_hat": x1,
        "x2_hat": x2,
        "x1_self": x1,
        "x2_self": x2,
    }
    real = {"kl0": _measured(ones, [False] * n, [6.0] * n), "kl2": x2}
    rng = np.random.default_rng(0)
    img = rng.uniform(-1, 1, (n, 64, 64)).astype(np.float32)
    images = dict.fromkeys(("x1", "x2", "x1_ex", "x2_ex"), img)
    section, _ = fidelity_of(measured, real, images, 64, 0.2)
    # X'2: one removed, one kept, two refused (kept): 3 of 4 keep a spur
    assert section.osteophyte_rate_x2_ex.value == pytest.approx(0.75)
    assert section.osteophyte_removal_rate.value == pytest.approx(0.25)
    assert section.osteophyte_gap_kl2_to_kl0 == pytest.approx(0.75)
    # X'1: one gained, three did not (two of them refused)
    assert section.osteophyte_rate_x1_ex.value == pytest.approx(0.25)
    assert section.osteophyte_transfer_rate.value == pytest.approx(0.25)
    assert section.refusal_rate == pytest.approx(0.5)
