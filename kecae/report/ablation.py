"""The ablation of the KECAE options (`kecae study ablation`): one row per option, mean ± std over
seeds, and the best rows' examples.
"""

from __future__ import annotations

from kecae.report import figures
from kecae.report.format import fmt, number
from kecae.report.load import RunData, read_npz
from kecae.report.missing import missing_note
from kecae.report.parts import escape, figure, note, table
from kecae.results import (
    Ablation,
    AblationCell,
)


def _ablation_cell(cell: AblationCell | None, kind: str) -> str:
    m = number(cell.mean) if cell else None
    sd = number(cell.std) if cell else None
    if m is None:
        return "—"
    text = {"pct": f"{100 * m:.1f}", "int": f"{m:.0f}", "db": f"{m:.1f}"}.get(kind, f"{m:.2f}")
    if sd is not None:
        digits = 1 if kind in ("pct", "db") else 2
        text += f'<br><span class="small">± {100 * sd if kind == "pct" else sd:.{digits}f}</span>'
    return text


def ablation_section(run: RunData) -> str:
    raw = run.section(Ablation.NAME)
    if not raw or not isinstance(raw.get("rows"), list):
        return missing_note("the ablation of KECAE options", "ablation", run)
    sec = Ablation.from_dict(raw)
    columns = sec.columns
    best = set(sec.best or [])
    rows = []
    for r in sec.rows:
        name = f"<code>{escape(r.name)}</code>" + (" <b>best</b>" if r.name in best else "")
        description = escape(r.description or "")
        rows.append(
            [
                name + f'<br><span class="small">{description}</span>',
                fmt(r.seeds, "int"),
                f"{number(r.targets_met) or 0:.1f}",
            ]
            + [_ablation_cell(r.cells.get(c), columns[c].kind) for c in columns]
        )
    b = sec.budget or {}
    parts = [
        '<div class="wide">'
        + table(["Row", "Seeds", "Targets met"] + [escape(c) for c in columns], rows, "ablation")
        + "</div>",
        note(
            escape(
                f"Every row trains one KECAE on the same data with the same frozen "
                f"supervisor for {b.get('steps')} steps × {b.get('batch_size')} pairs "
                f"(lr {b.get('lr')}), and is evaluated on the same {b.get('eval_pairs')} "
                "test pairs by the same judge. Rates in %; ± is the sample std over "
                "seeds. " + (sec.note or "")
            )
        ),
    ]
    for name in sec.best or []:
        rel = (sec.examples or {}).get(name)
        path = run.run_dir / rel if rel else None
        if path is None or not path.is_file():
            continue
        try:
            uri, k = figures.examples_figure(read_npz(path))
        except Exception as exc:  # noqa: BLE001 (a damaged sub-run must not stop the page)
            parts.append(note(f"Could not draw the examples of {escape(name)}: {escape(exc)}"))
            continue
        parts.append(
            figure(
                uri,
                f"examples of {name}",
                escape(
                    f"Row {name}: {k} test pairs, as in the examples section (X′ − X maps in the "
                    "difference columns)."
                ),
            )
        )
    return "".join(parts)
