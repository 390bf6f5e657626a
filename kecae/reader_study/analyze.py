"""``kecae reader-study analyze``: the paper's Table III from a study's answers.

Per reader: accuracy of the KL call on the generated images, overall and per intended label
(X'2 -> KL-0, X'1 -> KL-2), with Wilson 95 % intervals; mean realism overall and per label; the
same on the real control images (the number each of those must be read against); in phase 2 the
share of comparisons called a match, and of sham comparisons (a real image beside itself). The
"all readers" row pools the readers' calls; its intervals come from a bootstrap over images,
since the readers' calls on one image are not independent. Agreement: Cohen's kappa for each pair
of readers and Fleiss' kappa for three or more, on the images every reader in the group has
called, with seeded bootstrap 95 % intervals over images. One kappa implementation:
:func:`kecae.evaluation.agreement.cohen_kappa` / :func:`~kecae.evaluation.agreement.fleiss_kappa`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kecae.config import check_values
from kecae.reader_study import db
from kecae.reader_study.config import AnalyzeConfig

# The measures (SciPy, scikit-learn) are imported by the analysis: the command line imports
# this module and stays light.

LABELS = ("all", "KL-0", "KL-2")  # "KL-0": X'2 (kl2_to_kl0) or real KL-0; "KL-2": X'1 or real KL-2
_GRADE = {"KL-0": 0, "KL-2": 2}
N_BOOT = 2000


# ---------------------------------------------------------------------------------------------
# Result types (the metrics.json section "reader_study" is ReaderStudyResult.to_dict())
# ---------------------------------------------------------------------------------------------


@dataclass
class Rate:
    """A share of calls with its 95 % interval; None where there is no call."""

    value: float | None
    n: int
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass
class Mean:
    """Mean and sample standard deviation of scores; None where there is no score."""

    mean: float | None
    std: float | None
    n: int


@dataclass
class ReaderRow:
    """One row of Table III (one reader, or all readers pooled)."""

    reader: str
    answered: int  # answers given, both phases
    total: int  # answers asked for, both phases
    accuracy: dict[str, Rate]  # generated images, by LABELS
    realism: dict[str, Mean]  # generated images, by LABELS
    control_accuracy: dict[str, Rate]  # real control images, by LABELS
    control_realism: dict[str, Mean]  # real control images, by LABELS
    match_rate: dict[str, Rate]  # phase 2: exchanged comparisons called a match, by LABELS
    sham_match_rate: Rate  # phase 2: a real image beside itself called a match


@dataclass
class Agreement:
    """Cohen's (two readers) or Fleiss' (three or more) kappa of the KL call."""

    statistic: str  # "cohen_kappa" | "fleiss_kappa"
    readers: list[str]
    images: str  # "generated" | "control"
    kappa: float | None
    ci_low: float | None
    ci_high: float | None
    n_items: int  # images called by every reader of the group


@dataclass
class ReaderStudyResult:
    """Table III and the agreement of one study."""

    study: str
    pairs: int
    generated_images: int
    controls: int
    readers: list[ReaderRow]
    overall: ReaderRow  # all readers pooled
    agreement: list[Agreement] = field(default_factory=list)
    n_boot: int = N_BOOT
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Statistics: functions of arrays
# ---------------------------------------------------------------------------------------------


def _none(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def rate(correct: np.ndarray) -> Rate:
    """Share of True among the non-NaN entries of ``correct`` (1/0/NaN), Wilson 95 % CI."""
    from kecae.evaluation.metrics import fraction

    c = np.asarray(correct, dtype=np.float64).ravel()
    c = c[~np.isnan(c)]
    f = fraction(c.astype(bool))
    return Rate(_none(f["value"]), f["n"], _none(f["ci_low"]), _none(f["ci_high"]))


def mean_score(scores: np.ndarray) -> Mean:
    """Mean and sample std of the non-NaN scores."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    s = s[~np.isnan(s)]
    if not len(s):
        return Mean(None, None, 0)
    return Mean(float(s.mean()), float(s.std(ddof=1)) if len(s) > 1 else 0.0, len(s))


