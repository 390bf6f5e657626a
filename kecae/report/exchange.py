"""What the exchange does: the example images, the exchange-success rates beside their
controls, and the two classifiers those rates come from.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from kecae.report import figures
from kecae.report.data import degenerate
from kecae.report.format import fmt, number, sample_size, spread
from kecae.report.load import RunData
from kecae.report.missing import how_to, missing_note, problem_notes
from kecae.report.parts import escape, figure, note, table
from kecae.report.rows import judge_key, supervisor_key
from kecae.results import (
    DIRECTIONS,
    KL0_TO_KL2,
    KL2_TO_KL0,
    ExchangeSuccess,
    JudgeSummary,
    Oracle,
    SupervisorSummary,
)


def examples_section(run: RunData) -> str:
    ex = run.examples
    rel = run.rel(run.layout.eval.examples)
    if ex is None:
        return problem_notes(run, rel) or missing_note(f"example images ({rel})", "evaluate", run)
    need = [k for k in ("x1", "x1_ex", "x2", "x2_ex") if k not in ex]
    if need:
        return note(
            f"{rel} lacks {escape(', '.join(need))}; rerun "
            f"<code>{escape(how_to('evaluate', run))}</code>."
        )
    uri, k = figures.examples_figure(ex)
    measured = "jsw_x1" in ex or "joint_row_x1" in ex
    caption = (
        f"{k} random pairs, one per row. X1 is a KL-0 knee, X2 a KL-2 knee; X′1 keeps X1's "
        "anatomy but takes X2's key features (should look KL-2), X′2 the reverse. "
        "The difference maps show what the exchange changed: a good exchange changes the "
        "joint space and joint margins (osteophytes) and leaves bone shape, soft tissue "
        "and background near zero. For the paper's decoded exchange the maps also hold "
        "the auto-encoder's reconstruction error, spread over the whole image; a residual "
        "or warp exchange edits the recipient's own pixels and leaves the rest exactly."
    )
    if measured:
        caption += (
            " The dashed yellow line is the measured joint line; the corner label is "
            "the measured joint-space width (JSW) in pixels: X′1 should have about X2's "
            "JSW, X′2 about X1's."
        )
    return figure(uri, "Key-exchange examples", escape(caption))


def _rate_cell(sec: dict[str, Any], key: str) -> str:
    if number(sec.get(key)) is None:
        return "—"
    n = sample_size(sec, key)
    small = "; ".join(p for p in (spread(sec, key, "pct"), f"n = {n}" if n else "") if p)
    return f"<b>{fmt(sec[key], 'pct')}</b>" + (
        f'<br><span class="small">{escape(small)}</span>' if small else ""
    )


def _gap_text(es: ExchangeSuccess, direction: str, what: str, donor: str) -> list[str]:
    """Plain sentences comparing exchange vs control and judge vs supervisor."""
    out = []
    judge, supervisor = es.judge[direction], es.supervisor[direction]
    j, c = number(judge.raw.value), number(judge.control.value)
    s = number(supervisor.raw.value)
    if j is not None and c is not None:
        out.append(
            f"The judge calls {100 * j:.1f} % of {what} {donor}, and {100 * c:.1f} % of "
            "the no-exchange outputs of the same recipients (each given its own key): the "
            f"exchange itself accounts for {100 * (j - c):+.1f} points."
        )
    if j is not None and s is not None and 100 * (s - j) > 2:
        out.append(
            f"The supervisor, which the generator was trained to convince, calls "
            f"{100 * s:.1f} %: the {100 * (s - j):.1f}-point gap is success that does not "
            "carry over to a classifier the generator never saw."
        )
    rel = number(judge.relative)
    if rel is not None:
        out.append(
            f"Against the judge's own recall on real {donor} test images the label-only "
            f"rate is {100 * rel:.0f} %."
        )
    return out


_EXCHANGE_LABELS = {
    KL0_TO_KL2: "X′1: KL-0 recipient, KL-2 key → KL-2",
    KL2_TO_KL0: "X′2: KL-2 recipient, KL-0 key → KL-0",
}


def exchange_section(run: RunData) -> str:
    sec = run.section(ExchangeSuccess.NAME)
    parts = [
        f'<div class="warning">Not meaningful: the {escape(who)} columns below. '
        f"{escape(reason[0].upper() + reason[1:])}, so its calls on X′ say nothing about "
        f"the exchange.</div>"
        for who, reason in degenerate(run).items()
        if sec
    ]
    if sec:
        rows = []
        oracle = run.section(Oracle.NAME).get(ExchangeSuccess.NAME)
        for label, source in (("", sec), ("A perfect exchange (oracle), ", oracle)):
            if not isinstance(source, dict):
                continue
            for direction in DIRECTIONS:
                keys = (
                    judge_key("agreement", direction),
                    judge_key("agreement_control", direction),
                    judge_key("raw", direction),
                    judge_key("control", direction),
                    judge_key("recon", direction),
                    judge_key("success", direction),
                    supervisor_key("raw", direction),
                    supervisor_key("control", direction),
                )
                rows.append(
                    [escape(label + _EXCHANGE_LABELS[direction])]
                    + [_rate_cell(source, key) for key in keys]
                )
        parts.append(
            table(
                [
                    "Exchanged image",
                    "Judge: same grade as the donor",
                    "… control",
                    "Judge: donor's grade (label only)",
                    "… control",
                    "… on X̂",
                    "Success: donor's grade AND plausible",
                    "Supervisor: donor's grade",
                    "… control",
                ],
                rows,
                "rates",
            )
        )
        parts.append(
            note(
                "The <b>judge</b> is an independent classifier the generator never saw; the "
                "<b>supervisor</b> is the frozen classifier whose loss trained the generator, so "
                "it can be fooled by changes a person or another model would not see. <b>Same "
                "grade as the donor</b>: the judge gives X′ the grade it gives the donor image "
                "itself, so its own errors on real images do not count against the exchange. "
                "<b>Control</b>: the same rule on the no-exchange output (the recipient given its "
                "own key: the reconstruction for a decoded exchange, the recipient itself for a "
                "residual or warp exchange), the rate an exchange must beat; <b>on X̂</b>: on the "
                "plain reconstruction. <b>Success</b> also asks the image to be plausible (see "
                "below). Cells give the 95 % Wilson interval and n. On phantoms the <b>perfect "
                "exchange</b> rows apply the same rules to oracle images (each recipient "
                "rendered from its ground truth with its donor's key features): the ceiling."
            )
        )
        es = ExchangeSuccess.from_dict(sec)
        sentences = _gap_text(es, KL0_TO_KL2, "X′1", "KL-2") + _gap_text(
            es, KL2_TO_KL0, "X′2", "KL-0"
        )
        judge = JudgeSummary.from_dict(run.section(JudgeSummary.NAME))
        cm = judge.confusion
        accuracy, recall0, recall2 = (
            number(v) for v in (judge.test_accuracy, judge.recall_kl0, judge.recall_kl2)
        )
        if _is_2x2(cm) and accuracy is not None and recall0 is not None and recall2 is not None:
            sentences.append(
                f"On real test images the judge grades {100 * accuracy:.1f} % "
                f"correctly (KL-0 recall {100 * recall0:.1f} %, KL-2 recall "
                f"{100 * recall2:.1f} %; TN {cm[0][0]}, FP {cm[0][1]}, "
                f"FN {cm[1][0]}, TP {cm[1][1]}): a perfect exchange scores about its recall on "
                "the donor's grade, not 100 %."
            )
        if sentences:
            parts.append("<p>" + " ".join(escape(t) for t in sentences) + "</p>")
    else:
        parts.append(
            problem_notes(run, run.rel(run.layout.metrics))
            or missing_note("exchange success rates", "evaluate", run)
        )
    parts.append("<h3>The classifiers</h3>" + _classifiers(run))
    return "".join(parts)


def _classifiers(run: RunData) -> str:
    rows, missing = [], []
    for name, role, summary_type, folder in (
        (
            "supervisor",
            "supervisor (trained the generator)",
            SupervisorSummary,
            run.layout.supervisor,
        ),
        ("judge", "judge (independent)", JudgeSummary, run.layout.judge),
    ):
        run_metrics = run.classifiers.get(name, {})
        test: dict[str, Any] = (
            run_metrics["test"] if isinstance(run_metrics.get("test"), dict) else run_metrics
        )
        raw = run.section(summary_type.NAME)
        if not test and not raw:
            missing.append(
                missing_note(f"the {name} classifier ({run.rel(folder.metrics)})", name, run)
            )
            continue
        summary = summary_type.from_dict(raw)
        arch = summary.arch if "arch" in raw else run_metrics.get("arch", "—")
        acc = test.get("accuracy", summary.test_accuracy)
        cm = test.get("confusion")
        cm_txt = (
            f"TN {cm[0][0]} · FP {cm[0][1]} · FN {cm[1][0]} · TP {cm[1][1]}" if _is_2x2(cm) else "—"
        )
        n = test.get("n", run_metrics.get("n_test", raw.get("n")))
        rows.append(
            [
                escape(role),
                f"<code>{escape(arch)}</code>",
                fmt(acc, "pct"),
                fmt(test.get("precision"), "pct"),
                fmt(test.get("recall"), "pct"),
                fmt(test.get("auc"), "num"),
                escape(cm_txt)
                + (
                    f'<br><span class="small">n = {fmt(n, "int")}</span>'
                    if number(n) is not None
                    else ""
                ),
            ]
        )
    html = (
        table(
            [
                "Classifier",
                "Architecture",
                "Test accuracy",
                "Precision (KL-2)",
                "Recall (KL-2)",
                "ROC AUC",
                "Confusion (test)",
            ],
            rows,
            "classifiers",
        )
        if rows
        else ""
    )
    return (
        problem_notes(
            run, run.rel(run.layout.supervisor.metrics), run.rel(run.layout.judge.metrics)
        )
        + html
        + "".join(missing)
    )


def _is_2x2(cm: Any) -> TypeGuard[list[list[int]]]:
    return (
        isinstance(cm, list)
        and len(cm) == 2
        and all(isinstance(r, list) and len(r) == 2 for r in cm)
    )
