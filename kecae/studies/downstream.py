"""`kecae study downstream`: does KECAE help a classifier? The paper's Table II, plus the
baselines a user would pick instead.

Classifiers are trained from scratch on T (real images only), T+classic (flips, small rotations,
intensity) and T' = T ∪ X', with fixed validation/test splits and repeated seeds; the section
``downstream`` of ``RUN/metrics.json`` holds mean ± std per cell and the paired per-seed
difference against T. Sub-runs live under ``RUN/studies/downstream/<arch>/<set>/seed_<s>/``.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from kecae.config import Range, setting
from kecae.errors import KecaeError
from kecae.registry import CLASSIFIERS
from kecae.results import Downstream, DownstreamRow, PairedDifference
from kecae.runfolder import RunLayout, jsonable, write_section
from kecae.studies.subruns import (
    ClassifierStudyConfig,
    Progress,
    check_archs,
    classifier_config,
    data_options,
    first_pairs_manifest,
    generated_pairs,
    mean_and_std,
    percent_pm,
    resolve_data,
    resolve_image_size,
    split_metric,
    train_or_reuse,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSet:
    """One training set of Table II."""

    folder: str  # its sub-folder under RUN/studies/downstream/<arch>/
    classic: bool  # classic augmentation
    generated: bool  # adds the generated pairs X'


#: The training sets, in table order.
TRAINING_SETS: dict[str, TrainingSet] = {
    "T": TrainingSet("T", False, False),
    "T+classic": TrainingSet("T_classic", True, False),
    "T'": TrainingSet("T_prime", False, True),
}


@dataclass
class DownstreamConfig(ClassifierStudyConfig):
    """Table II: classifiers on T, T+classic and T' (T ∪ generated X')."""

    #: --pairs 0 means every generated pair (see kecae.config.check_values)
    value_ranges: ClassVar[dict[str, Range]] = {
        "pairs": (0, math.inf, True, "a whole number >= 0 (0: every generated pair)")
    }

    archs: list[str] = setting(
        factory=lambda: ["resnet18", "vgg11"], flag="--arch", choices=CLASSIFIERS
    )  # classifiers to train
    training_sets: list[str] = setting(
        factory=lambda: list(TRAINING_SETS), flag="--sets", choices=TRAINING_SETS
    )  # training sets
    generated: str | None = setting(
        None, metavar="DIR"
    )  # generated folder X'; default RUN/generated
    pairs: int = 0  # generated pairs added for T' (0: every pair in the folder)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_archs(self.archs)
        bad = [s for s in self.training_sets if s not in TRAINING_SETS]
        if not self.training_sets or bad:
            raise ValueError(
                f"unknown or missing training set(s) {bad or self.training_sets}: "
                f"choose from {list(TRAINING_SETS)}"
            )
        if self.pairs < 0:
            raise ValueError(f"pairs must be >= 0 (0 = all generated pairs), got {self.pairs}")


def run_downstream(cfg: DownstreamConfig) -> dict[str, Any]:
    """Train every (arch, training set, seed) classifier; write and return ``downstream``.

    Rows: accuracy / precision / recall / AUC as mean ± sample std over seeds on the fixed test
    split. ``gain`` is the difference of means against T; ``paired_difference`` the per-seed
    differences (same seed -> same initial weights), their mean ± std and a paired t-test p-value.
    """
    run = Path(cfg.run).resolve()
    layout = RunLayout(run)
    generated = Path(cfg.generated).resolve() if cfg.generated else layout.generated.folder
    data = resolve_data(cfg.data, run)
    options = data_options(run, cfg.data, cfg.patient_regex)
    size = resolve_image_size(cfg.image_size, run, generated)

    # T': the generated pairs to add (all of them, or the first --pairs)
    augment_dirs: list[str] = []
    available = used = 0
    if "T'" in cfg.training_sets:
        if not generated.is_dir():
            raise KecaeError(
                f"generated folder {generated} does not exist: run `kecae generate "
                f"--out {generated} ...` first, or pass --generated DIR"
            )
        available = generated_pairs(generated)
        used = min(cfg.pairs, available) if cfg.pairs else available
        if cfg.pairs > available:
            log.warning(
                "%s holds %d pairs, fewer than the %d asked: using %d",
                generated,
                available,
                cfg.pairs,
                available,
            )
        subset = layout.studies.downstream_subset(used)
        augment_dirs = [
            str(generated)
            if used == available
            else str(first_pairs_manifest(generated, used, subset))
        ]

    # every sub-run
    per_cell: dict[tuple[str, str], list[dict[str, Any]]] = {}
    progress = Progress("downstream", len(cfg.archs) * len(cfg.training_sets) * cfg.seeds)
    for arch in cfg.archs:
        for name in cfg.training_sets:
            training_set = TRAINING_SETS[name]
            for seed in cfg.seed_list:
                out = layout.studies.downstream(arch, training_set.folder, seed)
                result = train_or_reuse(
                    classifier_config(
                        cfg,
                        data=data,
                        size=size,
                        arch=arch,
                        out=out,
                        seed=seed,
                        augment="classic" if training_set.classic else "none",
                        augment_dirs=augment_dirs if training_set.generated else None,
                        options=options,
                    )
                )
                per_cell.setdefault((arch, name), []).append(result)
                progress.step(
                    f"{arch} {name} seed {seed}: test accuracy "
                    f"{split_metric(result, 'accuracy'):.4f}"
                )

    # summary rows, gains, paired differences
    rows: list[DownstreamRow] = []
    gain: dict[str, dict[str, float]] = {}
    paired: dict[str, dict[str, PairedDifference]] = {}
    for arch in cfg.archs:
        cells = {
            name: _row(arch, name, per_cell[(arch, name)], cfg.seed_list)
            for name in cfg.training_sets
        }
        rows += cells.values()
        if "T" in cfg.training_sets:
            base_acc = [split_metric(m, "accuracy") for m in per_cell[(arch, "T")]]
            gain[arch], paired[arch] = {}, {}
            for name in cfg.training_sets:
                if name == "T":
                    continue
                gain[arch][name] = cells[name].accuracy_mean - cells["T"].accuracy_mean
                acc = [split_metric(m, "accuracy") for m in per_cell[(arch, name)]]
                paired[arch][name] = PairedDifference(**paired_difference(acc, base_acc))
    first = next(iter(per_cell.values()))[0]
    test_n = int(first["n_test"])
    note = (
        f"{cfg.seeds} seed(s) per cell, each trained from scratch with the same epochs "
        f"({cfg.epochs}, patience {cfg.patience}) and batch ({cfg.batch_size}); fixed "
        f"validation (n = {first['n_val']}) and test (n = {test_n}) splits; mean ± sample std "
        f"over seeds. A seed gives the same initial weights for every training set (the "
        f"batch order follows the seed but differs when the set differs). One test image is "
        f"{100 / test_n:.2f} pp of accuracy: judge a gain by its paired per-seed difference, "
        "not by the difference of means alone."
    )
    if "T'" in cfg.training_sets:
        note += f" T' adds {used} generated pairs ({2 * used} images) from {generated}."
        if cfg.pairs > available:
            note += f" {cfg.pairs} pairs were asked but the folder holds only {available}."
    section = Downstream(
        rows=rows,
        gain=gain,
        paired_difference=paired,
        test_n=test_n,
        val_n=int(first["n_val"]),
        epochs=cfg.epochs,
        patience=cfg.patience,
        batch_size=cfg.batch_size,
        seeds=cfg.seed_list,
        image_size=size,
        data=data,
        generated=str(generated) if augment_dirs else None,
        generated_pairs_used=used,
        generated_pairs_available=available,
        generated_pairs_asked=cfg.pairs or available,
        note=note,
    )
    write_section(run, Downstream.NAME, section.to_dict())
    return jsonable(section.to_dict())


def _row(arch: str, name: str, results: list[dict[str, Any]], seeds: list[int]) -> DownstreamRow:
    """One cell of Table II from its seeds' classifier runs."""
    stats = {
        key: mean_and_std([split_metric(m, key) for m in results])
        for key in ("accuracy", "precision", "recall", "auc")
    }
    return DownstreamRow(
        model=arch,
        training_set=name,
        accuracy_mean=stats["accuracy"][0],
        accuracy_std=stats["accuracy"][1],
        precision_mean=stats["precision"][0],
        precision_std=stats["precision"][1],
        recall_mean=stats["recall"][0],
        recall_std=stats["recall"][1],
        auc_mean=stats["auc"][0],
        auc_std=stats["auc"][1],
        n_seeds=len(results),
        n_train_real=int(results[0]["n_train_real"]),
        n_train_generated=int(results[0]["n_train_generated"]),
        accuracy_values=[split_metric(m, "accuracy") for m in results],
        seeds=seeds,
    )