def bootstrap_ci(
    stat: Callable[[np.ndarray], float],
    n_items: int,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float | None, float | None]:
    """Percentile interval of ``stat(idx)`` over ``n_boot`` resamples ``idx`` of the item
    indices (with replacement). Resamples where the statistic is undefined (NaN, e.g. kappa of
    a resample where everyone made one call) are left out; None when all are."""
    if n_items < 2 or n_boot < 1:
        return None, None
    rng = np.random.default_rng(seed)
    vals = np.array([stat(rng.integers(0, n_items, n_items)) for _ in range(n_boot)])
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return None, None
    a = (1.0 - level) / 2
    lo, hi = np.quantile(vals, [a, 1.0 - a])
    return float(lo), float(hi)


def kappa(calls: np.ndarray) -> float:
    """Cohen's kappa for two rows of calls (readers x items), Fleiss' kappa for three or more."""
    from kecae.evaluation.agreement import cohen_kappa, fleiss_kappa

    c = np.asarray(calls)
    if c.shape[0] == 2:
        return cohen_kappa(c[0], c[1])
    return fleiss_kappa(c.T)


def agreement(
    calls: np.ndarray, *, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float | None, float | None, float | None, int]:
    """(kappa, ci_low, ci_high, n_items) of readers x items calls (NaN = not called), on the
    items every reader has called; a seeded bootstrap over those items gives the interval."""
    c = np.asarray(calls, dtype=np.float64)
    full = c[:, ~np.isnan(c).any(0)].astype(np.int64)
    n = full.shape[1]
    if n < 2:
        return None, None, None, n
    lo, hi = bootstrap_ci(lambda idx: kappa(full[:, idx]), n, n_boot=n_boot, seed=seed)
    return _none(kappa(full)), lo, hi, n


def _pooled_rate(correct: np.ndarray, n_boot: int, seed: int) -> Rate:
    """Share of correct calls pooled over readers (rows) and items (columns), with a bootstrap
    interval over items (the readers' calls on one item are correlated)."""
    c = np.asarray(correct, dtype=np.float64)
    answered = ~np.isnan(c)
    if not answered.any():
        return Rate(None, 0)
    keep = answered.any(0)
    c = c[:, keep]

    def stat(idx: np.ndarray) -> float:
        sub = c[:, idx]
        return float(np.nanmean(sub)) if (~np.isnan(sub)).any() else math.nan

    lo, hi = bootstrap_ci(stat, c.shape[1], n_boot=n_boot, seed=seed)
    return Rate(float(np.nanmean(c)), int((~np.isnan(c)).sum()), lo, hi)


# ---------------------------------------------------------------------------------------------
# From the database to the table
# ---------------------------------------------------------------------------------------------


@dataclass
class _Answers:
    """Answers as readers x items arrays (NaN = not answered), with each item's truth."""

    names: list[str]
    kind: np.ndarray  # (I,) "exchanged" | "control" | "sham"
    phase: np.ndarray  # (I,)
    grade: np.ndarray  # (I,) intended or true grade, 0 or 2
    kl: np.ndarray  # (R, I)
    realism: np.ndarray  # (R, I)
    match: np.ndarray  # (R, I)
    total: np.ndarray  # (R,) scheduled items per reader


def _load(con: Any) -> _Answers:
    items = con.execute("SELECT id, phase, kind, grade FROM items ORDER BY id").fetchall()
    readers = con.execute("SELECT id, name FROM readers ORDER BY id").fetchall()
    col = {r["id"]: n for n, r in enumerate(items)}
    row = {r["id"]: n for n, r in enumerate(readers)}
    shape = (len(readers), len(items))
    kl, realism, match = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for a in con.execute("SELECT reader_id, item_id, kl_call, realism, match FROM answers"):
        i, j = row[a["reader_id"]], col[a["item_id"]]
        for arr, key in ((kl, "kl_call"), (realism, "realism"), (match, "match")):
            if a[key] is not None:
                arr[i, j] = a[key]
    total = np.zeros(len(readers), dtype=np.int64)
    for r in con.execute("SELECT reader_id, COUNT(*) AS n FROM schedule GROUP BY reader_id"):
        total[row[r["reader_id"]]] = r["n"]
    return _Answers(
        names=[r["name"] for r in readers],
        kind=np.array([r["kind"] for r in items]),
        phase=np.array([r["phase"] for r in items]),
        grade=np.array([r["grade"] for r in items]),
        kl=kl,
        realism=realism,
        match=match,
        total=total,
    )


