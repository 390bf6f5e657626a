"""What the report says before any number: the data the run was trained and evaluated on
(``RUN/data_check.json``, written by the pre-flight, :mod:`kecae.preflight`), and a warning at
the top of the page when a classifier the numbers are read from is degenerate
(:func:`kecae.evaluation.summary.classifier_checks`)."""

from __future__ import annotations

import json
from typing import Any

from kecae.evaluation.summary import classifier_checks, degenerate_reasons
from kecae.report.format import fmt
from kecae.report.load import RunData
from kecae.report.parts import escape, note, table

#: The splits, in the order the data section lists them.
SPLITS = ("train", "val", "test")


def read_plan(run: RunData) -> dict[str, Any] | None:
    """RUN/data_check.json (None when absent: a run made by hand, or before the pre-flight)."""
    path = run.layout.data_check
    if not path.is_file():
        return None
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        run.problems[run.rel(path)] = str(exc)
        return None
    return plan if isinstance(plan, dict) else None


def degenerate(run: RunData) -> dict[str, str]:
    """who -> reason, for the judge and the supervisor when degenerate on their test images."""
    return degenerate_reasons(classifier_checks(run.metrics, run.classifiers.get("supervisor")))


def warnings_banner(run: RunData) -> str:
    """The page's first lines when a classifier is degenerate ('' when none is)."""
    reasons = degenerate(run)
    if not reasons:
        return ""
    items = "".join(
        f"<li><b>The {escape(who)} is degenerate</b>: {escape(reason)}. Every rate read from "
        f"its calls is marked <i>not meaningful</i> below and is not counted as a met "
        f"target.</li>"
        for who, reason in reasons.items()
    )
    fix = (
        "Train it longer (<code>--classifier-epochs</code>), on more images, or check that the "
        "two grades differ in these images; then rerun the same command."
    )
    return f'<div class="warning"><ul>{items}</ul><p>{fix}</p></div>'


def data_section(run: RunData) -> str:
    """Counts per split and grade with patients, grades left out, input size against the model
    size, the pairs each stage draws, and the problems the run was told to accept."""
    plan = read_plan(run)
    if plan is None:
        return note(
            "No <code>data_check.json</code>: this run was not made by <code>kecae run</code> "
            "or <code>kecae demo</code>, so the data it read are not recorded here. "
            "<code>kecae data check DATA</code> lists them."
        )
    grades = [int(g) for g in plan.get("grades") or (0, 2)]
    counts = plan.get("counts") or {}
    patients = plan.get("patients") or {}
    rows = []
    for split in SPLITS:
        per = counts.get(split) or {}
        rows.append(
            [
                escape(split),
                *(fmt(per.get(str(g)), "int") for g in grades),
                fmt(sum(int(per.get(str(g)) or 0) for g in grades), "int"),
                fmt(patients.get(split), "int"),
            ]
        )
    header = ["Split", *(f"KL-{g}" for g in grades), "Images", "Patients"]
    parts = [
        f"<p>Data: <code>{escape(plan.get('data', ''))}</code>; the two grades compared: "
        f"KL-{grades[0]} and KL-{grades[1]}.</p>",
        table(header, rows, "data"),
    ]
    lines = []
    sides = plan.get("input_sides") or []
    if len(sides) == 3:
        lines.append(
            f"Input size → model size: the images are {sides[0]}–{sides[2]} px on their short "
            f"side (median {sides[1]}); the model works at {plan.get('image_size')} px."
        )
    if plan.get("gen_pairs") is not None:
        lines.append(
            f"Pairs: KECAE draws {fmt(plan.get('kecae_pairs'), 'int')} train pairs, generate "
            f"writes {fmt(plan.get('gen_pairs'), 'int')}, evaluate exchanges "
            f"{fmt(plan.get('eval_pairs'), 'int')} test pairs."
        )
    lines += [escape(n) for n in plan.get("notes") or []]
    if lines:
        parts.append("<ul>" + "".join(f"<li>{line}</li>" for line in lines) + "</ul>")
    accepted = plan.get("accepted") or []
    warned = [p for p in plan.get("problems") or [] if p not in accepted]
    for title, problems in (
        ("Problems accepted with --accept-data-problems", accepted),
        ("Warnings", warned),
    ):
        if problems:
            parts.append(f"<p><b>{title}</b> ({len(problems)}):</p>")
            parts.append(
                table(
                    ["File", "Problem", "Fix"],
                    [
                        [
                            f"<code>{escape(p.get('file', ''))}</code>",
                            escape(p.get("message", "")),
                            escape(p.get("fix", "")),
                        ]
                        for p in problems[:20]
                        if isinstance(p, dict)
                    ],
                    "problems",
                )
            )
            if len(problems) > 20:
                parts.append(note(f"{len(problems) - 20} more in <code>data_check.json</code>."))
    return "".join(parts)
