"""The page's first two sections: the headline numbers and the targets."""

from __future__ import annotations

import numpy as np

from kecae.report.downstream import downstream_rows
from kecae.report.format import fmt, number, sample_size, spread
from kecae.report.load import RunData
from kecae.report.missing import missing_note
from kecae.report.parts import Card, cards, escape, note, table
from kecae.report.rows import HEADLINE
from kecae.results import (
    TARGETS_SECTION,
    read_targets,
)


def headline_section(run: RunData) -> str:
    items = []
    for section, key, label, kind in HEADLINE:
        sec = run.section(section.NAME)
        if number(sec.get(key)) is None:
            continue
        n = sample_size(sec, key)
        sub = " · ".join(p for p in (spread(sec, key, kind), f"n = {n}" if n else "") if p)
        items.append(Card(fmt(sec[key], kind), label, sub))
    gains: dict[float | None, list[float]] = {}
    for row, gain in downstream_rows(run):
        if gain is not None and row.training_set in ("T'", "T′"):
            gains.setdefault(number(row.train_fraction), []).append(gain)
    for fraction, values in gains.items():
        share = "" if fraction is None else f" at {fraction:g} of the training patients"
        items.append(
            Card(
                f"{100 * np.mean(values):+.2f} pp",
                f"test accuracy, T′ vs T{share} (mean over "
                f"{len(values)} model{'s' if len(values) > 1 else ''})",
                "",
            )
        )
    raw_targets = run.section(TARGETS_SECTION)
    met = [
        t.met
        for name, t in read_targets(raw_targets).items()
        if isinstance(raw_targets[name], dict)
    ]
    if met:
        items.append(Card(f"{sum(m is True for m in met)} / {len(met)}", "targets met", ""))
    if not items:
        return missing_note("no headline number is available yet", "everything", run)
    return cards(items)


def targets_section(run: RunData) -> str:
    targets = read_targets(run.section(TARGETS_SECTION))
    if not targets:
        return missing_note("targets", "evaluate", run)
    with_oracle = any(t.oracle is not None for t in targets.values())
    rows = []
    for name, t in targets.items():
        mark = (
            '<span class="ok">✓ met</span>'
            if t.met is True
            else '<span class="bad">✗ not met</span>'
            if t.met is False
            else "–"
        )
        measured = fmt(t.value, "num") if number(t.value) is not None else (t.value or "—")
        wanted = "" if t.target is None else t.target
        row = [f"<code>{escape(name)}</code>", escape(wanted), escape(measured), mark]
        if with_oracle:
            row.append(escape(fmt(t.oracle, "num")) if number(t.oracle) is not None else "—")
        rows.append(row)
    header = ["Target", "Wanted", "Measured", ""]
    parts = []
    if with_oracle:
        header.append("A perfect exchange")
        parts.append(
            note(
                "<b>A perfect exchange</b>: the same metric on oracle images, each recipient "
                "rendered from its phantom ground truth with the donor's key features. It is "
                "the ceiling with this judge and this measurement: a target above it cannot be "
                "met by any generator."
            )
        )
    return table(header, rows, "targets") + "".join(parts)
