"""Does X' look like a real knee of its intended grade, and not like a caricature of it?

Pure functions of arrays (joint-space widths in px, osteophyte calls, the judge's class
indices, edit masks) that return numbers; the evaluation runs the models and lays them out.

- :func:`distribution_match`: the two-sample Kolmogorov-Smirnov statistic (and its p-value) and
  the Wasserstein distance between the joint-space widths of X' and those of real test knees of
  the intended grade; :func:`split_half_control` gives the same numbers for two random halves of
  the real widths, the value a generator of real knees would reach at that sample size.
- :func:`transfer_spread`: the quartiles of the key-transfer ratio, and the share of X' that
  overshoot the donor's width by more than half the recipient-donor gap (ratio > 1.5).
- :func:`intended_rate`: how often the judge calls X' its intended grade; the caricature excess
  is X''s rate minus the same rate of perfect (oracle) exchanges of the same pairs.
- :func:`mask_area`: the median share of the image an edit mask covers.
- :func:`failure_analysis`: why the judge disagrees with itself on an X' (its call on X' is not
  its call on the donor): the joint not found, an osteophyte the donor lacks or one it has that X'
  lacks, a joint narrower or wider than the donor's, or none of these.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

import numpy as np

__all__ = [
    "DIRECTION_SETS",
    "FAILURE_KINDS",
    "JOINT_TOLERANCE_PX",
    "OVERSHOOT_AT",
    "DirectionInputs",
    "Measured",
    "direction_numbers",
    "distribution_match",
    "failure_analysis",
    "grade_match_numbers",
    "intended_rate",
    "mask_area",
    "split_half_control",
    "transfer_spread",
]

#: A key-transfer ratio above this overshoots the donor by more than half the gap.
OVERSHOOT_AT = 1.5

#: The smallest tolerance (px) around the donor's joint-space width in the failure analysis:
#: below about half a pixel the measurement cannot tell two widths apart (the key-transfer
#: ratio's ``min_gap``).
JOINT_TOLERANCE_PX = 0.5

#: The failure analysis' counts, in the order the report lists them.
FAILURE_KINDS = (
    "refused",  # the joint measurement found no joint on X'
    "osteophyte_extra",  # X' has an osteophyte the donor has not (X'2: kept from the recipient)
    "osteophyte_missing",  # the donor has an osteophyte X' has not (X'1: not added)
    "joint_narrow",  # X''s joint space narrower than the donor's by more than the tolerance
    "joint_wide",  # wider than the donor's by more than the tolerance
    "osteophyte_and_joint",  # both an osteophyte and a joint-space miss
    "other",  # measured, osteophyte as on the donor, joint within the tolerance
)


def _widths(x: Any, name: str) -> np.ndarray:
    """A 1-D float array of widths in px (NaN: not measured)."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of widths in px, got shape {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError(f"{name} holds an infinite width: mark unmeasured images with NaN")
    return arr


def distribution_match(sample: Any, reference: Any) -> dict[str, Any]:
    """Two-sample comparison of the measured values of ``sample`` and ``reference`` (1-D, NaN
    = not measured, left out and counted).

    Returns ``{"ks", "ks_p", "wasserstein", "n", "n_reference", "n_missing"}``: the
    Kolmogorov-Smirnov statistic (the largest gap between the two empirical CDFs, in [0, 1]),
    its two-sided p-value (scipy's exact or asymptotic method) and the first Wasserstein
    distance (in the values' unit: the mean shift needed to turn one distribution into the
    other). NaN statistics when either side has no measured value. The p-value assumes
    independent draws: X' of pairs that share a recipient or donor are not, so read the p-value
    beside the same test on the oracle's X' of the same pairs.
    """
    from scipy.stats import ks_2samp, wasserstein_distance

    a, b = _widths(sample, "sample"), _widths(reference, "reference")
    fa, fb = a[np.isfinite(a)], b[np.isfinite(b)]
    out: dict[str, Any] = {
        "ks": math.nan,
        "ks_p": math.nan,
        "wasserstein": math.nan,
        "n": len(fa),
        "n_reference": len(fb),
        "n_missing": int(len(a) - len(fa)),
    }
    if len(fa) and len(fb):
        test = ks_2samp(fa, fb)
        out.update(
            ks=float(test.statistic),
            ks_p=float(test.pvalue),
            wasserstein=float(wasserstein_distance(fa, fb)),
        )
    return out