def _columns(a: _Answers, phase: int, kind: str, label: str) -> np.ndarray:
    sel = (a.phase == phase) & (a.kind == kind)
    if label != "all":
        sel &= a.grade == _GRADE[label]
    return sel


def _row(
    a: _Answers, rows: np.ndarray, name: str, pooled: bool, n_boot: int, seed: int
) -> ReaderRow:
    """Table III row of the readers ``rows`` (one reader, or all pooled)."""
    correct = np.where(np.isnan(a.kl), np.nan, a.kl == a.grade[None, :])  # (R, I)

    def share(values: np.ndarray, cols: np.ndarray) -> Rate:
        v = values[np.ix_(rows, np.flatnonzero(cols))]
        return _pooled_rate(v, n_boot, seed) if pooled else rate(v)

    def mean(values: np.ndarray, cols: np.ndarray) -> Mean:
        return mean_score(values[np.ix_(rows, np.flatnonzero(cols))])

    answered = int((~np.isnan(a.kl[rows]) | ~np.isnan(a.match[rows])).sum())
    return ReaderRow(
        reader=name,
        answered=answered,
        total=int(a.total[rows].sum()),
        accuracy={lab: share(correct, _columns(a, 1, "exchanged", lab)) for lab in LABELS},
        realism={lab: mean(a.realism, _columns(a, 1, "exchanged", lab)) for lab in LABELS},
        control_accuracy={lab: share(correct, _columns(a, 1, "control", lab)) for lab in LABELS},
        control_realism={lab: mean(a.realism, _columns(a, 1, "control", lab)) for lab in LABELS},
        match_rate={lab: share(a.match, _columns(a, 2, "exchanged", lab)) for lab in LABELS},
        sham_match_rate=share(a.match, _columns(a, 2, "sham", "all")),
    )


def analyze_study(study: str | Path, *, n_boot: int = N_BOOT, seed: int = 0) -> ReaderStudyResult:
    """Table III and the readers' agreement for a study folder (see the module docstring)."""
    check_values(AnalyzeConfig(study=str(study), bootstrap=n_boot, seed=seed))
    study = Path(study)
    con = db.open_study(study)
    try:
        settings = db.meta(con)
        a = _load(con)
    finally:
        con.close()
    every = list(range(len(a.names)))
    rows = [_row(a, np.array([i]), name, False, n_boot, seed) for i, name in enumerate(a.names)]
    overall = _row(a, np.array(every), "all readers", True, n_boot, seed)

    agree = []
    for images, kind in (("generated", "exchanged"), ("control", "control")):
        cols = np.flatnonzero(_columns(a, 1, kind, "all"))
        if not len(cols):
            continue
        groups: list[tuple[str, tuple[int, ...]]] = [
            ("cohen_kappa", g) for g in itertools.combinations(every, 2)
        ]
        if len(a.names) >= 3:
            groups.append(("fleiss_kappa", tuple(every)))
        for statistic, g in groups:
            k, lo, hi, n = agreement(a.kl[np.ix_(np.array(g), cols)], n_boot=n_boot, seed=seed)
            agree.append(Agreement(statistic, [a.names[i] for i in g], images, k, lo, hi, n))
    return ReaderStudyResult(
        study=str(study),
        pairs=int(settings.get("pairs", 0)),
        generated_images=int(_columns(a, 1, "exchanged", "all").sum()),
        controls=int(_columns(a, 1, "control", "all").sum()),
        readers=rows,
        overall=overall,
        agreement=agree,
        n_boot=n_boot,
        seed=seed,
    )
