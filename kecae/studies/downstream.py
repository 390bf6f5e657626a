"""`kecae study downstream`: does KECAE help a classifier, and against what users do today? The
paper's Table II at several sizes of the real training set, with the baselines a user would pick
instead, trained so that the study could see a gain.

For each training fraction (``--train-fraction``) the real training split is cut to that share of
its patients; the supervisor, KECAE and the generated images come from that subsample alone
(:mod:`kecae.studies.fractions`). Every row of a fraction trains from scratch for the same number
of optimiser steps (the fraction's budget, long enough for T to converge: the validation curves
and a check at twice the budget show it), with a cosine learning rate and the best validation
checkpoint kept. Generated images are drawn into the same batches at a set share, not appended as
extra epochs. Seed s gives every row the same initial weights, so rows are compared per seed:
the paired difference, its 95 % interval, the p-value and the smallest effect the seeds could
have detected (:mod:`kecae.evaluation.paired`).

Rows (:data:`TRAINING_SETS`): the compared ones (T, T+classic, T+mixup, T+CutMix, T', T'+classic)
at every fraction; at ``--check-fractions`` the label check (train on generated, test on real:
X' alone, and each direction replacing one class of T image for image) and the options (X' the
supervisor confirms, other generated-to-real ratios, pre-training on X' then fine-tuning on T),
by every ``--arch`` classifier or only by the ``--check-arch`` ones.
``--site-bias B`` runs the same study in the shortcut regime. Sub-runs live under
``RUN/studies/downstream/<regime>/fraction_<f>/``; a rerun reuses finished ones, resumes a cut
one, and ``--max-minutes`` stops the study between sub-runs so it runs in pieces.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

from kecae.evaluation.paired import paired_difference
from kecae.files import atomic_write_text
from kecae.metrics_file import jsonable, read_metrics, write_section
from kecae.report.answer import answer, format_downstream, generator_warning
from kecae.results import (
    PAIRED_TEST,
    BudgetCheck,
    Downstream,
    DownstreamShortcut,
    PairedDifference,
    read_targets,
)
from kecae.runfolder import ClassifierRun, RunLayout
from kecae.studies.downstream_config import DownstreamConfig, quick_settings
from kecae.studies.fractions import Fraction, prepare_fraction, regime_of
from kecae.studies.rows import (
    BASELINES,
    TRAINING_SETS,
    row_result,
    validation_curve,
)
from kecae.studies.subruns import (
    Progress,
    classifier_config,
    data_options,
    resolve_data,
    resolve_image_size,
    split_metric,
    train_or_reuse,
)

__all__ = [
    "DownstreamConfig",
    "format_downstream",
    "generator_warning",
    "quick_settings",
    "run_downstream",
]

log = logging.getLogger(__name__)


class Ledger:
    """The time a study's sub-runs took, added up across the runs of the study (a killed one
    loses only its sub-run in progress)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds = json.loads(path.read_text())["seconds"] if path.is_file() else 0.0
        self.t = time.perf_counter()

    def add(self) -> None:
        now = time.perf_counter()
        self.seconds += now - self.t
        self.t = now
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps({"seconds": round(self.seconds, 1)}))


def run_downstream(cfg: DownstreamConfig) -> dict[str, Any] | None:
    """Prepare every fraction, train every (arch, fraction, row, seed) classifier; write and
    return the regime's section (None when ``max_minutes`` stopped the study first)."""
    cfg = quick_settings(cfg) if cfg.quick else cfg
    t0 = time.perf_counter()
    layout = RunLayout(Path(cfg.run).resolve())
    data = resolve_data(cfg.data, layout.root)
    options = data_options(layout.root, cfg.data, cfg.patient_regex)
    size = resolve_image_size(cfg.image_size, layout.root)
    regime = regime_of(cfg.site_bias, layout, data)
    ledger = Ledger(layout.studies.downstream_regime(regime.name) / "seconds.json")

    def late() -> bool:
        return bool(cfg.max_minutes) and time.perf_counter() - t0 > 60 * cfg.max_minutes

    fractions: dict[float, Fraction] = {}
    for f in cfg.fraction_list:
        if late():
            return None
        parts = {p for n in cfg.rows_at(f) if (p := cfg.part(n)) is not None}
        fractions[f] = prepare_fraction(cfg, layout, regime, f, options, parts, size)
        ledger.add()
    jobs = [
        (seed, arch, f, name)
        for seed in cfg.seed_list  # seeds outermost: a study cut short has whole seeds
        for arch in cfg.archs
        for f in cfg.fraction_list
        for name in cfg.rows_at(f, arch)
    ]
    results: dict[tuple[str, float, str], list[dict[str, Any]]] = {}
    progress = Progress(f"downstream {regime.name}", len(jobs))
    unfinished = 0
    for seed, arch, f, name in jobs:
        if late():
            log.info("[downstream] stopped after %.0f min: rerun to continue", cfg.max_minutes)
            _write_whole_seeds(cfg, layout, regime, fractions, results, size, ledger.seconds)
            return None
        row = _row_config(cfg, fractions[f], arch, name, seed, size, options)
        if cfg.finished_only and not ClassifierRun(Path(row.out)).finished:
            unfinished += 1
            continue
        result = train_or_reuse(row)
        results.setdefault((arch, f, name), []).append(result)
        ledger.add()
        progress.step(
            f"{arch} fraction {f:g} {name} seed {seed}: test {split_metric(result, 'accuracy'):.4f}"
        )
    if cfg.budget_check:
        for arch in cfg.archs:
            for fraction in fractions.values():
                if late():
                    return None
                check = _budget_check(cfg, fraction, arch, size, options, results)
                if check is not None:
                    fraction.info.budget_checks = (fraction.info.budget_checks or []) + [check]
                ledger.add()
    if unfinished:
        log.info("[downstream] --finished-only: %d sub-runs not finished, left out", unfinished)
        return _write_whole_seeds(cfg, layout, regime, fractions, results, size, ledger.seconds)
    section = _section(cfg, layout, regime, fractions, results, size, ledger.seconds)
    written = jsonable(section.to_dict())
    write_section(layout.root, section.NAME, written)
    return written


