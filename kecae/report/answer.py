"""The downstream study's answer: one sentence per regime, and Table II as console text (the
report and ``kecae study downstream`` both say it).

The sentence compares the rows with generated images (T', T'+classic) with the better of the two
things a user does today (T, T+classic), at the fraction where they came closest to a gain, with
the paired difference, its interval and p-value; without a significant gain it says what the
seeds could have detected. In the shortcut regime it adds T's validation and test accuracy: the
validation set shares the training set's shortcut, the test set does not.
"""

from __future__ import annotations

import math
from typing import Any

from kecae.results import Downstream, DownstreamFraction, DownstreamRow, PairedDifference

#: The rows that carry generated images into a classifier trained on real ones.
WITH_GENERATED = ("T'", "T'+classic")
#: A gain counts when both paired tests give p below this.
LEVEL = 0.05
#: The label check's rows (train on generated, test on real) and what each one's images are.
LABEL_CHECK = {
    "X'": "generated images alone (X′1 as KL-2, X′2 as KL-0)",
    "X'1+T0": "X′1 in place of the real KL-2 images",
    "X'2+T2": "X′2 in place of the real KL-0 images",
}


def _pp(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{100 * x:+.2f}"


def _p(diff: PairedDifference | None) -> float:
    v = None if diff is None else diff.p_value
    return math.nan if v is None else float(v)


def p_text(p: float) -> str:
    """A p-value in words: 'p = 0.041', 'p < 0.001', 'p = —' (undefined)."""
    if not math.isfinite(p):
        return "p = —"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def regime_words(table: Downstream) -> str:
    if table.site_bias is None:
        return "In the i.i.d. regime"
    return f"In the shortcut regime (site bias {table.site_bias:g})"


def _diff_words(diff: PairedDifference, against: str) -> str:
    return (
        f"{_pp(diff.mean)} ± {100 * (diff.std or 0):.2f} points over {against} (95 % CI "
        f"{_pp(diff.ci_low)} to {_pp(diff.ci_high)}, {p_text(_p(diff))})"
    )


Closest = tuple[DownstreamRow, PairedDifference, str]


def _closest(rows: list[DownstreamRow], model: str) -> Closest | None:
    """``model``'s row with generated images that came closest to beating the better of T and
    T+classic at its fraction: the row, its paired difference against that one, its name."""
    by = {(r.model, r.train_fraction, r.training_set): r for r in rows}
    best: tuple[float, DownstreamRow, PairedDifference, str] | None = None
    for r in rows:
        if r.model != model or r.training_set not in WITH_GENERATED:
            continue
        t, c = (
            by.get((model, r.train_fraction, "T")),
            by.get((model, r.train_fraction, "T+classic")),
        )
        if t is None or c is None or r.paired_vs_t is None or r.paired_vs_classic is None:
            continue
        diff, name = (
            (r.paired_vs_classic, "T + classic")
            if c.accuracy_mean >= t.accuracy_mean
            else (r.paired_vs_t, "T")
        )
        if best is None or diff.mean > best[0]:
            best = (diff.mean, r, diff, name)
    return None if best is None else best[1:]


def _wins(row: DownstreamRow) -> bool:
    return all(
        d is not None and d.mean > 0 and _p(d) < LEVEL
        for d in (row.paired_vs_t, row.paired_vs_classic)
    )


def answer(table: Downstream) -> str:
    """The study's answer in one sentence for the first classifier (a second in the shortcut
    regime: T's validation and test accuracy), and one more for each other classifier."""
    rows = table.rows or []
    if not rows:
        return ""
    model, n = rows[0].model, rows[0].n_seeds
    head = regime_words(table)
    best = _closest(rows, model)
    if best is None:
        return f"{head}, no row with generated images was compared with T and T + classic."
    row, diff, against = best
    seeds = f"{model}, {n} seeds"
    name = row.training_set.replace("'", "′")
    if _wins(row):
        text = (
            f"{head}, {name} beat both T and T + classic at training fraction "
            f"{row.train_fraction:g}: {_diff_words(diff, against)} ({seeds})."
        )
    else:
        text = (
            f"{head}, KECAE did not beat the better of T and T + classic at any training "
            f"fraction ({seeds}): the closest, {name} at fraction {row.train_fraction:g}, was "
            f"{_diff_words(diff, against)}; these seeds could have detected "
            f"{100 * (diff.mde or math.nan):.2f} points."
        )
    if table.site_bias is not None:
        t = next(
            (
                r
                for r in rows
                if (r.model, r.train_fraction, r.training_set) == (model, row.train_fraction, "T")
            ),
            None,
        )
        if t is not None and t.val_accuracy_mean is not None:
            text += (
                f" T scored {100 * t.val_accuracy_mean:.1f} % on the validation set, which "
                f"shares the shortcut, and {100 * t.accuracy_mean:.1f} % on the unconfounded "
                "test set."
            )
    for other in dict.fromkeys(r.model for r in rows if r.model != model):
        text += _other_model(rows, other)
    return text


def _other_model(rows: list[DownstreamRow], model: str) -> str:
    """The answer's sentence for a further classifier ('' when it has no compared rows)."""
    best = _closest(rows, model)
    if best is None:
        return ""
    row, diff, against = best
    n = next(r.n_seeds for r in rows if r.model == model)
    name = row.training_set.replace("'", "′")
    verdict = (
        "it beat both T and T + classic"
        if _wins(row)
        else f"these seeds could have detected {100 * (diff.mde or math.nan):.2f} points"
    )
    return (
        f" With {model} ({n} seeds), {name} at fraction {row.train_fraction:g} was "
        f"{_diff_words(diff, against)}; {verdict}."
    )


def label_check(table: Downstream) -> list[str]:
    """The classification accuracy score per direction, one sentence per (model, fraction) that
    trained the label check: each row's test accuracy beside T's (as many real images, the same
    seeds) and the real-vs-generated gap, the paired difference with its interval and p."""
    rows = table.rows or []
    by = {(r.model, r.train_fraction, r.training_set): r for r in rows}
    out = []
    for model, fraction in dict.fromkeys((r.model, r.train_fraction) for r in rows):
        t = by.get((model, fraction, "T"))
        checks = [by.get((model, fraction, n)) for n in LABEL_CHECK]
        if t is None or not any(c is not None and c.paired_vs_t is not None for c in checks):
            continue
        parts = []
        for name, what in LABEL_CHECK.items():
            c = by.get((model, fraction, name))
            if c is None or c.paired_vs_t is None:
                continue
            d = c.paired_vs_t
            parts.append(
                f"{what}: {_pct(c.accuracy_mean, c.accuracy_std)} % "
                f"(real − generated gap {_pp(-d.mean)} points, 95 % CI "
                f"{_pp(-_num(d.ci_high))} to {_pp(-_num(d.ci_low))}, {p_text(_p(d))})"
            )
        out.append(
            f"Label check ({model}, fraction {fraction:g}, {t.n_seeds} seeds; T, as many real "
            f"images: {_pct(t.accuracy_mean, t.accuracy_std)} %): " + "; ".join(parts) + "."
        )
    return out


# ---------------------------------------------------------------------------------------------
# The console table
# ---------------------------------------------------------------------------------------------


def _num(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _pct(mean: float | None, std: float | None) -> str:
    return _pm(mean, std).replace("  ", " ").strip()


def _pm(mean: Any, std: Any) -> str:
    if mean is None or not math.isfinite(mean):
        return "—"
    return f"{100 * mean:6.2f} ± {100 * (std or 0):5.2f}"


def _diff_text(diff: PairedDifference | None, mde: bool = False) -> str:
    if diff is None or diff.mean is None:
        return ""
    p = _p(diff)
    text = f"{_pp(diff.mean)} [{_pp(diff.ci_low)}, {_pp(diff.ci_high)}]"
    text += "" if math.isnan(p) else " " + p_text(p).replace(" = ", "=").replace(" < ", "<")
    if mde and diff.mde is not None and math.isfinite(diff.mde):
        text += f" mde={100 * diff.mde:.2f}"
    return text


def _fraction_text(fr: DownstreamFraction, model: str | None = None) -> list[str]:
    lines = [
        f"training fraction {fr.train_fraction:g}: {fr.n_train_real} real training images "
        f"({fr.n_kl0} KL-0, {fr.n_kl2} KL-2) of {fr.n_patients} patients; {fr.steps} steps "
        "per row"
    ]
    if fr.generated_pairs:
        who = "the run's KECAE" if fr.kecae_reused else "a KECAE trained on this subsample"
        lines.append(f"  {2 * fr.generated_pairs} generated images from {who}")
    if fr.supervisor_confirms is not None:
        lines.append(
            f"  the supervisor confirms {100 * fr.supervisor_confirms:.1f} % of "
            f"{fr.supervisor_confirms_n} generated images"
        )
    for b in fr.budget_checks or []:
        if model is not None and b.model != model:
            continue
        lines.append(
            f"  {b.model} T at twice the budget ({b.steps} steps, seed {b.seed}): validation "
            f"{100 * b.val_accuracy:.2f} % (at the budget {100 * b.budget_val_accuracy:.2f} %), "
            f"test {100 * b.test_accuracy:.2f} % ({100 * b.budget_test_accuracy:.2f} %)"
        )
    s = fr.site_check
    if s is not None:
        lines.append(
            f"  site kept by X'1 {100 * s.x1_site_kept.value:.1f} %, X'2 "
            f"{100 * s.x2_site_kept.value:.1f} %; marked: real KL-2 "
            f"{100 * s.real_kl2_marked.value:.1f} %, X'1 (KL-2) {100 * s.x1_marked.value:.1f} %, "
            f"real KL-0 {100 * s.real_kl0_marked.value:.1f} %, X'2 (KL-0) "
            f"{100 * s.x2_marked.value:.1f} %"
        )
    return lines


def format_downstream(section: dict[str, Any], kind: type[Downstream] = Downstream) -> str:
    """Table II as text: the answer, then one block per (model, fraction), one row per
    training set, with the paired differences against T and T+classic (pp, [95 % CI], p,
    minimal detectable effect)."""
    table = kind.from_dict(section)
    fractions = {fr.train_fraction: fr for fr in table.fractions or []}
    lines = [table.answer or "", *label_check(table)]
    head = (
        f"{'set':<13}{'test acc %':>16}{'val acc %':>16}  {'Δ vs T (pp)':<32}"
        f"{'Δ vs T+classic (pp)':<42}{'recall %':>16}{'precision %':>16}"
    )
    block = None
    for r in table.rows:
        if (r.model, r.train_fraction) != block:
            block = (r.model, r.train_fraction)
            fr = fractions.get(r.train_fraction)
            text = "\n".join(_fraction_text(fr, r.model)) if fr else ""
            lines += ["", f"{r.model}, {text}", head]
        lines.append(
            f"{r.training_set:<13}{_pm(r.accuracy_mean, r.accuracy_std):>16}"
            f"{_pm(r.val_accuracy_mean, r.val_accuracy_std):>16}"
            f"  {_diff_text(r.paired_vs_t):<32}{_diff_text(r.paired_vs_classic, True):<42}"
            f"{_pm(r.recall_mean, r.recall_std):>16}{_pm(r.precision_mean, r.precision_std):>16}"
        )
    lines += [
        "",
        f"test n = {table.test_n}; Δ: paired per-seed difference, mean [95 % CI]; p: "
        f"{table.test}; mde: the smallest true difference {seed_words(table)} find with 80 % "
        "power"
        + (f"; the study's sub-runs took {table.seconds / 60:.1f} min" if table.seconds else ""),
    ]
    warning = generator_warning(table)
    if warning:
        lines.append(warning)
    return "\n".join(lines).strip("\n")


def seed_words(table: Downstream) -> str:
    """'these 5 seeds', or per classifier when their rows have different numbers of seeds
    (a study written from the seeds each classifier finished)."""
    per = {r.model: r.n_seeds for r in table.rows or []}
    if len(set(per.values())) <= 1:
        return f"these {next(iter(per.values()), len(table.seeds or []))} seeds"
    return "each classifier's seeds (" + ", ".join(f"{m} {n}" for m, n in per.items()) + ")"


def generator_warning(table: Downstream) -> str:
    """The note that the generated images come from a KECAE whose own evaluation misses its
    targets ('' when it meets them, no generated row was trained, or no evaluation applies)."""
    missed = table.generator_targets_missed
    if not any((fr.generated_pairs or 0) > 0 for fr in table.fractions or []):
        return ""
    if table.site_bias is not None:
        return ""  # the shortcut regime's generators have no evaluation of their own
    if missed is None:
        return (
            "Note: the run's KECAE has no evaluation (metrics.json has no targets): run "
            "`kecae evaluate` to know whether its images carry the donor's key features."
        )
    if not missed:
        return ""
    return (
        f"Note: the generated images come from KECAE trained with the run's recipe, whose own "
        f"evaluation misses {len(missed)} of {table.generator_targets_total} targets "
        f"({'; '.join(missed)}); the fractions' generators train on less data. T' tests "
        "these images, not a working key exchange."
    )