def split_half_control(reference: Any, seed: int = 0) -> dict[str, Any]:
    """:func:`distribution_match` between two random halves of the measured ``reference`` values
    (an odd one out is left out): what two samples of real knees of one grade score."""
    b = _widths(reference, "reference")
    fb = b[np.isfinite(b)]
    if len(fb) < 2:
        raise ValueError(f"need at least 2 measured reference values to halve, got {len(fb)}")
    perm = np.random.default_rng(seed).permutation(len(fb))
    half = len(fb) // 2
    return distribution_match(fb[perm[:half]], fb[perm[half : 2 * half]])


def transfer_spread(ratios: Any, overshoot_at: float = OVERSHOOT_AT) -> dict[str, Any]:
    """Quartiles and overshoot of key-transfer ratios (−inf: a refused X', a failure that sorts
    below every number; NaN: an uninformative pair, left out).

    Returns ``{"q25", "median", "q75", "overshoot_rate", "n_overshoot", "n"}``: quartiles by the
    inverted CDF (a quartile that falls on a failure is −inf), and the share of the ``n``
    informative pairs (failures included) whose ratio exceeds ``overshoot_at`` (1.5: X' moved
    past the donor's width by more than half the recipient-donor gap).
    """
    v = np.asarray(ratios, dtype=np.float64).ravel()
    kept = v[~np.isnan(v)]
    if np.isposinf(kept).any():
        raise ValueError("ratios hold +inf: a failure is -inf, an uninformative pair NaN")
    out: dict[str, Any] = {
        "q25": math.nan,
        "median": math.nan,
        "q75": math.nan,
        "overshoot_rate": math.nan,
        "n_overshoot": int((kept > overshoot_at).sum()),
        "n": len(kept),
    }
    if len(kept):
        q25, med, q75 = np.quantile(kept, [0.25, 0.5, 0.75], method="inverted_cdf")
        out.update(
            q25=float(q25),
            median=float(med),
            q75=float(q75),
            overshoot_rate=out["n_overshoot"] / len(kept),
        )
    return out


def intended_rate(calls: Any, intended: int) -> float:
    """Share of images whose class index (0 = the lower grade, 1 = the higher) is ``intended``
    (NaN for no image)."""
    c = np.asarray(calls).ravel()
    if intended not in (0, 1):
        raise ValueError(f"intended must be a class index 0 or 1, got {intended}")
    if len(c) and not np.isin(c, (0, 1)).all():
        raise ValueError(f"calls must be class indices 0 or 1, got {np.unique(c).tolist()}")
    return float((c == intended).mean()) if len(c) else math.nan


def mask_area(masks: Any) -> float | None:
    """Median over images of the share of the image an edit mask covers: the mean of a soft
    mask in [0, 1] of shape (N, H, W) or (N, 1, H, W). None when there is no mask (a model
    without an edit), so that "absent" is never read as "no area"."""
    if masks is None:
        return None
    m = np.asarray(masks, dtype=np.float64)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3 or len(m) == 0:
        raise ValueError(f"masks must be (N, H, W) or (N, 1, H, W) with N >= 1, got {m.shape}")
    if not np.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise ValueError("masks must hold finite values in [0, 1] (a soft mask)")
    return float(np.median(m.mean(axis=(1, 2))))