def paired_difference(values: list[float], baseline: list[float]) -> dict[str, Any]:
    """Per-seed differences ``values[i] - baseline[i]``: mean, sample std, n, values, and the
    two-sided paired t-test p-value (scipy; null when n < 2 or every difference is equal)."""
    from scipy import stats

    a, b = np.asarray(values, float), np.asarray(baseline, float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(
            f"values and baseline must be equal-length 1-D lists (one entry per "
            f"seed), got shapes {a.shape} and {b.shape}"
        )
    d = a - b
    p = math.nan
    if len(d) > 1 and np.ptp(d) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_rel(a, b).pvalue)
    return {
        "mean": float(d.mean()),
        "std": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
        "n": len(d),
        "values": [float(x) for x in d],
        "p_value": p,
    }


def format_downstream(section: dict[str, Any]) -> str:
    """Table II as text: one row per (model, training set), percentages."""
    table = Downstream.from_dict(section)
    lines = [
        f"{'model':<12}{'set':<11}{'accuracy %':>16}{'precision %':>17}{'recall %':>17}"
        f"{'Δacc paired (pp)':>22}{'seeds':>7}"
    ]
    for r in table.rows:
        diff = table.paired_difference.get(r.model, {}).get(r.training_set)
        text = f"{100 * diff.mean:+.2f} ± {100 * diff.std:.2f}" if diff else ""
        lines.append(
            f"{r.model:<12}{r.training_set:<11}"
            f"{percent_pm(r.accuracy_mean, r.accuracy_std):>16}"
            f"{percent_pm(r.precision_mean, r.precision_std):>17}"
            f"{percent_pm(r.recall_mean, r.recall_std):>17}{text:>22}{r.n_seeds:>7}"
        )
    lines.append(f"test n = {table.test_n}; {table.note}")
    return "\n".join(lines)
