"""Table III: the reader study's accuracy, realism and agreement (`kecae reader-study analyze`)."""

from __future__ import annotations

from typing import Any

from kecae.report.format import fmt, number
from kecae.report.parts import escape, note, table


def _reader_pct(d: Any, ci: bool = False) -> str:
    d = d if isinstance(d, dict) else {}
    lo, hi = number(d.get("ci_low")), number(d.get("ci_high"))
    text = fmt(d.get("value"), "pct")
    return text + (
        f" ({100 * lo:.0f}–{100 * hi:.0f})" if ci and lo is not None and hi is not None else ""
    )


def _reader_mean(d: Any) -> str:
    return fmt((d if isinstance(d, dict) else {}).get("mean"), "num")


def _kappa(v: Any) -> str:
    x = number(v)
    return "—" if x is None else f"{x:.2f}"


def reader_study(sec: dict[str, Any]) -> str:
    """Table III from ``kecae reader-study analyze --run`` (metrics.json: ``reader_study``, as
    :meth:`kecae.reader_study.analyze.ReaderStudyResult.to_dict` writes it)."""
    rows = []
    for r in [*sec.get("readers", []), sec.get("overall") or {}]:
        if not isinstance(r, dict) or "reader" not in r:
            continue
        g: dict[str, dict[str, Any]] = {
            k: r[k] if isinstance(r.get(k), dict) else {}
            for k in ("accuracy", "realism", "control_accuracy", "control_realism", "match_rate")
        }
        rows.append(
            [
                escape(r["reader"]),
                f"{r.get('answered', '—')} / {r.get('total', '—')}",
                _reader_pct(g["accuracy"].get("all"), ci=True),
                _reader_pct(g["accuracy"].get("KL-0")),
                _reader_pct(g["accuracy"].get("KL-2")),
                _reader_mean(g["realism"].get("all")),
                _reader_mean(g["realism"].get("KL-0")),
                _reader_mean(g["realism"].get("KL-2")),
                _reader_pct(g["control_accuracy"].get("all")),
                _reader_mean(g["control_realism"].get("all")),
                _reader_pct(g["match_rate"].get("all")),
                _reader_pct(r.get("sham_match_rate")),
            ]
        )
    parts = [
        table(
            [
                "Reader",
                "Answered",
                "Accuracy (95 % CI)",
                "X′2 → KL-0",
                "X′1 → KL-2",
                "Realism",
                "X′2",
                "X′1",
                "Controls: accuracy",
                "Controls: realism",
                "Phase 2: match",
                "Sham: match",
            ],
            rows,
            "reader-study",
        )
    ]
    agree = [
        [
            escape("Fleiss' κ" if a.get("statistic") == "fleiss_kappa" else "Cohen's κ"),
            escape(", ".join(map(str, a.get("readers", [])))),
            escape(a.get("images", "")),
            _kappa(a.get("kappa")),
            f"{_kappa(a.get('ci_low'))} – {_kappa(a.get('ci_high'))}",
            fmt(a.get("n_items"), "int"),
        ]
        for a in sec.get("agreement", [])
        if isinstance(a, dict)
    ]
    if agree:
        parts.append(
            table(["Agreement", "Readers", "Images", "κ", "95 % CI", "n"], agree, "reader-study")
        )
    parts.append(
        note(
            escape(
                f"{sec.get('generated_images', '—')} generated images ({sec.get('pairs', '—')} "
                f"pairs) and {sec.get('controls', '—')} real control images, graded blind (as in "
                f"the paper's Table "
                "III). Accuracy: the KL call equals the intended label (X′2 → KL-0, X′1 → KL-2) "
                "or a control's true grade, with Wilson intervals per reader and bootstrap "
                "intervals over images for all readers; realism: mean score 1–5, to be read "
                "against the controls'. Phase 2: comparisons with the original called a match of "
                "the intended exchange, and sham comparisons (a real image beside itself) called "
                "a match. κ on the KL call, "
                f"bootstrap 95 % intervals over images ({sec.get('n_boot', '—')} resamples)."
            )
        )
    )
    return "".join(parts)