def _write_whole_seeds(
    cfg: DownstreamConfig,
    layout: RunLayout,
    regime: Any,
    fractions: dict[float, Fraction],
    results: dict[tuple[str, float, str], list[dict[str, Any]]],
    size: int,
    seconds: float,
) -> dict[str, Any] | None:
    """A study stopped by ``max_minutes`` (or run with ``finished_only``): the section from the
    first seeds every row of a classifier has finished (at least 2, for the paired statistics;
    a classifier with fewer is left out), saying so in its note; the study without
    ``finished_only`` continues and replaces it. Returns the section written, if any."""
    whole = {a: k for a, k in whole_seeds(cfg, results).items() if k >= 2}
    if not whole:
        return None
    kept = {
        (a, f, n): [m for m in results[(a, f, n)] if int(m["seed"]) in cfg.seed_list[:k]]
        for a, k in whole.items()
        for f in cfg.fraction_list
        for n in cfg.rows_at(f, a)
    }
    part = dataclasses.replace(cfg, seeds=max(whole.values()), budget_check=False)
    section = _section(part, layout, regime, fractions, kept, size, seconds)
    done = ", ".join(f"{a} {k}" for a, k in whole.items())
    why = "--finished-only" if cfg.finished_only else "--max-minutes"
    section.note += (
        f" Written by {why} from the seeds every row of a classifier has finished ({done} of "
        f"{cfg.seeds}); the study without --finished-only continues and replaces this section."
    )
    written = jsonable(section.to_dict())
    write_section(layout.root, section.NAME, written)
    log.info("[downstream] wrote the section from the seeds every row has finished: %s", done)
    return written


def whole_seeds(
    cfg: DownstreamConfig, results: dict[tuple[str, float, str], list[dict[str, Any]]]
) -> dict[str, int]:
    """Per classifier, how many of the study's first seeds every one of its rows has finished."""
    out = {}
    for a in cfg.archs:
        done = [
            {int(m["seed"]) for m in results.get((a, f, n), [])}
            for f in cfg.fraction_list
            for n in cfg.rows_at(f, a)
        ]
        k = 0
        while k < len(cfg.seed_list) and all(cfg.seed_list[k] in d for d in done):
            k += 1
        out[a] = k
    return out


def _row_config(
    cfg: DownstreamConfig,
    fraction: Fraction,
    arch: str,
    name: str,
    seed: int,
    size: int,
    options: dict[str, Any],
    steps: int | None = None,
    folder: str | None = None,
) -> Any:
    """The classifier sub-run of one row, seed and fraction."""
    ts = TRAINING_SETS[name]
    part = cfg.part(name)
    budget = steps or cfg.budget(fraction)
    base = classifier_config(
        cfg,
        data=fraction.info.data,
        size=size,
        arch=arch,
        out=fraction.folder.classifier(arch, folder or ts.folder, seed),
        seed=seed,
        augment=ts.augment,
        augment_dirs=[fraction.subsets[part]] if ts.pool and part else None,
        options=options,
    )
    mix = [fraction.subsets[part]] if ts.mix and part else []
    return dataclasses.replace(
        base,
        real_grades=None if ts.real_grades is None else list(ts.real_grades),
        mix_dirs=mix,
        mix_ratio=0.0 if ts.pretrain or not mix else (ts.ratio or cfg.gen_ratio),
        pretrain_steps=budget // 2 if ts.pretrain else 0,
        max_steps=budget,
        lr_schedule=cfg.lr_schedule,
    )


