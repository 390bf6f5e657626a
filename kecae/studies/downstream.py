"""`kecae study downstream`: does KECAE help a classifier, and against what users do today? The
paper's Table II at several sizes of the real training set, with the baselines a user would
pick instead.

For each training fraction (``--train-fraction 0.1 0.25 1.0``) the real training split is cut to
that share of its patients (stratified by grade, seeded, the same subsample for every row of the
fraction; validation and test stay whole and fixed). From that subsample alone the study trains
the supervisor and KECAE with the run's own recipe (its ``kecae/config.yaml``: preset, model,
loss, lr, steps) and generates ``gen_ratio`` generated images per real training image; at
fraction 1.0 the run's own supervisor, KECAE and generated images are used when their settings
match. Then every classifier of ``--arch`` is trained from scratch, ``--seeds`` times, on

- T (the real images of the fraction), T+classic (flips, small rotations, intensity),
- T' (T plus the generated images), T'+classic,
- T+mixup and T+cutmix (the mixing augmentations users reach for),

and compared per seed with T and with T+classic (two-sided paired t-test). The section
``downstream`` of ``RUN/metrics.json`` holds the table; sub-runs live under
``RUN/studies/downstream/fraction_<f>/`` (a rerun reuses finished ones).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from kecae import CLASS_GRADES
from kecae.config import Range, load_yaml, setting
from kecae.errors import KecaeError
from kecae.files import file_sha256
from kecae.registry import CLASSIFIERS
from kecae.results import (
    PAIRED_TEST,
    Downstream,
    DownstreamFraction,
    DownstreamRow,
    PairedDifference,
    read_targets,
)
from kecae.runfolder import (
    DownstreamFraction as FractionFolder,
)
from kecae.runfolder import (
    RunLayout,
    differences,
    jsonable,
    read_metrics,
    write_section,
)
from kecae.studies.subruns import (
    ClassifierStudyConfig,
    Progress,
    at_budget,
    check_archs,
    classifier_config,
    data_options,
    first_pairs_manifest,
    generated_pairs,
    kecae_run_config,
    mean_and_std,
    percent_pm,
    resolve_data,
    resolve_image_size,
    reusable_generation,
    split_metric,
    train_kecae_or_reuse,
    train_or_reuse,
)
from kecae.training.config import KECAE_MAY_CHANGE, ClassifierTrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSet:
    """One training set of Table II."""

    folder: str  # its sub-folder under fraction_<f>/<arch>/
    augment: str  # the classifier's batch augmentation (kecae.registry.AUGMENTATIONS)
    generated: bool  # adds the generated images X'
    description: str


#: The training sets, in table order.
TRAINING_SETS: dict[str, TrainingSet] = {
    "T": TrainingSet("T", "none", False, "the real training images of the fraction"),
    "T+classic": TrainingSet("T_classic", "classic", False, "T, flips, rotations, intensity"),
    "T'": TrainingSet("T_prime", "none", True, "T plus the generated images"),
    "T'+classic": TrainingSet("T_prime_classic", "classic", True, "T' with classic"),
    "T+mixup": TrainingSet("T_mixup", "mixup", False, "T with mixup"),
    "T+cutmix": TrainingSet("T_cutmix", "cutmix", False, "T with CutMix"),
}

#: The rows every other row is compared with, per seed.
BASELINES = ("T", "T+classic")


@dataclass
class DownstreamConfig(ClassifierStudyConfig):
    """Table II at each training fraction: T, T+classic, T', T'+classic, T+mixup, T+cutmix."""

    value_ranges: ClassVar[dict[str, Range]] = {
        "train_fractions": (0, 1, False, "a fraction of the training patients in (0, 1]"),
        "gen_ratio": (0, math.inf, False, "a number > 0 (1.0: as many generated as real)"),
        "subsample_seed": (0, 2**63 - 1, True, "a whole number >= 0"),
    }

    archs: list[str] = setting(
        factory=lambda: ["resnet18", "vgg11"], flag="--arch", choices=CLASSIFIERS
    )  # classifiers to train
    training_sets: list[str] = setting(
        factory=lambda: ["T", "T+classic", "T'", "T'+classic", "T+mixup"],
        flag="--sets",
        choices=TRAINING_SETS,
    )  # training sets (also T+cutmix)
    train_fractions: list[float] = setting(
        factory=lambda: [1.0], flag="--train-fraction"
    )  # shares of the real training patients, e.g. 0.1 0.25 1.0
    gen_ratio: float = 1.0  # generated images per real training image of the fraction
    subsample_seed: int = 0  # seeds which patients a fraction keeps (smaller within larger)
    kecae_steps: int | None = None  # KECAE steps of a fraction's generator; default: the run's
    gen_seed: int = 0  # seeds the generated pairs
    gen_batch_size: int = 64  # pairs per generator forward pass

    def __post_init__(self) -> None:
        super().__post_init__()
        check_archs(self.archs)
        bad = [s for s in self.training_sets if s not in TRAINING_SETS]
        if not self.training_sets or bad:
            raise ValueError(
                f"unknown or missing training set(s) {bad or self.training_sets}: "
                f"choose from {list(TRAINING_SETS)}"
            )
        fractions = self.train_fractions
        if not fractions or any(not 0 < f <= 1 for f in fractions):
            raise ValueError(
                f"--train-fraction takes shares of the training patients in (0, 1], e.g. "
                f"0.1 0.25 1.0; got {fractions}"
            )
        if not self.gen_ratio > 0:
            raise ValueError(f"--gen-ratio must be > 0, got {self.gen_ratio}")

    @property
    def fraction_list(self) -> list[float]:
        """The distinct fractions, smallest first."""
        return sorted(set(self.train_fractions))

    @property
    def needs_generator(self) -> bool:
        return any(TRAINING_SETS[s].generated for s in self.training_sets)


@dataclass
class _Fraction:
    """One training fraction, ready for its classifiers."""

    info: DownstreamFraction
    folder: FractionFolder
    augment_dirs: list[str]  # what T' adds


def run_downstream(cfg: DownstreamConfig) -> dict[str, Any]:
    """Prepare every fraction, train every (arch, fraction, set, seed) classifier; write and
    return ``downstream``.

    Rows: accuracy / precision / recall / AUC as mean ± sample std over seeds on the fixed test
    split, and each row's per-seed differences against T and T+classic with their p-values.
    """
    run = Path(cfg.run).resolve()
    layout = RunLayout(run)
    data = resolve_data(cfg.data, run)
    options = data_options(run, cfg.data, cfg.patient_regex)
    size = resolve_image_size(cfg.image_size, run)

    # each fraction: its subsample, and the generator made from that subsample alone
    fractions = {
        f: _prepare_fraction(cfg, layout, f, data, options, size) for f in cfg.fraction_list
    }

    # every classifier
    per_cell: dict[tuple[str, float, str], list[dict[str, Any]]] = {}
    total = len(cfg.archs) * len(fractions) * len(cfg.training_sets) * cfg.seeds
    progress = Progress("downstream", total)
    for arch in cfg.archs:
        for f, fraction in fractions.items():
            for name in cfg.training_sets:
                training_set = TRAINING_SETS[name]
                for seed in cfg.seed_list:
                    result = train_or_reuse(
                        classifier_config(
                            cfg,
                            data=fraction.info.data,
                            size=size,
                            arch=arch,
                            out=fraction.folder.classifier(arch, training_set.folder, seed),
                            seed=seed,
                            augment=training_set.augment,
                            augment_dirs=fraction.augment_dirs if training_set.generated else None,
                            options=options,
                        )
                    )
                    per_cell.setdefault((arch, f, name), []).append(result)
                    progress.step(
                        f"{arch} fraction {f:g} {name} seed {seed}: test accuracy "
                        f"{split_metric(result, 'accuracy'):.4f}"
                    )

    # the rows, each with its paired differences against the baselines
    rows = []
    for arch in cfg.archs:
        for f in fractions:
            acc = {
                name: [split_metric(m, "accuracy") for m in per_cell[(arch, f, name)]]
                for name in cfg.training_sets
            }
            for name in cfg.training_sets:
                row = _row(arch, f, name, per_cell[(arch, f, name)], cfg.seed_list)
                versus = {
                    base: PairedDifference(**paired_difference(acc[name], acc[base]), baseline=base)
                    for base in BASELINES
                    if base in acc and base != name
                }
                rows.append(
                    dataclasses.replace(
                        row, paired_vs_t=versus.get("T"), paired_vs_classic=versus.get("T+classic")
                    )
                )

    first = next(iter(per_cell.values()))[0]
    missed, checked = _generator_targets(run) if cfg.needs_generator else (None, 0)
    section = Downstream(
        rows=rows,
        fractions=[fraction.info for fraction in fractions.values()],
        test=PAIRED_TEST,
        test_n=int(first["n_test"]),
        val_n=int(first["n_val"]),
        epochs=cfg.epochs,
        patience=cfg.patience,
        batch_size=cfg.batch_size,
        seeds=cfg.seed_list,
        image_size=size,
        data=data,
        gen_ratio=cfg.gen_ratio,
        subsample_seed=cfg.subsample_seed,
        generator_targets_missed=missed,
        generator_targets_total=checked,
        note=_note(cfg, int(first["n_test"]), int(first["n_val"])),
    )
    written = jsonable(section.to_dict())
    write_section(run, Downstream.NAME, written)
    return written


# ---------------------------------------------------------------------------------------------
# A training fraction: subsample, supervisor, KECAE, generated images
# ---------------------------------------------------------------------------------------------


def _prepare_fraction(
    cfg: DownstreamConfig,
    layout: RunLayout,
    fraction: float,
    data: str,
    options: dict[str, Any],
    size: int,
) -> _Fraction:
    """The fraction's data set (a manifest with the training split subsampled; the run's data
    itself at 1.0) and, when a row needs it, the generated images of a KECAE trained on it."""
    from kecae.data.catalog import load_catalog, write_catalog
    from kecae.data.splits import ensure_splits, subsample_train

    folder = layout.studies.downstream(fraction)
    catalog = ensure_splits(load_catalog(data, patient_regex=options.get("patient_regex")))
    if fraction < 1:
        catalog = subsample_train(catalog, fraction, cfg.subsample_seed)
        folder.folder.mkdir(parents=True, exist_ok=True)
        write_catalog(catalog, folder.data_view)
        fdata = str(folder.data_view)
    else:
        fdata = data
    train = catalog.select("train", CLASS_GRADES)
    n_kl0 = sum(r.grade == CLASS_GRADES[0] for r in train)
    n_kl2 = len(train) - n_kl0
    if not (n_kl0 and n_kl2):
        raise KecaeError(
            f"--train-fraction {fraction:g} keeps {n_kl0} KL-0 and {n_kl2} KL-2 training "
            "images: a classifier needs both; pass a larger fraction"
        )
    info = DownstreamFraction(
        train_fraction=fraction,
        data=fdata,
        n_patients=len({r.patient_id for r in train}),
        n_train_real=len(train),
        supervisor=None,
        kecae=None,
        kecae_reused=False,
        kecae_steps=None,
        generated=None,
        generated_pairs=0,
    )
    if not cfg.needs_generator:
        return _Fraction(info, folder, [])

    supervisor = _supervisor(cfg, layout, folder, fraction, fdata, options)
    ckpt, reused, steps = _kecae(cfg, layout, folder, fraction, fdata, supervisor)
    # N pairs give 2N images; never more pairs than the subsample's KL-0 x KL-2 product
    pairs = min(math.ceil(cfg.gen_ratio * len(train) / 2), n_kl0 * n_kl2)
    generated = _generated(cfg, layout, folder, fraction, fdata, ckpt, pairs, options)
    dirs = [
        str(generated)
        if generated_pairs(generated) == pairs
        else str(first_pairs_manifest(generated, pairs, folder.generated_subset(pairs)))
    ]
    info = dataclasses.replace(
        info,
        supervisor=supervisor,
        kecae=str(ckpt),
        kecae_reused=reused,
        kecae_steps=steps,
        generated=str(generated),
        generated_pairs=pairs,
    )
    log.info(
        "[downstream] fraction %g: %d real training images of %d patients; T' adds %d "
        "generated images (%s KECAE)",
        fraction,
        len(train),
        info.n_patients,
        2 * pairs,
        "the run's" if reused else "its own",
    )
    return _Fraction(info, folder, dirs)


def _supervisor(
    cfg: DownstreamConfig,
    layout: RunLayout,
    folder: FractionFolder,
    fraction: float,
    fdata: str,
    options: dict[str, Any],
) -> str:
    """The fraction's supervisor: the run's at 1.0 (trained on all of it), else the run's
    supervisor recipe (its config.yaml) trained on the subsample."""
    own = layout.supervisor
    if fraction == 1 and own.finished:
        return str(own.best)
    if not own.config.is_file():
        raise KecaeError(
            f"{own.config} is missing: the study trains each fraction's supervisor with the "
            f"run's recipe; train the run's supervisor first (`kecae demo --out {layout.root}` "
            "or `kecae train-classifier --out ...`)"
        )
    base = load_yaml(ClassifierTrainConfig, own.config)
    scfg = dataclasses.replace(
        base,
        data=fdata,
        out=str(folder.supervisor.folder),
        augment_dirs=[],
        device=cfg.device,
        cache_dir=cfg.cache_dir,
        progress=cfg.progress,
        resume=True,
        fresh=False,
        **options,
    )
    train_or_reuse(scfg)
    return str(folder.supervisor.best)


def _kecae(
    cfg: DownstreamConfig,
    layout: RunLayout,
    folder: FractionFolder,
    fraction: float,
    fdata: str,
    supervisor: str,
) -> tuple[Path, bool, int]:
    """The KECAE of a fraction: the run's recipe trained on the subsample with its supervisor;
    at 1.0 the run's own KECAE when its settings and steps are those. Returns (checkpoint,
    reused, steps)."""
    from kecae.checkpoint import load_checkpoint

    base = kecae_run_config(layout.root)
    if base is None:
        raise KecaeError(
            f"{layout.kecae.config} is missing: the study trains each fraction's KECAE with "
            f"the run's recipe; train the run's KECAE first (`kecae demo --out {layout.root}`)"
        )
    steps = cfg.kecae_steps or base.max_steps
    if not steps:
        raise KecaeError(
            f"{layout.kecae.config} sets no max_steps: pass --kecae-steps (the budget of each "
            "fraction's KECAE)"
        )
    want = at_budget(
        base,
        steps,
        cfg.device,
        cfg.cache_dir,
        cfg.progress,
        data=fdata,
        supervisor=supervisor,
        out=str(folder.kecae.folder),
    )
    own = layout.kecae.last
    if fraction == 1 and own.is_file():
        same = not differences(
            dataclasses.asdict(base), dataclasses.asdict(want), ignore=KECAE_MAY_CHANGE
        )
        if same and int(load_checkpoint(own, kind="kecae")["step"]) == steps:
            return own, True, steps
    return train_kecae_or_reuse(want), False, steps


def _generated(
    cfg: DownstreamConfig,
    layout: RunLayout,
    folder: FractionFolder,
    fraction: float,
    fdata: str,
    ckpt: Path,
    pairs: int,
    options: dict[str, Any],
) -> Path:
    """A finished generation of at least ``pairs`` pairs by ``ckpt`` from the fraction's
    training split: the fraction's own, or at 1.0 the run's, else a new one."""
    from kecae import generation

    want = {
        "checkpoint_sha256": file_sha256(ckpt),
        "data": fdata,
        "seed": cfg.gen_seed,
        "oversample": False,
    }
    candidates = [folder.generated] + ([layout.generated] if fraction == 1 else [])
    found = next((c for c in candidates if reusable_generation(c, want, pairs)), None)
    if found is not None:
        return found.folder
    log.info("[downstream] fraction %g: generating %d pairs", fraction, pairs)
    generation.generate(
        generation.GenerateConfig(
            checkpoint=str(ckpt),
            data=fdata,
            out=str(folder.generated.folder),
            pairs=pairs,
            seed=cfg.gen_seed,
            batch_size=cfg.gen_batch_size,
            device=cfg.device,
            cache_dir=cfg.cache_dir,
            progress=cfg.progress,
            patient_regex=options.get("patient_regex"),
        )
    )
    return folder.generated.folder


def _generator_targets(run: Path) -> tuple[list[str] | None, int]:
    """The targets the run's own KECAE misses in its evaluation (None: no targets section)."""
    targets = read_targets(read_metrics(run).get("targets"))
    if not targets:
        return None, 0
    return [name for name, t in targets.items() if t.met is False], len(targets)