def failure_analysis(
    disagree: Any,
    refused: Any,
    osteophyte_x: Any,
    osteophyte_donor: Any,
    jsw_x: Any,
    jsw_recipient: Any,
    jsw_donor: Any,
    min_tolerance: float = JOINT_TOLERANCE_PX,
) -> dict[str, Any]:
    """Why the judge disagrees on the X' where ``disagree`` is True (all arrays (N,), one entry
    per pair; widths in px, NaN where not measured).

    Each disagreed X' falls in exactly one of: ``refused`` (no joint found on X'), an osteophyte
    miss only (``osteophyte_extra``: X' has one the donor lacks; ``osteophyte_missing``: the
    donor has one X' lacks), a joint-space miss only (``joint_narrow`` / ``joint_wide``: X''s
    width more than the tolerance below / above the donor's), ``osteophyte_and_joint``, or
    ``other`` (what the measurement sees matches the donor: an artefact, or the judge's own
    error). The tolerance is half the recipient-donor gap, at least ``min_tolerance`` px; a pair
    whose donor width is unmeasured has no joint verdict.

    Returns ``{"n_disagree", "n", <kind>: count for each of FAILURE_KINDS, "shares": {<kind>:
    count / n_disagree}}`` (shares NaN when the judge disagrees on none).
    """
    d = np.asarray(disagree, dtype=bool).ravel()
    arrays = {
        "refused": np.asarray(refused, dtype=bool).ravel(),
        "osteophyte_x": np.asarray(osteophyte_x, dtype=bool).ravel(),
        "osteophyte_donor": np.asarray(osteophyte_donor, dtype=bool).ravel(),
        "jsw_x": _widths(jsw_x, "jsw_x"),
        "jsw_recipient": _widths(jsw_recipient, "jsw_recipient"),
        "jsw_donor": _widths(jsw_donor, "jsw_donor"),
    }
    bad = {k: len(v) for k, v in arrays.items() if len(v) != len(d)}
    if bad:
        raise ValueError(f"every array needs one entry per pair ({len(d)}), got lengths {bad}")
    if min_tolerance < 0:
        raise ValueError(f"min_tolerance must be >= 0 px, got {min_tolerance}")
    a = arrays
    extra = a["osteophyte_x"] & ~a["osteophyte_donor"]
    missing = ~a["osteophyte_x"] & a["osteophyte_donor"]
    gap = np.abs(a["jsw_recipient"] - a["jsw_donor"])
    tol = np.fmax(0.5 * gap, min_tolerance)  # fmax: an unmeasured recipient keeps the minimum
    with np.errstate(invalid="ignore"):  # NaN widths compare False: no joint verdict
        narrow = a["jsw_x"] < a["jsw_donor"] - tol
        wide = a["jsw_x"] > a["jsw_donor"] + tol
    measured = d & ~a["refused"]
    osteo, joint = extra | missing, narrow | wide
    counts = {
        "refused": d & a["refused"],
        "osteophyte_extra": measured & extra & ~joint,
        "osteophyte_missing": measured & missing & ~joint,
        "joint_narrow": measured & narrow & ~osteo,
        "joint_wide": measured & wide & ~osteo,
        "osteophyte_and_joint": measured & osteo & joint,
        "other": measured & ~osteo & ~joint,
    }
    n_disagree = int(d.sum())
    out: dict[str, Any] = {"n_disagree": n_disagree, "n": len(d)}
    out.update({k: int(v.sum()) for k, v in counts.items()})
    out["shares"] = {
        k: (int(v.sum()) / n_disagree if n_disagree else math.nan) for k, v in counts.items()
    }
    return out


# ---------------------------------------------------------------------------------------------
# The section: the numbers above for one direction, laid out
# ---------------------------------------------------------------------------------------------


class DirectionInputs(NamedTuple):
    """What the evaluation measured in one direction, one entry per test pair (widths in px,
    NaN where refused; class indices 0 = the lower grade, 1 = the higher)."""

    intended: int  # the donor's class: the grade X' is labelled with
    jsw_x: np.ndarray  # X'
    refused: np.ndarray  # the joint measurement found no joint on X'
    osteophyte_x: np.ndarray
    jsw_recipient: np.ndarray
    jsw_donor: np.ndarray
    osteophyte_donor: np.ndarray
    jsw_real: np.ndarray  # real test knees of the intended grade (their own count)
    transfer: np.ndarray  # key-transfer ratios (−inf refused, NaN uninformative)
    judge_x: np.ndarray  # the judge's call on X'
    judge_donor: np.ndarray  # its call on the donor
    oracle_jsw_x: np.ndarray | None = None  # the same pairs exchanged perfectly (phantoms)
    oracle_refused: np.ndarray | None = None
    oracle_osteophyte_x: np.ndarray | None = None
    oracle_judge_x: np.ndarray | None = None


