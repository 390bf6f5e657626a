"""Numbers as the report writes them: a fraction as a percentage, dB, counts, durations, and the
spread and sample size a metric carries in its sibling keys (``k_std``, ``k_ci_low``,
``k_ci_high``, ``k_n``; see :mod:`kecae.results`)."""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

import numpy as np

#: Suffixes of a metric's sibling keys.
SIBLINGS = ("_std", "_n", "_ci_low", "_ci_high")


def number(v: Any) -> float | None:
    """A finite float, or None for anything else (missing, text, NaN, bool)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def fmt(v: Any, kind: str) -> str:
    """Format one number: ``pct`` (fraction shown in %), ``db``, ``int``, ``sec``, ``num``
    (3 s.f.); a missing value is a dash."""
    x = number(v)
    if x is None:
        return "inf" if isinstance(v, float) and math.isinf(v) else "—"
    if kind == "pct":
        return f"{100 * x:.1f} %"
    if kind == "db":
        return f"{x:.2f} dB"
    if kind == "int":
        return f"{x:,.0f}"
    if kind == "sec":
        return str(_dt.timedelta(seconds=round(x))) if x >= 60 else f"{x:.1f} s"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def spread(section: dict[str, Any], key: str, kind: str) -> str:
    """'± std' and/or '95 % CI lo–hi' for a metric, from its siblings."""
    parts = []
    std = number(section.get(f"{key}_std"))
    if std is not None:
        parts.append("± " + (f"{100 * std:.1f}" if kind == "pct" else fmt(std, kind)))
    lo, hi = number(section.get(f"{key}_ci_low")), number(section.get(f"{key}_ci_high"))
    if lo is not None and hi is not None:
        if kind == "pct":
            parts.append(f"95 % CI {100 * lo:.1f}–{100 * hi:.1f}")
        else:
            parts.append(f"95 % CI {fmt(lo, kind)}–{fmt(hi, kind)}")
    return "; ".join(parts)


def sample_size(section: dict[str, Any], key: str) -> str:
    """The metric's ``n`` (its own, else the section's), with thousands separators."""
    n = number(section.get(f"{key}_n", section.get("n")))
    return f"{n:,.0f}" if n is not None else ""


#: Words for the tokens of a metrics.json key (:func:`words`).
_WORDS = {
    "svm": "SVM",
    "hk": "hK",
    "hn": "hN",
    "knn": "k-NN",
    "ssim": "SSIM",
    "psnr": "PSNR",
    "jsw": "joint-space width",
    "recon": "reconstructions",
    "nonkey": "non-key",
    "ex": "exchanged",
    "x1": "X′1",
    "x2": "X′2",
    "n": "number",
    "kl0": "KL-0",
    "kl1": "KL-1",
    "kl2": "KL-2",
    "kl3": "KL-3",
    "kl4": "KL-4",
    "to": "→",
    "auc": "AUC",
    "iqr": "IQR",
    "std": "std",
}


def words(key: str) -> str:
    """A metrics.json key as words for a row label: ``svm_hk_accuracy`` -> ``SVM hK accuracy``,
    ``refusal_rate_x_ex`` -> ``refusal rate X′``, ``osteophyte_gap_kl0_to_kl2`` ->
    ``osteophyte gap KL-0 → KL-2``."""
    text = key.replace("x_ex", "X′")
    out = [_WORDS.get(t, t) for t in text.split("_") if t]
    label = " ".join(out)
    return label[:1].upper() + label[1:] if label else key
