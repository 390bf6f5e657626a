"""The report's sections: one function per section, from the run folder's data to HTML.

Numbers are read through the typed sections of :mod:`kecae.results`; the generic metric tables
list keys that are checked against those sections when this module is imported, so a renamed
metric breaks the report loudly, not silently. A missing part becomes a note naming the command
that makes it; a part that cannot be drawn becomes a note, never a lost page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeGuard

import numpy as np

from kecae.report import figures
from kecae.report.downstream import downstream_rows, downstream_section, shortcut_section
from kecae.report.format import fmt, number, sample_size, spread
from kecae.report.grade_match import grade_match_section
from kecae.report.load import RunData, read_npz
from kecae.report.parts import Card, cards, escape, figure, metric_table, note, table
from kecae.report.robustness import robustness_section
from kecae.results import (
    CONFIG_SECTION,
    DIRECTIONS,
    KL0_TO_KL2,
    KL2_TO_KL0,
    TARGETS_SECTION,
    TIMINGS_SECTION,
    Ablation,
    AblationCell,
    ClassifierRates,
    Downstream,
    DownstreamShortcut,
    ExchangeSuccess,
    Fidelity,
    FidelityDirection,
    JudgeSummary,
    LambdaGrid,
    Oracle,
    Plausibility,
    Quality,
    SamplingSize,
    Section,
    Separability,
    SupervisorSummary,
    Tune,
    read_targets,
)
from kecae.studies.tune import OBJECTIVE_TERMS, SEARCH_SPACE

log = logging.getLogger(__name__)

#: A row of a metric table: (metrics.json key, label, kind of number).
Row = tuple[str, str, str]


def _known(section: type[Section], rows: list[Row]) -> list[Row]:
    """``rows``, each key checked against what ``section`` writes."""
    for key, _label, _kind in rows:
        section.path(key)  # KeyError for a key the section does not have
    return rows


def _fid(name: str, direction: str = KL0_TO_KL2) -> str:
    return FidelityDirection.key(name, direction)


def _judge(name: str, direction: str) -> str:
    return ClassifierRates.key(name, "judge", direction)


def _supervisor(name: str, direction: str) -> str:
    return ClassifierRates.key(name, "supervisor", direction)


# Labels and formats of the known metrics.json keys, per section, in display order.
SEPARABILITY_ROWS = _known(
    Separability,
    [
        ("svm_hk_accuracy", "SVM-RBF accuracy on the key vectors hK", "pct"),
        ("svm_hn_accuracy", "SVM-RBF accuracy on the non-key vectors hN", "pct"),
        (
            "svm_judge_features_accuracy",
            "Reference: the same SVM on the judge's features of the same images",
            "pct",
        ),
    ],
)
PLAUSIBILITY_ROWS = _known(
    Plausibility,
    [
        (
            "real_test",
            "Control: real test images passing the rule (nominal share = the quantile)",
            "pct",
        ),
        ("x_ex", "Exchanged images X′ passing the rule", "pct"),
        ("x_ex_kl0_to_kl2", "X′1 (KL-0 → KL-2) passing", "pct"),
        ("x_ex_kl2_to_kl0", "X′2 (KL-2 → KL-0) passing", "pct"),
        ("ratio_to_real", "X′ pass rate / real pass rate", "num"),
        ("control", "Control: no-exchange outputs passing", "pct"),
        ("recon", "Control: reconstructions X̂ passing", "pct"),
        ("knn_real_test", "k-NN manifold precision, real test images", "pct"),
        ("knn_x_ex", "k-NN manifold precision, X′", "pct"),
        ("knn_recon", "k-NN manifold precision, X̂", "pct"),
    ],
)
FIDELITY_ROWS = _known(
    Fidelity,
    [
        (
            _fid("key_transfer_median"),
            "Key transfer KL-0 → KL-2, median (refused X′ = failure)",
            "num",
        ),
        (_fid("key_transfer_iqr"), "Key transfer KL-0 → KL-2, IQR", "num"),
        (_fid("key_transfer_success_rate"), "Pairs with key transfer ≥ 0.7, KL-0 → KL-2", "pct"),
        (_fid("key_transfer_median", KL2_TO_KL0), "Key transfer KL-2 → KL-0, median", "num"),
        (
            _fid("key_transfer_success_rate", KL2_TO_KL0),
            "Pairs with key transfer ≥ 0.7, KL-2 → KL-0",
            "pct",
        ),
        (
            _fid("recon_key_transfer_median"),
            "Key transfer KL-0 → KL-2 against the reconstructions "
            "(X̂1 and X̂2 in place of X1 and X2), median",
            "num",
        ),
        (
            _fid("recon_key_transfer_median", KL2_TO_KL0),
            "Key transfer KL-2 → KL-0 against the reconstructions, median",
            "num",
        ),
        ("osteophyte_rate_real_kl2", "Osteophytes detected: real KL-2 test images", "pct"),
        ("osteophyte_rate_x1_ex", "Osteophytes detected: X′1 (should match real KL-2)", "pct"),
        (
            "osteophyte_rate_x1_self",
            "Osteophytes detected: no-exchange output of X1 (control)",
            "pct",
        ),
        ("osteophyte_rate_real_kl0", "Osteophytes detected: real KL-0 test images", "pct"),
        ("osteophyte_rate_x2_ex", "Osteophytes detected: X′2 (should match real KL-0)", "pct"),
        (
            "osteophyte_rate_x2_self",
            "Osteophytes detected: no-exchange output of X2 (control)",
            "pct",
        ),
        ("osteophyte_transfer_rate", "Osteophytes gained by X′1 when the donor has them", "pct"),
        ("osteophyte_removal_rate", "Osteophytes lost by X′2 when the donor has none", "pct"),
        (
            "nonkey_ssim_median",
            "SSIM of X′ vs its recipient outside the joint band, median (both directions)",
            "num",
        ),
        ("refusal_rate", "X′ whose joint the measurement could not find", "pct"),
        ("refusal_rate_real", "Real test images whose joint it could not find", "pct"),
        ("refusal_rate_recon", "Reconstructions whose joint it could not find", "pct"),
    ],
)
QUALITY_ROWS = _known(
    Quality,
    [
        ("recon_psnr", "PSNR of the reconstructions X̂ vs X", "db"),
        ("recon_ssim", "SSIM of the reconstructions X̂ vs X", "num"),
        ("frechet", "Fréchet distance, X′ vs real images (judge features)", "num"),
        (
            "frechet_real_floor",
            "Fréchet distance between two halves of the real images (the floor)",
            "num",
        ),
    ],
)

#: The headline cards: (section, key, label, kind).
HEADLINE: list[tuple[type[Section], str, str, str]] = [
    (
        ExchangeSuccess,
        _judge("agreement", KL0_TO_KL2),
        "X′1: the judge gives it the grade it gives the KL-2 donor",
        "pct",
    ),
    (
        ExchangeSuccess,
        _judge("agreement", KL2_TO_KL0),
        "X′2: the judge gives it the grade it gives the KL-0 donor",
        "pct",
    ),
    (Fidelity, _fid("key_transfer_median"), "median key transfer, KL-0 → KL-2 (1 = donor)", "num"),
    (
        Fidelity,
        _fid("key_transfer_median", KL2_TO_KL0),
        "median key transfer, KL-2 → KL-0 (1 = donor)",
        "num",
    ),
    (Fidelity, "nonkey_ssim_median", "SSIM outside the joint band", "num"),
    (Plausibility, "ratio_to_real", "plausible X′ / plausible real images", "num"),
    (Separability, "svm_hk_accuracy", "SVM-RBF accuracy on hK", "pct"),
]
for _section, _key, _label, _kind in HEADLINE:
    _section.path(_key)


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


def _missing(what: str, how: str, run: RunData) -> str:
    return note(f"Not computed: {escape(what)}. Run <code>{escape(how_to(how, run))}</code>.")


def _problems(run: RunData, *rels: str) -> str:
    return "".join(
        note(
            f"Could not read <code>{escape(r)}</code> ({escape(run.problems[r])}); "
            "rerun the step that writes it."
        )
        for r in rels
        if r in run.problems
    )


def _drawn(draw: Callable[[], str | None], alt: str, caption: str) -> str:
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


# ---------------------------------------------------------------------------------------------
# Headline and targets
# ---------------------------------------------------------------------------------------------


def _headline(run: RunData) -> str:
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
        return _missing("no headline number is available yet", "everything", run)
    return cards(items)


def _targets(run: RunData) -> str:
    targets = read_targets(run.section(TARGETS_SECTION))
    if not targets:
        return _missing("targets", "evaluate", run)
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


# ---------------------------------------------------------------------------------------------
# What the exchange does
# ---------------------------------------------------------------------------------------------


def _examples(run: RunData) -> str:
    ex = run.examples
    rel = run.rel(run.layout.eval.examples)
    if ex is None:
        return _problems(run, rel) or _missing(f"example images ({rel})", "evaluate", run)
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


def _exchange(run: RunData) -> str:
    sec = run.section(ExchangeSuccess.NAME)
    parts = []
    if sec:
        rows = []
        oracle = run.section(Oracle.NAME).get(ExchangeSuccess.NAME)
        for label, source in (("", sec), ("A perfect exchange (oracle), ", oracle)):
            if not isinstance(source, dict):
                continue
            for direction in DIRECTIONS:
                keys = (
                    _judge("agreement", direction),
                    _judge("agreement_control", direction),
                    _judge("raw", direction),
                    _judge("control", direction),
                    _judge("recon", direction),
                    _judge("success", direction),
                    _supervisor("raw", direction),
                    _supervisor("control", direction),
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
            _problems(run, run.rel(run.layout.metrics))
            or _missing("exchange success rates", "evaluate", run)
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
                _missing(f"the {name} classifier ({run.rel(folder.metrics)})", name, run)
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
        _problems(run, run.rel(run.layout.supervisor.metrics), run.rel(run.layout.judge.metrics))
        + html
        + "".join(missing)
    )


def _is_2x2(cm: Any) -> TypeGuard[list[list[int]]]:
    return (
        isinstance(cm, list)
        and len(cm) == 2
        and all(isinstance(r, list) and len(r) == 2 for r in cm)
    )


def _plausibility(run: RunData) -> str:
    sec = run.section(Plausibility.NAME)
    if not sec:
        return _missing("the plausibility rule and its controls", "evaluate", run)
    rule = Plausibility.from_dict(sec).rule
    return metric_table(sec, PLAUSIBILITY_ROWS, extra=False) + note(
        escape("" if rule is None else rule) + ". A rule that rejected real images would cap every "
        "success rate; calibrated on held-out images, real test images pass at about the "
        "nominal share."
    )


def _fidelity(run: RunData) -> str:
    sec = run.section(Fidelity.NAME)
    parts = [_problems(run, run.rel(run.layout.eval.fidelity))]
    if sec:
        parts.append(metric_table(sec, FIDELITY_ROWS))
        parts.append(
            note(
                "Measured on phantoms, whose ground truth is known. Key transfer ratio = (JSW of "
                "the recipient − JSW of X′) / (JSW of the recipient − JSW of the donor): 0 means "
                "the joint space did not change, 1 means it took the donor's width exactly. The "
                "SSIM outside the joint band checks that the rest of the knee stayed the "
                "recipient's."
            )
        )
    arrays = run.fidelity
    if arrays:
        targets = run.section(TARGETS_SECTION)
        parts.append(
            _drawn(
                lambda: figures.fidelity_figure(arrays, targets),
                "the fidelity histograms",
                escape(
                    "Distribution over generated pairs. Ratio panels: the dashed green line at 1 "
                    "is a perfect transfer, the dotted grey line at 0 no transfer, the black line "
                    "the median, a red line the target when one is set; a tall, narrow peak near "
                    "1 is the goal; the panel against the reconstructions (X̂1 and X̂2 as "
                    "recipient and donor) removes the auto-encoder's own blur from the comparison "
                    "and should also peak at 1. SSIM panel: values near 1 mean the non-key "
                    "anatomy was kept."
                ),
            )
        )
    if not sec and not run.fidelity:
        parts.append(_missing("ground-truth fidelity (needs phantom data)", "evaluate", run))
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# The latents, the image quality and the studies
# ---------------------------------------------------------------------------------------------


def _separability(run: RunData) -> str:
    sec = run.section(Separability.NAME)
    parts = []
    if sec:
        parts.append(metric_table(sec, SEPARABILITY_ROWS))
        parts.append(
            note(
                "An RBF-kernel SVM is trained to tell KL-0 from KL-2 from one latent vector "
                "(stratified 5-fold cross-validation). The key vector hK should separate the "
                "classes (high accuracy); the non-key vector hN should not (near 50 %), because "
                "the grade is meant to live in hK only."
            )
        )
    else:
        parts.append(_missing("SVM separability of hK and hN", "evaluate", run))
    raw_grid = run.section(LambdaGrid.NAME)
    if raw_grid:
        grid = LambdaGrid.from_dict(raw_grid)
        parts.append(
            _drawn(
                lambda: figures.lambda_figure(grid.lambda1, grid.lambda2, grid.svm_hk_accuracy),
                "the λ1 × λ2 grid",
                escape(
                    "SVM-RBF accuracy on hK (%) for each pair of loss weights, one KECAE trained "
                    "per cell (as in the paper's Fig. 3). The red box marks the best cell; the "
                    "white star the paper's choice λ1 = 1e-2, λ2 = 1e-3 when it is on the grid."
                ),
            )
        )
    return "".join(parts)


def _quality(run: RunData) -> str:
    sec = run.section(Quality.NAME)
    parts = []
    if sec:
        parts.append(metric_table(sec, QUALITY_ROWS))
        quality = Quality.from_dict(sec)
        fd, floor = number(quality.frechet), number(quality.frechet_real_floor)
        text = (
            "PSNR and SSIM compare each reconstruction X̂ with its input X (higher is "
            "better; SSIM 1 = identical). The Fréchet distance compares the feature "
            "statistics of the generated images with those of real images in the judge's "
            "feature space; it is never 0 for finite samples, hence the floor measured "
            "between two halves of the real set."
        )
        if fd is not None and floor is not None and floor > 0:
            text += f" Here the distance is {fd / floor:.1f}× the floor."
        parts.append(note(escape(text)))
    else:
        parts.append(_missing("reconstruction PSNR/SSIM and Fréchet distance", "evaluate", run))
    ex = run.examples
    if ex is not None and all(k in ex for k in ("x1", "x1_hat", "x2", "x2_hat")):
        parts.append(
            _drawn(
                lambda: figures.recon_figure(ex),
                "the reconstructions",
                escape(
                    "Inputs and their reconstructions (no exchange). Blur or lost detail here is "
                    "the auto-encoder's own error and is inherited by every exchanged image."
                ),
            )
        )
    return "".join(parts)


def _downstream(run: RunData) -> str:
    return downstream_section(
        run, _drawn, _missing("downstream classifiers on T vs T′", "downstream", run)
    )


def _downstream_shortcut(run: RunData) -> str:
    return shortcut_section(
        run, _drawn, _missing("the study in the shortcut regime", "downstream_shortcut", run)
    )


# ---------------------------------------------------------------------------------------------
# kecae tune
# ---------------------------------------------------------------------------------------------


def _tune(run: RunData) -> str:
    raw = run.section(Tune.NAME)
    if not raw or not isinstance(raw.get("trials"), list):
        return _missing("the search of λ1, λ2 and the exchange options", "tune", run)
    sec = Tune.from_dict(raw)
    parts = []
    terms = list(OBJECTIVE_TERMS)
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
            _drawn(
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


#: Loss weights of KECAETrainConfig shown when they are switched on: field -> what it weighs.
_EXTRA_TERMS = {
    "lambda_disp": "mean squared displacement",
    "lambda_smooth": "displacement smoothness",
    "lambda_fold": "fold penalty",
    "lambda_edit": "L1 of the residual edit",
    "lambda_cycle": "cycle (re-encoding X′ gives back its latents)",
    "lambda_same": "same-grade exchange changes little",
    "lambda_key_cls": "grade probe on hK",
    "lambda_nonkey_adv": "adversarial grade probe on hN",
}


def _exchange_text(model: Any) -> str:
    if model.exchange == "warp":
        text = (
            f"warp: X′1 is X1 moved along a smooth displacement field decoded from hN1 + hK2 "
            f"(≤ {model.warp_max_px:g} px, {model.warp_grid}×{model.warp_grid} grid)"
        )
        if model.warp_residual:
            text += f", plus a residual blurred by σ {model.residual_blur_px:g} px"
        return text
    if model.exchange == "residual":
        return (
            "residual: X′1 = X1 + blur(D(hN1 + hK2) − D(hN1 + hK1)), "
            f"σ {model.residual_blur_px:g} px"
        )
    return "decoded: X′1 = D(hN1 + hK2), the paper's"


def _generator(run: RunData) -> str:
    """The KECAE options this run trained: preset, model and loss, as its config.yaml gives them."""
    from kecae.config import load_yaml
    from kecae.errors import KecaeError
    from kecae.models.presets import kecae_config
    from kecae.training.config import KECAETrainConfig

    path = run.layout.kecae.config
    rel = run.rel(path)
    if not path.is_file():
        return _missing(f"the KECAE configuration ({rel})", "train", run)
    try:
        cfg = load_yaml(KECAETrainConfig, path)
        model = kecae_config(cfg.preset, **dict(cfg.model or {}))
    except (KecaeError, ValueError, TypeError) as e:
        return note(f"Could not read <code>{escape(rel)}</code> ({escape(str(e))}).")
    c, h, w = model.latent_shape
    kc, kh, kw = model.key_shape
    sup = "the supervisor's call on the donor" if cfg.sup_target == "donor" else "the donor's grade"
    loss = [
        f"J_{'L1' if cfg.recon == 'l1' else 'MSE'}",
        f"λ1 = {cfg.lambda_sup:g} · J_SUP (target: {sup})",
    ]
    if cfg.lambda_lda:
        loss.append(f"λ2 = {cfg.lambda_lda:g} · J_LDA ({cfg.lda_mode})")
    loss += [f"{getattr(cfg, k):g} · {what}" for k, what in _EXTRA_TERMS.items() if getattr(cfg, k)]
    if cfg.sup_perturb:
        loss.append(f"X′ shifted/blurred by ≤ {cfg.sup_perturb:g} px before the supervisor")
    rows = [
        ["preset", escape(cfg.preset)],
        ["image, channels", f"{model.image_size} px, {model.channels[0]}…{model.channels[-1]}"],
        ["latent hN", f"{c}×{h}×{w} ({model.depth} stride-2 blocks)"],
        [
            "key hK",
            f"{kc}×{kh}×{kw}"
            + (" (position-free: averaged over the grid)" if model.key_pool == "mean" else ""),
        ],
        ["exchange", escape(_exchange_text(model))],
        ["loss", escape(" + ".join(loss))],
        [
            "budget",
            (f"{cfg.max_steps} steps" if cfg.max_steps else f"{cfg.epochs} epochs")
            + f" × {cfg.batch_size} pairs, Adam lr {cfg.lr:g}",
        ],
    ]
    return table(["Option", "Value"], rows, "generator") + note(
        f"From <code>{escape(rel)}</code>; docs/ablation.md measures each option against the "
        "paper's model on the same budget."
    )


def _setting(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "—" if value is None else str(value)


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


def _ablation(run: RunData) -> str:
    raw = run.section(Ablation.NAME)
    if not raw or not isinstance(raw.get("rows"), list):
        return _missing("the ablation of KECAE options", "ablation", run)
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


# ---------------------------------------------------------------------------------------------
# Training, configuration, reader study
# ---------------------------------------------------------------------------------------------


def _training(run: RunData) -> str:
    rel = run.rel(run.layout.kecae.log)
    if run.train_log is None:
        return _problems(run, rel) or _missing(f"KECAE training log ({rel})", "train", run)
    uri, constant = figures.training_figure(run.train_log)
    if uri is None:
        return note(f"{rel} has no numeric column to plot yet.")
    n = len(run.train_log.get("step", next(iter(run.train_log.values()))))
    cap = (
        f"Every logged term against the optimisation step ({n} log rows); loss terms on a "
        "log scale. J = J_MSE + λ1·J_SUP + λ2·J_LDA: J_MSE should fall steadily, J_SUP "
        "falls as the exchanged images take the donor's class, J_LDA falls as the key and "
        "non-key vectors separate. A flat or rising term means that part is not learning."
    )
    if constant:
        cap += f" Constant, not plotted: {', '.join(constant)}."
    return figure(uri, "Training curves", escape(cap))


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out.extend(_flatten(v, f"{prefix}{k}."))
        else:
            out.append((f"{prefix}{k}", v))
    return out


def _entries(d: dict[str, Any]) -> list[list[str]]:
    """(dotted key, JSON value) rows of a nested mapping."""
    return [
        [f"<code>{escape(k)}</code>", escape(json.dumps(v) if not isinstance(v, str) else v)]
        for k, v in _flatten(d)
    ]


#: Sections laid out by their own part of the page; others are listed as raw entries.
KNOWN_SECTIONS = {
    Oracle.NAME,
    Separability.NAME,
    ExchangeSuccess.NAME,
    Plausibility.NAME,
    Ablation.NAME,
    JudgeSummary.NAME,
    SupervisorSummary.NAME,
    Fidelity.NAME,
    Quality.NAME,
    Downstream.NAME,
    DownstreamShortcut.NAME,
    LambdaGrid.NAME,
    SamplingSize.NAME,
    Tune.NAME,
    TARGETS_SECTION,
    CONFIG_SECTION,
    TIMINGS_SECTION,
}


def _configuration(run: RunData) -> str:
    parts = []
    config = run.section(CONFIG_SECTION)
    if config:
        parts.append(table(["Setting", "Value"], _entries(config), "config"))
    else:
        parts.append(_missing("the configuration (metrics.json: config)", "evaluate", run))
    other = {k: v for k, v in run.metrics.items() if k not in KNOWN_SECTIONS}
    if other:  # sections this page does not lay out yet are still shown, never dropped
        parts.append(
            "<h3>Other entries of metrics.json</h3>"
            + table(["Entry", "Value"], _entries(other), "config")
        )
    timings = run.section(TIMINGS_SECTION)
    if timings:
        rows = [[escape(k), fmt(v, "sec")] for k, v in timings.items()]
        total = sum(number(v) or 0.0 for v in timings.values())
        rows.append(["<b>total</b>", f"<b>{fmt(total, 'sec')}</b>"])
        parts.append("<h3>Timings</h3>" + table(["Step", "Wall time"], rows, "timings"))
    return "".join(parts)


def _reader_pct(d: Any, ci: bool = False) -> str:
    d = d if isinstance(d, dict) else {}
    lo, hi = number(d.get("ci_low")), number(d.get("ci_high"))
    text = fmt(d.get("value"), "pct")
    return text + (
        f" ({100 * lo:.0f}–{100 * hi:.0f})" if ci and lo is not None and hi is not None else ""
    )


def _reader_mean(d: Any) -> str:
    return fmt((d if isinstance(d, dict) else {}).get("mean"), "num")


def _kappa(v: Any) -> str:
    x = number(v)
    return "—" if x is None else f"{x:.2f}"


def reader_study(sec: dict[str, Any]) -> str:
    """Table III from ``kecae reader-study analyze --run`` (metrics.json: ``reader_study``, as
    :meth:`kecae.reader_study.analyze.ReaderStudyResult.to_dict` writes it)."""
    rows = []
    for r in [*sec.get("readers", []), sec.get("overall") or {}]:
        if not isinstance(r, dict) or "reader" not in r:
            continue
        g: dict[str, dict[str, Any]] = {
            k: r[k] if isinstance(r.get(k), dict) else {}
            for k in ("accuracy", "realism", "control_accuracy", "control_realism", "match_rate")
        }
        rows.append(
            [
                escape(r["reader"]),
                f"{r.get('answered', '—')} / {r.get('total', '—')}",
                _reader_pct(g["accuracy"].get("all"), ci=True),
                _reader_pct(g["accuracy"].get("KL-0")),
                _reader_pct(g["accuracy"].get("KL-2")),
                _reader_mean(g["realism"].get("all")),
                _reader_mean(g["realism"].get("KL-0")),
                _reader_mean(g["realism"].get("KL-2")),
                _reader_pct(g["control_accuracy"].get("all")),
                _reader_mean(g["control_realism"].get("all")),
                _reader_pct(g["match_rate"].get("all")),
                _reader_pct(r.get("sham_match_rate")),
            ]
        )
    parts = [
        table(
            [
                "Reader",
                "Answered",
                "Accuracy (95 % CI)",
                "X′2 → KL-0",
                "X′1 → KL-2",
                "Realism",
                "X′2",
                "X′1",
                "Controls: accuracy",
                "Controls: realism",
                "Phase 2: match",
                "Sham: match",
            ],
            rows,
            "reader-study",
        )
    ]
    agree = [
        [
            escape("Fleiss' κ" if a.get("statistic") == "fleiss_kappa" else "Cohen's κ"),
            escape(", ".join(map(str, a.get("readers", [])))),
            escape(a.get("images", "")),
            _kappa(a.get("kappa")),
            f"{_kappa(a.get('ci_low'))} – {_kappa(a.get('ci_high'))}",
            fmt(a.get("n_items"), "int"),
        ]
        for a in sec.get("agreement", [])
        if isinstance(a, dict)
    ]
    if agree:
        parts.append(
            table(["Agreement", "Readers", "Images", "κ", "95 % CI", "n"], agree, "reader-study")
        )
    parts.append(
        note(
            escape(
                f"{sec.get('generated_images', '—')} generated images ({sec.get('pairs', '—')} "
                f"pairs) and {sec.get('controls', '—')} real control images, graded blind (as in "
                f"the paper's Table "
                "III). Accuracy: the KL call equals the intended label (X′2 → KL-0, X′1 → KL-2) "
                "or a control's true grade, with Wilson intervals per reader and bootstrap "
                "intervals over images for all readers; realism: mean score 1–5, to be read "
                "against the controls'. Phase 2: comparisons with the original called a match of "
                "the intended exchange, and sham comparisons (a real image beside itself) called "
                "a match. κ on the KL call, "
                f"bootstrap 95 % intervals over images ({sec.get('n_boot', '—')} resamples)."
            )
        )
    )
    return "".join(parts)


#: (anchor, heading, builder) in page order.
SECTIONS: list[tuple[str, str, Callable[[RunData], str]]] = [
    ("headline", "Headline numbers", _headline),
    ("targets", "Targets", _targets),
    ("generator", "The generator", _generator),
    ("examples", "Key-exchange examples", _examples),
    ("exchange", "Exchange success", _exchange),
    ("plausibility", "Plausibility", _plausibility),
    ("fidelity", "Fidelity to the ground truth", _fidelity),
    (
        "grade-match",
        "X′ against real knees of its grade, and the judge's disagreements",
        grade_match_section,
    ),
    ("separability", "Separability of key features", _separability),
    ("quality", "Image quality", _quality),
    ("downstream", "Downstream benefit", _downstream),
    ("downstream_shortcut", "Downstream benefit, shortcut regime", _downstream_shortcut),
    ("ablation", "Ablation of the KECAE options", _ablation),
    ("robustness", "Robustness: the recipe trained afresh per seed", robustness_section),
    ("tune", "Tuning λ1, λ2 and the exchange options", _tune),
    ("training", "Training curves", _training),
    ("configuration", "Configuration", _configuration),
]
