"""The downstream sections of the report and the study's sentences: the answer per regime, the
label check per direction with the real-vs-generated gap, Table II with precision and recall,
the paired intervals, the site check and the figures -- on hand-worked accuracies."""

from __future__ import annotations

import re
from dataclasses import replace as dataclasses_replace
from pathlib import Path

import numpy as np
import pytest

from kecae.evaluation.paired import paired_difference
from kecae.metrics_file import jsonable
from kecae.report.answer import answer, format_downstream, label_check, p_text, seed_words
from kecae.report.downstream import downstream_html, downstream_rows, fraction_curves
from kecae.report.load import RunData
from kecae.results import (
    Downstream,
    DownstreamFraction,
    DownstreamRow,
    DownstreamShortcut,
    PairedDifference,
    Rate,
    SiteCheck,
    ValidationCurve,
)

SEEDS = [0, 1, 2, 3, 4]
#: Test accuracy per seed of each row at fraction 0.1 (the label check there too).
ACC = {
    "T": [0.80, 0.82, 0.81, 0.79, 0.83],  # mean 0.81
    "T+classic": [0.81, 0.83, 0.82, 0.80, 0.84],  # mean 0.82
    "T'": [0.84, 0.85, 0.85, 0.83, 0.86],  # mean 0.846: +2.6 over T+classic, every seed
    "X'": [0.70, 0.71, 0.69, 0.72, 0.70],  # mean 0.704: 10.6 below T
    "X'1+T0": [0.78, 0.80, 0.79, 0.78, 0.80],  # mean 0.79: 2.0 below T
    "X'2+T2": [0.60, 0.62, 0.61, 0.63, 0.59],  # mean 0.61: 20.0 below T
}


def _row(name: str, fraction: float, shift: float = 0.0, model: str = "small") -> DownstreamRow:
    acc = [a + shift for a in ACC[name]]

    def diff(base: str) -> PairedDifference | None:
        if base == name:
            return None
        b = [a + shift for a in ACC[base]]
        return PairedDifference(**paired_difference(acc, b), baseline=base)

    return DownstreamRow(
        model=model,
        train_fraction=fraction,
        training_set=name,
        accuracy_mean=float(np.mean(acc)),
        accuracy_std=float(np.std(acc, ddof=1)),
        precision_mean=0.77,
        precision_std=0.031,
        recall_mean=0.66,
        recall_std=0.042,
        auc_mean=0.9,
        auc_std=0.01,
        n_seeds=5,
        n_train_real=145,
        n_train_generated=0 if name in ("T", "T+classic") else 145,
        accuracy_values=acc,
        seeds=SEEDS,
        paired_vs_t=diff("T"),
        paired_vs_classic=diff("T+classic"),
        val_accuracy_mean=0.9 if name == "T" else 0.85,
        val_accuracy_std=0.01,
    )


def _fraction(f: float, site: bool) -> DownstreamFraction:
    r = Rate(0.85, 0.8, 0.9, 100)
    return DownstreamFraction(
        train_fraction=f,
        data="d",
        n_patients=90,
        n_train_real=145,
        supervisor="s",
        kecae="k",
        kecae_reused=False,
        kecae_steps=2000,
        generated="g",
        generated_pairs=73,
        n_kl0=87,
        n_kl2=58,
        steps=300,
        site_check=SiteCheck(r, r, Rate(0.85, 0.8, 0.9, 58), r, Rate(0.15, 0.1, 0.2, 87), r, r)
        if site
        else None,
    )


def _section(kind: type[Downstream], site_bias: float | None) -> Downstream:
    rows = [_row(n, 0.1) for n in ACC] + [_row(n, 1.0, 0.05) for n in ("T", "T+classic", "T'")]
    section = kind(
        rows=rows,
        fractions=[_fraction(0.1, site_bias is not None), _fraction(1.0, False)],
        test="two-sided paired t-test",
        test_n=301,
        val_n=300,
        batch_size=32,
        seeds=SEEDS,
        image_size=64,
        data="d",
        gen_ratio=1.0,
        subsample_seed=0,
        generator_targets_missed=[],
        generator_targets_total=11,
        note="",
        site_bias=site_bias,
        curves=[
            ValidationCurve("small", 0.1, "T", [10, 20, 30], [0.6, 0.8, 0.9], [0.1, 0.05, 0.01], [])
        ],
        seconds=1234.0,
    )
    section.answer = answer(section)
    return section


