"""The report page: the sections of :mod:`kecae.report.sections` in the page template
(``templates/report.html``, CSS from ``static/report.css``, both package data), written into the
run folder as one self-contained HTML file."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib.resources
import logging
import re
from pathlib import Path
from typing import NamedTuple

from markupsafe import Markup

from kecae.errors import KecaeError
from kecae.evaluation.summary import grades_in
from kecae.files import atomic_write_text
from kecae.report.data import read_plan, warnings_banner
from kecae.report.load import RunData, load_run
from kecae.report.parts import environment, escape, note
from kecae.report.reader import reader_study
from kecae.report.sections import SECTIONS
from kecae.report.words import grade_pair, swap_grades
from kecae.results import READER_STUDY_SECTION
from kecae.runfolder import RunLayout

log = logging.getLogger(__name__)


class _Section(NamedTuple):
    anchor: str
    heading: Markup
    content: Markup


def render_report(run: RunData) -> str:
    """The report page for an already-loaded run, as an HTML string."""
    sections = list(SECTIONS)
    study = run.section(READER_STUDY_SECTION)
    if isinstance(study.get("readers"), list):  # analyze's layout; any other entry stays raw
        sections.insert(
            len(sections) - 2,
            ("reader-study", "Reader study (Table III)", lambda _run: reader_study(study)),
        )
        run = dataclasses.replace(
            run, metrics={k: v for k, v in run.metrics.items() if k != READER_STUDY_SECTION}
        )
    plan = read_plan(run)
    grades = (
        (int(plan["grades"][0]), int(plan["grades"][1]))
        if plan and isinstance(plan.get("grades"), list) and len(plan["grades"]) == 2
        else grades_in(run.metrics)
    )
    rendered = []
    for anchor, heading, build in sections:
        try:
            with grade_pair(grades):  # the figures' labels follow the run's pair too
                content = build(run)
        except Exception as exc:  # noqa: BLE001 (one malformed entry must not cost the page)
            log.warning("report: section %r failed: %s", heading, exc)
            content = note(
                f"Could not draw this section: {escape(type(exc).__name__)}: "
                f"{escape(exc)}. Check the matching entry of the run folder."
            )
        if anchor not in ("data", "configuration"):
            content = pair_words(content, grades)
        rendered.append(_Section(anchor, Markup(escape(heading)), Markup(content)))
    css = (
        importlib.resources.files("kecae.report")
        .joinpath("static/report.css")
        .read_text(encoding="utf-8")
    )
    title = f"kecae report: {run.run_dir.resolve().name}"
    return (
        environment()
        .get_template("report.html")
        .render(
            title=Markup(escape(title)),
            css=Markup(css),
            run_dir=Markup(escape(run.run_dir)),
            stamp=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            found=Markup(escape(", ".join(run.found) or "none of the known files")),
            banner=Markup(warnings_banner(run)),
            sections=rendered,
        )
    )


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` (atomically) from whatever the run folder holds.

    Every input is optional: a missing part becomes a short note saying how to compute it.
    Raises:
        KecaeError: ``run_dir`` is not an existing folder, or holds files but none that a
            run writes (a data set, say: the report is not written into it).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise KecaeError(
            f"run folder {run_dir} does not exist: pass the folder that a "
            f"`kecae train`/`kecae evaluate` run wrote (e.g. runs/demo)"
        )
    _check_run_folder(run_dir)
    page = render_report(load_run(run_dir))
    out = RunLayout(run_dir).report
    atomic_write_text(out, page)
    return out


#: What a run folder holds (any one of them); an empty folder reports what to compute.
RUN_FILES = (
    "run.yaml",
    "metrics.json",
    "report.html",
    "data_check.json",
    "config.yaml",
    "kecae",
    "supervisor",
    "judge",
    "generated",
    "eval",
    "studies",
)


def _check_run_folder(run_dir: Path) -> None:
    """Refuse a folder that holds files but nothing a run writes (e.g. the data set)."""
    if any((run_dir / name).exists() for name in RUN_FILES):
        return
    found = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("."))
    if found:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        raise KecaeError(
            f"{run_dir} is not a run folder (it holds {shown} but no run.yaml, metrics.json "
            "or kecae/): pass the folder that `kecae run --out` or `kecae demo --out` wrote"
        )


def pair_words(html: str, grades: tuple[int, int]) -> str:
    """The report's words for the default pair (KL-0, KL-2; kl0/kl2 in names) in terms of the
    run's own pair: with ``--grades 0 1`` "KL-2 donor" reads "KL-1 donor". The data section,
    which names every grade as it is, is left alone."""
    if tuple(grades) == (0, 2):
        return html
    parts = _DATA_URI.split(html)
    for k in range(0, len(parts), 2):  # the odd parts are embedded images: left as they are
        parts[k] = swap_grades(parts[k], grades)
    return "".join(parts)


#: An embedded image in the page (its base64 text may hold any letters).
_DATA_URI = re.compile(r"(data:[a-z]+/[a-z+.-]+;base64,[A-Za-z0-9+/=]*)")
