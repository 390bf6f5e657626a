"""``kecae reader-study analyze``'s outputs: Table III as text, a tidy CSV and JSON
(``STUDY/analysis.csv``, ``STUDY/analysis.json``), from :class:`~kecae.reader_study.analyze.
ReaderStudyResult`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from kecae.files import atomic_write_text
from kecae.metrics_file import jsonable
from kecae.reader_study.analyze import LABELS, Mean, Rate, ReaderStudyResult


def _pct(r: Rate, ci: bool = False) -> str:
    if r.value is None:
        return "—"
    s = f"{100 * r.value:.1f} %"
    if ci and r.ci_low is not None and r.ci_high is not None:
        s += f" [{100 * r.ci_low:.0f}–{100 * r.ci_high:.0f}]"
    return s


def _avg(m: Mean) -> str:
    return "—" if m.mean is None else f"{m.mean:.2f}"


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "—" if x is None else format(x, fmt)


def format_table(res: ReaderStudyResult) -> str:
    """Table III as text, then the agreement."""
    head = [
        ("reader", 12),
        ("answered", 9),
        ("accuracy [95 % CI]", 21),
        ("X'2→KL-0", 9),
        ("X'1→KL-2", 9),
        ("realism", 8),
        ("X'2", 5),
        ("X'1", 5),
        ("ctrl acc", 9),
        ("ctrl KL-0", 9),
        ("ctrl KL-2", 9),
        ("ctrl real", 9),
        ("match", 8),
        ("sham", 7),
    ]
    lines = [
        f"Table III: reader study {res.study}",
        f"{len(res.readers)} reader{'s' if len(res.readers) != 1 else ''}; "
        f"{res.generated_images} generated images "
        f"({res.pairs} pairs: X'1 intended KL-2, X'2 intended KL-0) and {res.controls} "
        "real controls in phase 1; phase 2 compares each X' with its original "
        f"(and each control with itself, 'sham').",
        "",
    ]
    lines.append("  ".join(h.ljust(w) for h, w in head))
    for r in [*res.readers, res.overall]:
        cells = [
            r.reader,
            f"{r.answered}/{r.total}",
            _pct(r.accuracy["all"], ci=True),
            _pct(r.accuracy["KL-0"]),
            _pct(r.accuracy["KL-2"]),
            _avg(r.realism["all"]),
            _avg(r.realism["KL-0"]),
            _avg(r.realism["KL-2"]),
            _pct(r.control_accuracy["all"]),
            _pct(r.control_accuracy["KL-0"]),
            _pct(r.control_accuracy["KL-2"]),
            _avg(r.control_realism["all"]),
            _pct(r.match_rate["all"]),
            _pct(r.sham_match_rate),
        ]
        lines.append("  ".join(c.ljust(w) for c, (_, w) in zip(cells, head, strict=True)))
    lines += [
        "",
        "accuracy: KL call equals the intended label (X') or the true grade (ctrl); "
        "realism: mean score 1-5; match: phase-2 comparisons called a match of the "
        "intended exchange; sham: a real image beside itself called a match.",
        "",
    ]
    if res.agreement:
        lines.append(
            f"Agreement on the KL call (bootstrap 95 % CI over images, {res.n_boot} "
            f"resamples, seed {res.seed}):"
        )
        for g in res.agreement:
            who = (
                "Fleiss' κ, " + ", ".join(g.readers)
                if g.statistic == "fleiss_kappa"
                else "Cohen's κ, " + " – ".join(g.readers)
            )
            ci = f"[{_num(g.ci_low, '.2f')}, {_num(g.ci_high, '.2f')}]"
            lines.append(f"  {g.images:<9}  {who:<40} {_num(g.kappa):>6}  {ci:<14} n = {g.n_items}")
    else:
        lines.append("Agreement: needs at least two readers.")
    return "\n".join(line.rstrip() for line in lines)


CSV_FIELDS = ["statistic", "reader", "images", "label", "value", "ci_low", "ci_high", "n"]


def csv_rows(res: ReaderStudyResult) -> list[dict[str, Any]]:
    """Every number as one tidy row (CSV_FIELDS)."""
    out: list[dict[str, Any]] = []
    for r in [*res.readers, res.overall]:
        for images, acc, real in (
            ("generated", r.accuracy, r.realism),
            ("control", r.control_accuracy, r.control_realism),
        ):
            for lab in LABELS:
                x = acc[lab]
                out.append(
                    dict(
                        statistic="accuracy",
                        reader=r.reader,
                        images=images,
                        label=lab,
                        value=x.value,
                        ci_low=x.ci_low,
                        ci_high=x.ci_high,
                        n=x.n,
                    )
                )
                m = real[lab]
                out.append(
                    dict(
                        statistic="realism_mean",
                        reader=r.reader,
                        images=images,
                        label=lab,
                        value=m.mean,
                        ci_low=None,
                        ci_high=None,
                        n=m.n,
                    )
                )
        for lab in LABELS:
            x = r.match_rate[lab]
            out.append(
                dict(
                    statistic="match_rate",
                    reader=r.reader,
                    images="generated",
                    label=lab,
                    value=x.value,
                    ci_low=x.ci_low,
                    ci_high=x.ci_high,
                    n=x.n,
                )
            )
        x = r.sham_match_rate
        out.append(
            dict(
                statistic="match_rate",
                reader=r.reader,
                images="sham",
                label="all",
                value=x.value,
                ci_low=x.ci_low,
                ci_high=x.ci_high,
                n=x.n,
            )
        )
    for g in res.agreement:
        out.append(
            dict(
                statistic=g.statistic,
                reader="|".join(g.readers),
                images=g.images,
                label="all",
                value=g.kappa,
                ci_low=g.ci_low,
                ci_high=g.ci_high,
                n=g.n_items,
            )
        )
    return out


def write_outputs(res: ReaderStudyResult, study: str | Path) -> tuple[Path, Path]:
    """STUDY/analysis.json and STUDY/analysis.csv (atomically)."""
    study = Path(study)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for row in csv_rows(res):
        w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    atomic_write_text(study / "analysis.csv", buf.getvalue())
    atomic_write_text(study / "analysis.json", json.dumps(jsonable(res.to_dict()), indent=2))
    return study / "analysis.json", study / "analysis.csv"
