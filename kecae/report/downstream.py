"""The report's downstream sections (``kecae study downstream``), one per regime: the answer in
one sentence, the label check (train on generated, test on real) per direction, Table II with
accuracy, precision and recall ± std and the paired differences (95 % interval, p, minimal
detectable effect), what each fraction trained on, and the figures: test accuracy against the
training fraction with 95 % intervals, and T's validation curve along the step budget."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from kecae.report import figures
from kecae.report.answer import generator_warning, label_check, p_text, seed_words
from kecae.report.format import fmt, number
from kecae.report.load import RunData
from kecae.report.parts import escape, note, table
from kecae.results import (
    Downstream,
    DownstreamFraction,
    DownstreamRow,
    DownstreamShortcut,
    PairedDifference,
    SamplingSize,
)

#: draw, alt text, caption -> the figure's HTML (the report's guarded drawing).
Drawn = Callable[[Callable[[], str | None], str, str], str]
#: Curves per model and training set: fractions, means, 95 % interval half-widths.
Curves = dict[str, dict[str, tuple[list[float], list[float], list[float]]]]


def downstream_rows(
    run: RunData, kind: type[Downstream] = Downstream
) -> list[tuple[DownstreamRow, float | None]]:
    """Each row with its accuracy gain over the same model's T row at the same training
    fraction: the paired per-seed mean when the study wrote it, else the difference of means."""
    rows = kind.from_dict(run.section(kind.NAME)).rows
    if rows is None:
        return []
    base = {
        (r.model, r.train_fraction): number(r.accuracy_mean) for r in rows if r.training_set == "T"
    }
    out = []
    for r in rows:
        gain = None
        if r.paired_vs_t is not None:
            gain = number(r.paired_vs_t.mean)
        elif r.training_set != "T":
            acc, b = number(r.accuracy_mean), base.get((r.model, r.train_fraction))
            gain = acc - b if (acc is not None and b is not None) else None
        out.append((r, gain))
    return out


def _mean_std(mean: Any, std: Any) -> str:
    m, s = number(mean), number(std)
    if m is None:
        return "—"
    return f"{100 * m:.2f} ± {100 * s:.2f}" if s is not None else f"{100 * m:.2f}"


def _paired_cell(
    diff: PairedDifference | None, gain: float | None = None, mde: bool = False
) -> str:
    """A paired difference in points: mean, its 95 % interval, p (and the minimal detectable
    effect)."""
    if diff is None or number(diff.mean) is None:
        return f"{100 * gain:+.2f}" if gain is not None else ""
    text = f"{100 * diff.mean:+.2f}"
    lo, hi = number(diff.ci_low), number(diff.ci_high)
    if lo is not None and hi is not None:
        text += f" [{100 * lo:+.2f}, {100 * hi:+.2f}]"
    else:
        text += f" ± {100 * (number(diff.std) or 0):.2f}"
    small = []
    p = number(diff.p_value)
    if p is not None:
        small.append(p_text(p))
    m = number(diff.mde)
    if mde and m is not None:
        small.append(f"mde {100 * m:.2f}")
    return text + (f'<br><span class="small">{", ".join(small)}</span>' if small else "")


def _row_cells(r: DownstreamRow, gain: float | None) -> list[str]:
    fraction = number(r.train_fraction)
    return [
        escape("—" if r.model is None else r.model),
        "—" if fraction is None else f"{fraction:g}",
        escape("—" if r.training_set is None else r.training_set.replace("'", "′")),
        f"{fmt(r.n_train_real, 'int')} + {fmt(r.n_train_generated, 'int')}",
        _mean_std(r.accuracy_mean, r.accuracy_std),
        _mean_std(r.precision_mean, r.precision_std),
        _mean_std(r.recall_mean, r.recall_std),
        _mean_std(r.val_accuracy_mean, r.val_accuracy_std),
        _paired_cell(r.paired_vs_t, gain),
        _paired_cell(r.paired_vs_classic, mde=True),
        fmt(r.n_seeds, "int"),
    ]


HEADER = [
    "Model",
    "Training fraction",
    "Training set",
    "Images: real + generated",
    "Accuracy (%)",
    "Precision (%)",
    "Recall (%)",
    "Validation accuracy (%)",
    "Δ accuracy vs T (pp) [95 % CI]",
    "Δ accuracy vs T+classic (pp) [95 % CI]",
    "Seeds",
]


def _method_note(t: Downstream) -> str:
    return escape(
        "Mean ± sample standard deviation over training seeds, on the same fixed validation and "
        "test sets (as in the paper's Table II), at each share of the real training patients; "
        "precision and recall of KL-2. Every row of a fraction trained for the same number of "
        "optimiser steps, the checkpoint with the best validation accuracy kept. T: the real "
        "training images of that share; T′: T with key-exchanged images drawn into the same "
        "batches, made by a KECAE trained on that share alone; T+classic: flips, small "
        "rotations and intensity changes; T+mixup / T+cutmix: the mixing augmentations. Label "
        "check: X′ trains on generated images alone (T's class counts), X′1+T0 replaces the "
        "real KL-2 images by X′1 and X′2+T2 the real KL-0 images by X′2, image for image. Δ: the "
        "paired per-seed difference (same seed, same initial weights), mean with its 95 % "
        f"interval and p-value ({t.test or 'two-sided paired t-test'}); mde: the smallest true "
        f"difference {seed_words(t)} find with 80 % power at that spread. A difference "
        "smaller than its interval is not evidence of a benefit."
    )


def _fraction_cells(fr: DownstreamFraction) -> list[str]:
    budget = "; ".join(
        f"{b.model} T at {b.steps} steps: val {100 * b.val_accuracy:.1f} % (at the budget "
        f"{100 * b.budget_val_accuracy:.1f} %), test {100 * b.test_accuracy:.1f} % "
        f"({100 * b.budget_test_accuracy:.1f} %)"
        for b in fr.budget_checks or []
    )
    return [
        f"{fr.train_fraction:g}",
        fmt(fr.n_patients, "int"),
        f"{fmt(fr.n_train_real, 'int')} ({fmt(fr.n_kl0, 'int')} / {fmt(fr.n_kl2, 'int')})",
        fmt(fr.steps, "int"),
        fmt(2 * (fr.generated_pairs or 0), "int"),
        escape(_generator_text(fr)),
        escape(budget or "—"),
    ]


def _site_rows(fractions: list[DownstreamFraction]) -> list[list[str]]:
    def rate(r: Any) -> str:
        return fmt(getattr(r, "value", None), "pct")

    return [
        [
            f"{fr.train_fraction:g}",
            rate(s.real_kl2_marked),
            rate(s.real_kl0_marked),
            rate(s.x1_marked),
            rate(s.x2_marked),
            rate(s.x1_site_kept),
            rate(s.x2_site_kept),
            rate(s.detector_accuracy),
        ]
        for fr in fractions
        if (s := fr.site_check) is not None
    ]


def _generator_text(fr: DownstreamFraction) -> str:
    if not fr.generated_pairs:
        return "—"
    who = "the run's own KECAE" if fr.kecae_reused else "KECAE trained on this share alone"
    return f"{who}, {fmt(fr.kecae_steps, 'int')} steps"


def fraction_curves(rows: list[tuple[DownstreamRow, float | None]]) -> Curves:
    """model -> training set -> (fractions, accuracy means, 95 % interval half-widths of the
    mean over seeds), for rows with a fraction."""
    from scipy import stats

    curves: Curves = {}
    for r, _gain in rows:
        f, m = number(r.train_fraction), number(r.accuracy_mean)
        if f is None or m is None or r.model is None or r.training_set is None:
            continue
        n, s = int(r.n_seeds or 1), number(r.accuracy_std) or 0.0
        half = float(stats.t.ppf(0.975, n - 1)) * s / math.sqrt(n) if n > 1 else 0.0
        fr, mean, ci = curves.setdefault(r.model, {}).setdefault(r.training_set, ([], [], []))
        fr.append(f)
        mean.append(m)
        ci.append(half)
    return curves


def _curves_of_t(t: Downstream) -> dict[str, tuple[list[int], list[float], list[float]]]:
    """'model, fraction f' -> T's validation accuracy along the budget (steps, mean, std)."""
    return {
        f"{c.model}, fraction {c.train_fraction:g}": (
            list(c.steps),
            list(c.val_accuracy_mean),
            list(c.val_accuracy_std),
        )
        for c in t.curves or []
        if c.training_set == "T" and c.steps
    }