def direction_numbers(d: DirectionInputs, seed: int = 0) -> dict[str, Any]:
    """Every number of one direction (see :class:`kecae.results.GradeMatchDirection`)."""
    spread = transfer_spread(d.transfer)
    intended = intended_rate(d.judge_x, d.intended)
    out: dict[str, Any] = {
        "jsw": distribution_match(d.jsw_x, d.jsw_real),
        "jsw_control": split_half_control(d.jsw_real, seed=seed),
        "key_transfer_q25": spread["q25"],
        "key_transfer_q75": spread["q75"],
        "overshoot_rate": spread["overshoot_rate"],
        "overshoot_n": spread["n_overshoot"],
        "judge_intended": intended,
        "failures": failure_analysis(
            d.judge_x != d.judge_donor,
            d.refused,
            d.osteophyte_x,
            d.osteophyte_donor,
            d.jsw_x,
            d.jsw_recipient,
            d.jsw_donor,
        ),
    }
    oracle_arrays = (d.oracle_jsw_x, d.oracle_refused, d.oracle_osteophyte_x, d.oracle_judge_x)
    if all(a is not None for a in oracle_arrays):
        oracle = intended_rate(d.oracle_judge_x, d.intended)  # the same pairs, perfect
        out.update(
            jsw_oracle=distribution_match(d.oracle_jsw_x, d.jsw_real),
            judge_intended_oracle=oracle,
            caricature_excess=intended - oracle,
            failures_oracle=failure_analysis(
                np.asarray(d.oracle_judge_x) != d.judge_donor,
                d.oracle_refused,
                d.oracle_osteophyte_x,
                d.osteophyte_donor,
                d.oracle_jsw_x,
                d.jsw_recipient,
                d.jsw_donor,
            ),
        )
    return out


class Measured(Protocol):
    """The joint measurement of one image set (:mod:`kecae.evaluation.evaluate`)."""

    ok: np.ndarray  # a joint was found
    jsw: np.ndarray  # px, NaN when refused
    osteophytes: np.ndarray


#: Per direction: X', its recipient, its donor, the donor's class, the real knees of that grade.
DIRECTION_SETS = {
    "kl0_to_kl2": ("x1_ex", "x1", "x2", 1, "kl2"),
    "kl2_to_kl0": ("x2_ex", "x2", "x1", 0, "kl0"),
}


def grade_match_numbers(
    measured: Mapping[str, Measured],
    measured_real: Mapping[str, Measured],
    judge: Mapping[str, np.ndarray],
    transfer: Mapping[str, np.ndarray],
    oracle: tuple[Mapping[str, Measured], Mapping[str, np.ndarray]] | None = None,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """:func:`direction_numbers` of both directions from the evaluation's image sets: joint
    measurements of ``x1``, ``x2``, ``x1_ex``, ``x2_ex`` and of the real test knees (``kl0``,
    ``kl2``), the judge's calls on the same sets, the key-transfer ratios by direction, and
    (phantoms) the oracle's measurements and judge's calls of its ``x1_ex`` / ``x2_ex``."""
    out = {}
    for direction, (ex, recipient, donor, cls, real) in DIRECTION_SETS.items():
        m = measured[ex]
        inputs = DirectionInputs(
            intended=cls,
            jsw_x=m.jsw,
            refused=~np.asarray(m.ok, dtype=bool),
            osteophyte_x=m.osteophytes,
            jsw_recipient=measured[recipient].jsw,
            jsw_donor=measured[donor].jsw,
            osteophyte_donor=measured[donor].osteophytes,
            jsw_real=measured_real[real].jsw,
            transfer=transfer[direction],
            judge_x=judge[ex],
            judge_donor=judge[donor],
        )
        if oracle is not None:
            o_measured, o_judge = oracle
            inputs = inputs._replace(
                oracle_jsw_x=o_measured[ex].jsw,
                oracle_refused=~np.asarray(o_measured[ex].ok, dtype=bool),
                oracle_osteophyte_x=o_measured[ex].osteophytes,
                oracle_judge_x=o_judge[ex],
            )
        out[direction] = direction_numbers(inputs, seed=seed)
    return out
