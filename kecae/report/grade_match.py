"""The report's grade-match section: does X' look like a real knee of its intended grade and
not like a caricature of it, and why does the judge disagree on the X' it disagrees on?"""

from __future__ import annotations

from typing import Any

from kecae.evaluation.grade_match import FAILURE_KINDS
from kecae.report.format import fmt, number
from kecae.report.load import RunData
from kecae.report.parts import escape, note, table
from kecae.results import (
    DIRECTIONS,
    KL0_TO_KL2,
    DistributionMatch,
    FailureAnalysis,
    Fidelity,
    FidelityDirection,
    GradeMatch,
    GradeMatchDirection,
    Quality,
)

#: Column heads of the two directions.
HEADS = {
    KL0_TO_KL2: "KL-0 → KL-2 (X′1 vs real KL-2)",
    "kl2_to_kl0": "KL-2 → KL-0 (X′2 vs real KL-0)",
}

#: The failure kinds in words, per direction where the word differs.
KIND_LABELS = {
    "refused": "no joint found on X′",
    "osteophyte_extra": "osteophyte the donor lacks (X′2: kept)",
    "osteophyte_missing": "donor's osteophyte missing (X′1: not added)",
    "joint_narrow": "joint space too narrow",
    "joint_wide": "joint space too wide",
    "osteophyte_and_joint": "osteophyte and joint space",
    "other": "other (the measurement sees the donor's key)",
}


def _match(m: DistributionMatch | None) -> str:
    if m is None or number(m.ks) is None:
        return "—"
    return (
        f"KS {fmt(m.ks, 'num')} (p {fmt(m.ks_p, 'num')}), W {fmt(m.wasserstein, 'num')} px"
        f'<br><span class="small">n = {m.n} vs {m.n_reference}'
        + (f", {m.n_missing} refused" if m.n_missing else "")
        + "</span>"
    )


def _failure_cell(f: FailureAnalysis | None, kind: str) -> str:
    if f is None or not f.n_disagree:
        return "—"
    count = getattr(f, kind)
    return f"{count} ({100 * count / f.n_disagree:.0f} %)"


def _rows(sec: GradeMatch, fid: Fidelity, quality: Quality) -> list[list[str]]:
    d = {x: sec.direction(x) for x in DIRECTIONS}
    fd = fid.directions

    def row(label: str, cell: Any) -> list[str]:
        return [escape(label)] + [cell(d[x], fd.get(x), x) for x in DIRECTIONS]

    osteo = {
        KL0_TO_KL2: (fid.osteophyte_rate_x1_ex, fid.osteophyte_rate_real_kl2),
        "kl2_to_kl0": (fid.osteophyte_rate_x2_ex, fid.osteophyte_rate_real_kl0),
    }
    area = {
        KL0_TO_KL2: quality.edit_mask_area_kl0_to_kl2,
        "kl2_to_kl0": quality.edit_mask_area_kl2_to_kl0,
    }

    def quartiles(g: GradeMatchDirection, f: FidelityDirection | None, _x: str) -> str:
        median = f.key_transfer_median if f else None
        parts = [fmt(v, "num") for v in (g.key_transfer_q25, median, g.key_transfer_q75)]
        return " / ".join(parts)

    return [
        row("JSW of X′ vs real knees of the intended grade", lambda g, f, x: _match(g.jsw)),
        row("the oracle's X′ vs the same", lambda g, f, x: _match(g.jsw_oracle)),
        row("control: two halves of the real knees", lambda g, f, x: _match(g.jsw_control)),
        row("key transfer q25 / median / q75 (1 = donor)", quartiles),
        row(
            "X′ past the donor by > half the gap",
            lambda g, f, x: f"{fmt(g.overshoot_rate, 'pct')} (n = {g.overshoot_n})",
        ),
        row(
            "osteophytes on X′ (real knees of the grade)",
            lambda g, f, x: f"{fmt(osteo[x][0].value, 'pct')} ({fmt(osteo[x][1].value, 'pct')})",
        ),
        row("judge calls X′ its intended grade", lambda g, f, x: fmt(g.judge_intended, "pct")),
        row("… the oracle's X′", lambda g, f, x: fmt(g.judge_intended_oracle, "pct")),
        row(
            "excess over the oracle (≤ 5 points: no caricature)",
            lambda g, f, x: fmt(g.caricature_excess, "pct"),
        ),
        row(
            "edit mask, median share of the image",
            lambda g, f, x: "absent (no edit mask)" if area[x] is None else fmt(area[x], "pct"),
        ),
    ]


def grade_match_section(run: RunData) -> str:
    """The two tables, or a note saying where they come from."""
    raw = run.section(GradeMatch.NAME)
    if not isinstance(raw.get(KL0_TO_KL2), dict):
        return note(
            "Not computed: this needs the phantoms' ground truth (joint measurement and the "
            "oracle). Run <code>"
            + escape(f"kecae evaluate --run {run.run_dir}")
            + "</code> on a <code>kecae demo</code> run."
        )
    sec = GradeMatch.from_dict(raw)
    fid = Fidelity.from_dict(run.section(Fidelity.NAME))
    quality = Quality.from_dict(run.section(Quality.NAME))
    header = ["", *(escape(HEADS[x]) for x in DIRECTIONS)]
    failures = []
    for kind in FAILURE_KINDS:
        cells = []
        for x in DIRECTIONS:
            g = sec.direction(x)
            cells.append(
                f"{_failure_cell(g.failures, kind)}"
                f'<br><span class="small">oracle: {_failure_cell(g.failures_oracle, kind)}</span>'
            )
        failures.append([escape(KIND_LABELS[kind]), *cells])
    disagree = [
        f"{x.replace('_to_', ' → ').upper().replace('KL', 'KL-')}: the judge disagrees on "
        f"{sec.direction(x).failures.n_disagree} of {sec.direction(x).failures.n} X′"
        for x in DIRECTIONS
    ]
    return (
        table(header, _rows(sec, fid, quality), "metrics")
        + note(escape(sec.rule or ""))
        + table(
            ["Why the judge's call on X′ is not its call on the donor", *disagree],
            failures,
            "metrics",
        )
        + note(
            "Each X′ the judge disagrees on counts once; the oracle's line is the same analysis "
            "of perfect exchanges of the same pairs (what remains there is the judge's own "
            "error)."
        )
    )