def downstream_html(run: RunData, kind: type[Downstream], drawn: Drawn) -> str:
    """One regime's section ('' when the study has not run in that regime)."""
    rows = downstream_rows(run, kind)
    if not rows:
        return ""
    t = kind.from_dict(run.section(kind.NAME))
    parts = []
    if t.answer:
        parts.append(f"<p><b>{escape(t.answer)}</b></p>")
    for sentence in label_check(t):
        parts.append(f"<p>{escape(sentence)}</p>")
    parts.append(table(HEADER, [_row_cells(r, gain) for r, gain in rows], "downstream"))
    seconds = number(t.seconds)
    parts.append(
        note(
            _method_note(t)
            + (
                escape(f" The study's sub-runs took {fmt(seconds, 'sec')} on one core.")
                if seconds
                else ""
            )
        )
    )
    warning = generator_warning(t)
    if warning:
        parts.append(note(f"<b>{escape(warning)}</b>"))
    if t.fractions:
        parts.append(
            table(
                [
                    "Training fraction",
                    "Patients",
                    "Real images (KL-0 / KL-2)",
                    "Steps per row",
                    "Generated",
                    "Generator",
                    "T at twice the budget",
                ],
                [_fraction_cells(fr) for fr in t.fractions],
                "downstream",
            )
        )
        sites = _site_rows(t.fractions)
        if sites:
            parts.append(
                table(
                    [
                        "Training fraction",
                        "Real KL-2 with the marker",
                        "Real KL-0 with the marker",
                        "X′1 (KL-2) with the marker",
                        "X′2 (KL-0) with the marker",
                        "X′1 kept its recipient's site",
                        "X′2 kept its recipient's site",
                        "Marker detector accuracy",
                    ],
                    sites,
                    "downstream",
                )
            )
            parts.append(
                note(
                    escape(
                        "The shortcut: site B's marker goes with KL-2 in the training and "
                        "validation images and is independent of the grade in the test images. "
                        "A key exchange keeps the recipient's site, so X′ carries the marker "
                        "against its label as often as the recipients did: that is the "
                        "correlation T′ can break and flips or mixup cannot."
                    )
                )
            )
    curves = fraction_curves(rows)
    if curves and any(len(set(fr)) > 1 for sets in curves.values() for fr, _m, _c in sets.values()):
        parts.append(
            drawn(
                lambda: figures.fraction_figure(curves),
                "accuracy against the training fraction",
                escape(
                    "Test accuracy against the share of real training patients, one line per "
                    "training set, mean with the 95 % interval of the mean over seeds (lines "
                    "offset sideways so the intervals do not overlap)."
                ),
            )
        )
    val = _curves_of_t(t)
    if val:
        parts.append(
            drawn(
                lambda: figures.validation_figure(val),
                "T's validation accuracy along the step budget",
                escape(
                    "T's validation accuracy along the step budget of its fraction, mean ± std "
                    "over seeds: where it flattens, the budget let T converge."
                ),
            )
        )
    return "".join(parts)


def downstream_section(run: RunData, drawn: Drawn, missing: str) -> str:
    """The i.i.d. regime (and the sampling-size curve); ``missing`` when neither ran."""
    parts = [downstream_html(run, Downstream, drawn) or missing]
    raw_curve = run.section(SamplingSize.NAME)
    if raw_curve:
        curve = SamplingSize.from_dict(raw_curve)
        parts.append(
            drawn(
                lambda: figures.sampling_figure(curve.N, curve.accuracy_mean, curve.accuracy_std),
                "the sampling-size curve",
                escape(
                    "Test accuracy of the classifier trained on T plus N generated pairs, mean ± "
                    "std over seeds (as in the paper's Fig. 5b). N = 0 is the real training set "
                    "alone; the x axis is evenly spaced, not to scale."
                ),
            )
        )
    return "".join(parts)


def shortcut_section(run: RunData, drawn: Drawn, missing: str) -> str:
    """The shortcut regime, or ``missing``."""
    return downstream_html(run, DownstreamShortcut, drawn) or missing
