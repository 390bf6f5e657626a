"""What a section says when a part of the run folder is missing, unreadable or cannot be drawn:
a note naming the command that makes it, never a lost page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kecae.report.load import RunData
from kecae.report.parts import escape, figure, note

log = logging.getLogger(__name__)


def how_to(what: str, run: RunData) -> str:
    """The command that makes a missing part of the report."""
    layout = run.layout
    return {
        "evaluate": f"kecae evaluate --run {run.run_dir}",
        "train": f"kecae train --out {layout.kecae.folder}",
        "supervisor": f"kecae train-classifier --out {layout.supervisor.folder}",
        "judge": f"kecae train-classifier --out {layout.judge.folder}",
        "everything": f"kecae demo --out {run.run_dir}",
        "ablation": f"kecae study ablation --run {run.run_dir}",
        "downstream": f"kecae study downstream --run {run.run_dir}",
        "downstream_shortcut": f"kecae study downstream --run {run.run_dir} --site-bias 0.85",
        "tune": f"kecae tune --run {run.run_dir}",
    }[what]


def missing_note(what: str, how: str, run: RunData) -> str:
    return note(f"Not computed: {escape(what)}. Run <code>{escape(how_to(how, run))}</code>.")


def problem_notes(run: RunData, *rels: str) -> str:
    return "".join(
        note(
            f"Could not read <code>{escape(r)}</code> ({escape(run.problems[r])}); "
            "rerun the step that writes it."
        )
        for r in rels
        if r in run.problems
    )


def drawn_figure(draw: Callable[[], str | None], alt: str, caption: str) -> str:
    """:func:`figure` of ``draw()``; a figure that fails becomes a note, not a lost section."""
    try:
        uri = draw()
    except Exception as exc:  # noqa: BLE001 (malformed entries; the page must still appear)
        log.warning("report: could not draw %s: %s", alt, exc)
        return note(
            f"Could not draw {escape(alt)}: {escape(type(exc).__name__)}: "
            f"{escape(exc)}. Check the matching entry of the run folder."
        )
    return figure(uri, alt, caption) if uri else ""
