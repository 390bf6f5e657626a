"""The search of λ1, λ2 and the exchange options (`kecae tune`): the final rows, the trials and
their figure.
"""

from __future__ import annotations

from typing import Any

from kecae.registry import SEARCH_SPACE
from kecae.report import figures
from kecae.report.format import fmt, number
from kecae.report.load import RunData
from kecae.report.missing import drawn_figure, missing_note
from kecae.report.parts import escape, note, table
from kecae.results import (
    TUNE_OBJECTIVE_TERMS,
    Tune,
)


def tune_section(run: RunData) -> str:
    raw = run.section(Tune.NAME)
    if not raw or not isinstance(raw.get("trials"), list):
        return missing_note("the search of λ1, λ2 and the exchange options", "tune", run)
    sec = Tune.from_dict(raw)
    parts = []
    terms = list(TUNE_OBJECTIVE_TERMS)
    if sec.final:
        rows = []
        for r in sec.final:
            settings = ", ".join(f"{k} = {_setting(v)}" for k, v in (r.params or {}).items())
            rows.append(
                [
                    f"<b>{escape(r.name)}</b>"
                    + f'<br><span class="small">{escape(r.description or "")}</span>',
                    escape(settings or "—"),
                    fmt(r.val_objective, "num"),
                    fmt(r.test_objective, "num"),
                ]
                + [fmt((r.test_terms or {}).get(t), "num") for t in terms]
                + [f"{fmt(r.targets_met, 'int')} / {fmt(r.targets_total, 'int')}"]
            )
        parts.append(
            '<div class="wide">'
            + table(
                ["Row", "Settings", "Objective (val)", "Objective (test)"]
                + [escape(f"{t} (test)") for t in terms]
                + ["Targets met (test)"],
                rows,
                "tune",
            )
            + "</div>"
        )
    finished = [t for t in sec.trials if number(t.objective) is not None]
    if sec.trials:
        names = list(sec.search_space or {})
        log_scale = {n for n in names if SEARCH_SPACE.get(n) and SEARCH_SPACE[n].log_range}
        params = {
            n: [
                t.params.get(n) if n in log_scale else _setting(t.params.get(n)) for t in sec.trials
            ]
            for n in names
        }
        parts.append(
            drawn_figure(
                lambda: figures.tune_figure(
                    [t.number for t in sec.trials],
                    [number(t.objective) for t in sec.trials],
                    params,
                    log_scale,
                ),
                "the tuning study",
                escape(
                    "Left: the validation objective of each trial and the best so far. Then the "
                    "objective against each searched setting (failed trials left out)."
                ),
            )
        )
        ranked = sorted(finished, key=lambda t: number(t.objective) or 0.0, reverse=True)[:10]
        parts.append(
            table(
                ["Trial", "Objective (val)"] + [escape(n) for n in names],
                [
                    [
                        f"{t.number}" + (" <b>best</b>" if t.number == sec.best_trial else ""),
                        fmt(t.objective, "num"),
                    ]
                    + [escape(_setting(t.params.get(n))) for n in names]
                    for t in ranked
                ],
                "tune",
            )
        )
    space = "; ".join(f"{k}: {v}" for k, v in (sec.search_space or {}).items())
    parts.append(
        note(
            escape(
                f"{len(finished)} finished trials of {len(sec.trials)}, {sec.sampler}; every "
                f"trial and final row trains {sec.steps} steps × {sec.batch_size} pairs with "
                f"the run's recipe. Searched: {space}. Objective: {sec.objective} "
                f"{sec.note or ''}"
            )
        )
    )
    return "".join(parts)


def _setting(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "—" if value is None else str(value)
