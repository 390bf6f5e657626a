"""The page's first two sections: the headline numbers and the targets."""

from __future__ import annotations

import numpy as np

from kecae.evaluation.summary import MET, MISSED, NOT_MEANINGFUL, count_targets
from kecae.report.data import degenerate
from kecae.report.downstream import downstream_rows
from kecae.report.format import fmt, number, sample_size, spread
from kecae.report.load import RunData
from kecae.report.missing import missing_note
from kecae.report.parts import Card, cards, escape, note, table
from kecae.report.rows import HEADLINE
from kecae.results import (
    TARGETS_SECTION,
    ExchangeSuccess,
    read_targets,
)


def headline_section(run: RunData) -> str:
    items = []
    judge_degenerate = "judge" in degenerate(run)
    for section, key, label, kind in HEADLINE:
        sec = run.section(section.NAME)
        if number(sec.get(key)) is None:
            continue
        n = sample_size(sec, key)
        sub = " · ".join(p for p in (spread(sec, key, kind), f"n = {n}" if n else "") if p)
        if judge_degenerate and section is ExchangeSuccess and key.startswith("judge_"):
            sub = f"measured {fmt(sec[key], kind)} with a degenerate judge (see the top)"
            items.append(Card("not meaningful", label, sub))
            continue
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
    targets = {
        name: t
        for name, t in read_targets(raw_targets).items()
        if isinstance(raw_targets[name], dict)
    }
    if targets:
        count, _ = count_targets(targets, degenerate(run))
        items.append(
            Card(
                f"{count.met} / {count.computable}",
                "targets met, of those computable and meaningful on these data",
                count.text().split("; ", 1)[1] if "; " in count.text() else "",
            )
        )
    if not items:
        return missing_note("no headline number is available yet", "everything", run)
    return cards(items)


def targets_section(run: RunData) -> str:
    targets = read_targets(run.section(TARGETS_SECTION))
    if not targets:
        return missing_note("targets", "evaluate", run)
    with_oracle = any(t.oracle is not None for t in targets.values())
    count, status = count_targets(targets, degenerate(run))
    rows = []
    for name, t in targets.items():
        kind, why = status[name]
        mark = (
            '<span class="ok">✓ met</span>'
            if kind == MET
            else '<span class="bad">✗ not met</span>'
            if kind == MISSED
            else f'<span class="dim" title="{escape(why)}">{escape(kind)}</span>'
        )
        measured = fmt(t.value, "num") if number(t.value) is not None else (t.value or "—")
        if kind == NOT_MEANINGFUL:
            measured = f"({measured})"
        wanted = "" if t.target is None else t.target
        row = [escape(name), escape(wanted), escape(measured), mark]
        if with_oracle:
            row.append(escape(fmt(t.oracle, "num")) if number(t.oracle) is not None else "—")
        rows.append(row)
    whys = sorted({f"{kind}: {why}" for kind, why in status.values() if why})
    parts = [f"<p><b>Targets: {escape(count.text())}.</b></p>"]
    parts += [note(escape(w)) for w in whys]
    header = ["Target", "Wanted", "Measured", ""]
    tail = []
    if with_oracle:
        header.append("A perfect exchange")
        tail.append(
            note(
                "<b>A perfect exchange</b>: the same metric on oracle images, each recipient "
                "rendered from its phantom ground truth with the donor's key features. It is "
                "the ceiling with this judge and this measurement: a target above it cannot be "
                "met by any generator."
            )
        )
    return "".join(parts) + table(header, rows, "targets") + "".join(tail)