def _html(tmp_path: Path, section: Downstream) -> str:
    run = RunData(tmp_path, metrics={section.NAME: jsonable(section.to_dict())})
    drawn: list[str] = []

    def draw(fn, alt, caption):
        drawn.append(alt)
        uri = fn()
        assert uri.startswith("data:image/png;base64,")
        return f"<figure>{alt}</figure>"

    html = downstream_html(run, type(section), draw)
    assert drawn == [
        "accuracy against the training fraction",
        "T's validation accuracy along the step budget",
    ]
    return html


def test_answer_names_the_winner_with_its_interval():
    section = _section(Downstream, None)
    text = section.answer or ""
    # T' beats T+classic (the better baseline) on every seed by +2.6 points
    d = paired_difference(ACC["T'"], ACC["T+classic"])
    assert d["p_value"] < 0.05 and d["ci_low"] > 0
    assert text.startswith("In the i.i.d. regime, T′ beat both T and T + classic at training")
    assert "fraction 0.1: +2.60 ±" in text and p_text(d["p_value"]) in text
    assert "(small, 5 seeds)" in text


def test_answer_adds_a_sentence_per_further_classifier():
    section = _section(Downstream, None)
    # resnet18: T' equals T on four seeds and loses 5 points on the fifth; T+classic is 1 below
    # T on every seed, so T is the better baseline
    t = [0.80, 0.82, 0.81, 0.79, 0.83]
    worse = {"T": t, "T+classic": [a - 0.01 for a in t], "T'": [*t[:4], t[4] - 0.05]}

    def row(name: str) -> DownstreamRow:
        r = _row(name, 1.0, model="resnet18")
        acc = worse[name]
        diffs = {
            b: PairedDifference(**paired_difference(acc, worse[b]), baseline=b)
            for b in ("T", "T+classic")
            if b != name
        }
        return DownstreamRow(
            **{
                **r.__dict__,
                "accuracy_mean": float(np.mean(acc)),
                "accuracy_std": float(np.std(acc, ddof=1)),
                "accuracy_values": acc,
                "paired_vs_t": diffs.get("T"),
                "paired_vs_classic": diffs.get("T+classic"),
            }
        )

    section.rows = [*section.rows, *(row(n) for n in worse)]
    first = answer(dataclasses_replace(section, rows=section.rows[:-3]))
    text = answer(section)
    d = paired_difference(worse["T'"], worse["T"])
    assert text.startswith(first)  # the first classifier's sentence is unchanged
    assert text[len(first) :] == (
        f" With resnet18 (5 seeds), T′ at fraction 1 was {100 * d['mean']:+.2f} ± "
        f"{100 * d['std']:.2f} points over T (95 % CI {100 * d['ci_low']:+.2f} to "
        f"{100 * d['ci_high']:+.2f}, {p_text(d['p_value'])}); these seeds could have detected "
        f"{100 * d['mde']:.2f} points."
    )
    assert "-1.00 ± 2.24 points over T" in text


def test_label_check_gives_the_gap_per_direction():
    (sentence,) = label_check(_section(Downstream, None))  # only fraction 0.1 trained it
    assert "fraction 0.1, 5 seeds; T, as many real images: 81.00 ± 1.58 %" in sentence
    assert "generated images alone (X′1 as KL-2, X′2 as KL-0): 70.40 ± 1.14 %" in sentence
    assert "gap +10.60 points" in sentence
    assert (
        "X′1 in place of the real KL-2 images: 79.00 ± 1.00 % (real − generated gap +2.00"
        in sentence
    )
    assert (
        "X′2 in place of the real KL-0 images: 61.00 ± 1.58 % (real − generated gap +20.00"
        in sentence
    )
    # the interval of the gap is the paired difference's, negated
    d = paired_difference(ACC["X'2+T2"], ACC["T"])
    assert f"95 % CI {-100 * d['ci_high']:+.2f} to {-100 * d['ci_low']:+.2f}" in sentence