def _note(cfg: DownstreamConfig, test_n: int, val_n: int) -> str:
    return (
        f"{cfg.seeds} seed(s) per cell, each classifier trained from scratch with the same "
        f"epochs ({cfg.epochs}, patience {cfg.patience}) and batch ({cfg.batch_size}); fixed "
        f"validation (n = {val_n}) and test (n = {test_n}) splits; mean ± sample std over "
        "seeds. A fraction keeps that share of the training patients (stratified by grade, "
        f"subsample seed {cfg.subsample_seed}), the same for every row; its supervisor, KECAE "
        "and generated images come from that subsample alone. A seed gives the same initial "
        "weights for every training set. One test image is "
        f"{100 / test_n:.2f} pp of accuracy: judge a gain by its paired per-seed difference "
        "and its spread, not by the difference of means."
    )


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------


def _row(
    arch: str, fraction: float, name: str, results: list[dict[str, Any]], seeds: list[int]
) -> DownstreamRow:
    """One cell of Table II from its seeds' classifier runs."""
    stats = {
        key: mean_and_std([split_metric(m, key) for m in results])
        for key in ("accuracy", "precision", "recall", "auc")
    }
    return DownstreamRow(
        model=arch,
        train_fraction=fraction,
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
    """Per-seed differences ``values[i] - baseline[i]``: mean, sample std, n, values, the
    two-sided paired t-test p-value (null when n < 2 or every difference is equal), the exact
    two-sided Wilcoxon signed-rank p-value and the smallest p that test can reach with n
    pairs, 2 / 2**n (0.25 for 3 seeds: it cannot show anything at 3 seeds)."""
    from scipy import stats

    a, b = np.asarray(values, float), np.asarray(baseline, float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(
            f"values and baseline must be equal-length 1-D lists (one entry per "
            f"seed), got shapes {a.shape} and {b.shape}"
        )
    d = a - b
    p = wilcoxon = math.nan
    if len(d) > 1 and np.ptp(d) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_rel(a, b).pvalue)
    if len(d) > 1 and np.any(d != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wilcoxon = float(stats.wilcoxon(d, method="exact").pvalue)
    return {
        "mean": float(d.mean()),
        "std": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
        "n": len(d),
        "values": [float(x) for x in d],
        "p_value": p,
        "wilcoxon_p": wilcoxon,
        "wilcoxon_min_p": 2.0 / 2 ** len(d),
    }


# ---------------------------------------------------------------------------------------------
# The console table
# ---------------------------------------------------------------------------------------------


def _diff_text(diff: PairedDifference | None) -> str:
    if diff is None or diff.mean is None:
        return ""
    p = "" if diff.p_value is None or math.isnan(diff.p_value) else f" p={diff.p_value:.2f}"
    return f"{100 * diff.mean:+.2f} ± {100 * (diff.std or 0):.2f}{p}"


def format_downstream(section: dict[str, Any]) -> str:
    """Table II as text: one block per (model, fraction), one row per training set, with the
    paired differences against T and T+classic (pp, mean ± std over seeds, t-test p)."""
    table = Downstream.from_dict(section)
    fractions = {fr.train_fraction: fr for fr in table.fractions or []}
    lines = []
    head = (
        f"{'set':<12}{'accuracy %':>16}{'Δ vs T (pp)':>26}{'Δ vs T+classic (pp)':>26}"
        f"{'recall %':>16}{'seeds':>7}"
    )
    block = None
    for r in table.rows:
        if (r.model, r.train_fraction) != block:
            block = (r.model, r.train_fraction)
            fr = fractions.get(r.train_fraction)
            extra = ""
            if fr is not None and fr.generated_pairs:
                extra = (
                    f"; T' adds {2 * fr.generated_pairs} generated images "
                    f"({'the run' if fr.kecae_reused else 'a'} KECAE trained on this subsample)"
                )
            lines += [
                "",
                f"{r.model}, training fraction {r.train_fraction:g}: {r.n_train_real} real "
                f"training images{extra}",
                head,
            ]
        lines.append(
            f"{r.training_set:<12}{percent_pm(r.accuracy_mean, r.accuracy_std):>16}"
            f"{_diff_text(r.paired_vs_t):>26}{_diff_text(r.paired_vs_classic):>26}"
            f"{percent_pm(r.recall_mean, r.recall_std):>16}{r.n_seeds:>7}"
        )
    n = len(table.seeds or [])
    lines += [
        "",
        f"test n = {table.test_n}; Δ: paired per-seed difference, mean ± std; p: {table.test}"
        + (
            f"; an exact Wilcoxon signed-rank test cannot go below p = {2 / 2**n:.3g} with "
            f"{n} seeds"
            if n
            else ""
        ),
    ]
    warning = generator_warning(table)
    if warning:
        lines.append(warning)
    return "\n".join(lines).lstrip("\n")


def generator_warning(table: Downstream) -> str:
    """The note that the generated images come from a KECAE whose own evaluation misses its
    targets ('' when it meets them or no generated row was trained)."""
    missed = table.generator_targets_missed
    if not any((fr.generated_pairs or 0) > 0 for fr in table.fractions or []):
        return ""
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
