"""Paired comparisons over seeds: a row of a study against its baseline, seed by seed.

Seed ``s`` gives both rows the same initial weights (and, where the rows allow, the same batch
order), so the per-seed differences remove most of what the seed moves. For them: the mean with
its 95 % interval (Student t), the two-sided paired t-test, the exact Wilcoxon signed-rank test
and the smallest p it can reach with n seeds, and the minimal detectable effect: the true mean
difference the t-test would find (p < alpha) with the given power, for the spread measured.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

#: Two-sided level and power of the minimal detectable effect.
ALPHA, POWER = 0.05, 0.8


def paired_difference(values: list[float], baseline: list[float]) -> dict[str, Any]:
    """Per-seed differences ``values[i] - baseline[i]``: mean, sample std, n, values, the 95 %
    interval of the mean (``ci_low``, ``ci_high``), the two-sided paired t-test p-value (NaN
    when n < 2 or every difference is equal), the exact two-sided Wilcoxon signed-rank p-value
    and its floor 2 / 2**n, and ``mde``, the minimal detectable effect at 80 % power (NaN when
    n < 2)."""
    from scipy import stats

    a, b = np.asarray(values, float), np.asarray(baseline, float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(
            f"values and baseline must be equal-length 1-D lists (one entry per "
            f"seed), got shapes {a.shape} and {b.shape}"
        )
    d = a - b
    n = len(d)
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    p = wilcoxon = low = high = math.nan
    if n > 1:
        half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * sd / math.sqrt(n)
        low, high = float(d.mean()) - half, float(d.mean()) + half
    if n > 1 and np.ptp(d) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_rel(a, b).pvalue)
    if n > 1 and np.any(d != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wilcoxon = float(stats.wilcoxon(d, method="exact").pvalue)
    return {
        "mean": float(d.mean()),
        "std": sd,
        "n": n,
        "values": [float(x) for x in d],
        "ci_low": low,
        "ci_high": high,
        "p_value": p,
        "wilcoxon_p": wilcoxon,
        "wilcoxon_min_p": 2.0 / 2**n,
        "mde": minimal_detectable_effect(sd, n),
    }


def paired_power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs to find a true mean difference
    ``effect`` when the differences spread with ``sd`` (noncentral t)."""
    from scipy import stats

    if n < 2 or not sd > 0:
        raise ValueError(f"power needs n >= 2 pairs and a spread > 0, got n={n}, sd={sd}")
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    nc = effect * math.sqrt(n) / sd
    # the lower tail as the upper tail of the mirrored distribution: scipy's cdf there can
    # return NaN where the value is below 1e-16
    return float(stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc))


def minimal_detectable_effect(
    sd: float, n: int, alpha: float = ALPHA, power: float = POWER
) -> float:
    """The smallest true mean difference that the two-sided paired t-test at ``alpha`` finds
    with probability ``power``, given ``n`` pairs whose differences spread with ``sd``. NaN when
    n < 2; 0 when the differences do not spread."""
    from scipy.optimize import brentq

    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd <= 0:
        return 0.0
    high = sd
    while paired_power(high, sd, n, alpha) < power:
        high *= 2
    return float(brentq(lambda e: paired_power(e, sd, n, alpha) - power, 0.0, high, xtol=1e-12))