def test_console_table_leads_with_the_answer_and_label_check():
    section = _section(Downstream, None)
    text = format_downstream(jsonable(section.to_dict()))
    lines = text.splitlines()
    assert lines[0] == section.answer and lines[1].startswith("Label check (small, fraction 0.1")
    t_prime = next(line for line in lines if line.startswith("T'  "))
    assert "84.60 ±" in t_prime and "77.00 ±  3.10" in t_prime and "66.00 ±  4.20" in t_prime


def test_report_section_iid(tmp_path):
    html = _html(tmp_path, _section(Downstream, None))
    text = re.sub(r"<[^>]+>", " ", html)
    assert text.index("In the i.i.d. regime") < text.index("Label check") < text.index("Model")
    for head in ("Precision (%)", "Recall (%)", "Validation accuracy (%)", "[95 % CI]"):
        assert head in html
    assert "77.00 ± 3.10" in html and "66.00 ± 4.20" in html  # precision and recall ± std
    d = paired_difference(ACC["T'"], ACC["T+classic"])
    cell = f"+2.60 [{100 * d['ci_low']:+.2f}, {100 * d['ci_high']:+.2f}]"
    assert cell in html and f"{p_text(d['p_value'])}, mde {100 * d['mde']:.2f}" in html
    assert "0:20:34 on one core" in html  # the study's time
    assert "X′1 kept its recipient's site" not in html  # no site check in the i.i.d. regime


def test_report_section_shortcut(tmp_path):
    section = _section(DownstreamShortcut, 0.85)
    html = _html(tmp_path, section)
    assert "In the shortcut regime (site bias 0.85)" in html
    # the shortcut's cost: T's validation accuracy (shares the shortcut) beside its test accuracy
    assert "T scored 90.0 % on the validation set, which shares the shortcut, and 81.0 %" in html
    assert "X′1 kept its recipient's site" in html and "15.0 %" in html


def test_figure_intervals_are_the_t_interval_of_the_mean(tmp_path):
    run = RunData(tmp_path, metrics={"downstream": jsonable(_section(Downstream, None).to_dict())})
    curves = fraction_curves(downstream_rows(run))
    fractions, means, half = curves["small"]["T"]
    assert fractions == [0.1, 1.0]
    assert means == pytest.approx([0.81, 0.86])
    d = paired_difference(ACC["T"], [0.0] * 5)  # the same interval as the mean of T itself
    assert half[0] == pytest.approx(d["ci_high"] - 0.81)


def test_p_values_in_words():
    assert p_text(0.0412) == "p = 0.041" and p_text(0.0004) == "p < 0.001"
    assert p_text(float("nan")) == "p = —"


def test_no_study_no_section(tmp_path):
    assert downstream_html(RunData(tmp_path), Downstream, lambda *a: "") == ""


def test_mde_wording_follows_each_classifiers_seeds(tmp_path):
    section = _section(Downstream, None)
    assert seed_words(section) == "these 5 seeds"
    three = [
        DownstreamRow(**{**_row(n, 1.0).__dict__, "model": "resnet18", "n_seeds": 3})
        for n in ("T", "T'")
    ]
    section.rows = [*section.rows, *three]
    assert seed_words(section) == "each classifier's seeds (small 5, resnet18 3)"
    text = format_downstream(jsonable(section.to_dict()))
    assert "mde: the smallest true difference each classifier's seeds (small 5, resnet18 3)" in text
    run = RunData(tmp_path, metrics={section.NAME: jsonable(section.to_dict())})
    html = downstream_html(run, Downstream, lambda fn, alt, caption: "")
    assert "each classifier&#x27;s seeds (small 5, resnet18 3)" in html or (
        "each classifier's seeds (small 5, resnet18 3)" in html
    )