def _budget_check(
    cfg: DownstreamConfig,
    fraction: Fraction,
    arch: str,
    size: int,
    options: dict[str, Any],
    results: dict[tuple[str, float, str], list[dict[str, Any]]],
) -> BudgetCheck | None:
    """T of the first seed at twice the budget, beside T at the budget (None when T of that
    seed, or with ``finished_only`` the check itself, has not finished)."""
    seed, steps = cfg.seed_list[0], 2 * cfg.budget(fraction)
    f = fraction.info.train_fraction
    at_budget = next((m for m in results.get((arch, f, "T"), []) if m["seed"] == seed), None)
    row = _row_config(cfg, fraction, arch, "T", seed, size, options, steps, "T_twice_the_steps")
    if at_budget is None or (cfg.finished_only and not ClassifierRun(Path(row.out)).finished):
        return None
    twice = train_or_reuse(row)
    return BudgetCheck(
        model=arch,
        seed=seed,
        steps=steps,
        val_accuracy=twice["val"]["accuracy"],
        test_accuracy=split_metric(twice, "accuracy"),
        budget_val_accuracy=at_budget["val"]["accuracy"],
        budget_test_accuracy=split_metric(at_budget, "accuracy"),
    )


# ---------------------------------------------------------------------------------------------
# The section
# ---------------------------------------------------------------------------------------------


def _section(
    cfg: DownstreamConfig,
    layout: RunLayout,
    regime: Any,
    fractions: dict[float, Fraction],
    results: dict[tuple[str, float, str], list[dict[str, Any]]],
    size: int,
    seconds: float,
) -> Downstream:
    """Rows with their paired differences, T's validation curves, and the answer."""
    rows, curves = [], []
    for (arch, f, name), runs in results.items():
        row = row_result(arch, f, name, runs, cfg.seed_list, cfg.budget(fractions[f]))
        acc = {
            n: [split_metric(m, "accuracy") for m in results[(arch, f, n)]]
            for n in BASELINES
            if (arch, f, n) in results
        }
        versus = {
            base: PairedDifference(**paired_difference(row.accuracy_values, values), baseline=base)
            for base, values in acc.items()
            if base != name
        }
        rows.append(
            dataclasses.replace(
                row, paired_vs_t=versus.get("T"), paired_vs_classic=versus.get("T+classic")
            )
        )
        if name == "T":
            curves.append(validation_curve(arch, f, name, runs))
    order = {n: k for k, n in enumerate(TRAINING_SETS)}
    rows.sort(key=lambda r: (cfg.archs.index(r.model), r.train_fraction, order[r.training_set]))
    for fr in fractions.values():
        fr.info.steps = cfg.budget(fr)
    first = next(iter(results.values()))[0]
    missed, checked = _generator_targets(layout.root) if regime.name == "iid" else (None, 0)
    kind = DownstreamShortcut if regime.shortcut else Downstream
    section = kind(
        rows=rows,
        fractions=[fr.info for fr in fractions.values()],
        test=PAIRED_TEST,
        test_n=int(first["n_test"]),
        val_n=int(first["n_val"]),
        batch_size=cfg.batch_size,
        seeds=cfg.seed_list,
        image_size=size,
        data=regime.data,
        gen_ratio=cfg.gen_ratio,
        subsample_seed=cfg.subsample_seed,
        generator_targets_missed=missed,
        generator_targets_total=checked,
        note=_note(cfg, int(first["n_test"]), int(first["n_val"])),
        regime=regime.name,
        site_bias=regime.site_bias,
        curves=curves,
        lr=cfg.lr,
        lr_schedule=cfg.lr_schedule,
        filter_confidence=cfg.filter_confidence,
        seconds=round(seconds, 1),
    )
    section.answer = answer(section)
    return section


def _generator_targets(run: Path) -> tuple[list[str] | None, int]:
    """The targets the run's own KECAE misses in its evaluation (None: no targets section)."""
    targets = read_targets(read_metrics(run).get("targets"))
    if not targets:
        return None, 0
    return [name for name, t in targets.items() if t.met is False], len(targets)


def _note(cfg: DownstreamConfig, test_n: int, val_n: int) -> str:
    return (
        f"{cfg.seeds} seed(s) per cell; every row of a fraction trained from scratch for the "
        f"fraction's step budget (batch {cfg.batch_size}, AdamW lr {cfg.lr:g} with a "
        f"{cfg.lr_schedule} schedule), the checkpoint with the best validation accuracy kept; "
        f"generated images drawn into the same batches ({cfg.gen_ratio:g} per real image in "
        f"T'). Fixed validation (n = {val_n}) and test (n = {test_n}) splits; mean ± sample std "
        "over seeds. A fraction keeps that share of the training patients (stratified by grade, "
        f"subsample seed {cfg.subsample_seed}), the same for every row; its supervisor, KECAE "
        "and generated images come from that subsample alone. A seed gives every row the same "
        f"initial weights. One test image is {100 / test_n:.2f} pp of accuracy: judge a gain by "
        "its paired difference, its interval and the smallest effect the seeds could detect."
    )
