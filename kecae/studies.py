"""Augmentation studies: does KECAE help a classifier?

Three studies over one run folder (the layout of :mod:`kecae.evaluation.evaluate`), each writing
its section of ``DIR/metrics.json`` (other sections are kept) and its sub-runs under
``DIR/studies/<name>/``, so an interrupted study resumes and a finished sub-run is never trained
again:

- :func:`run_downstream` (the paper's Table II, plus the baselines a user would pick instead):
  classifiers trained from scratch on T (real images only), T+classic (flips, small rotations,
  intensity) and T' = T ∪ X', fixed validation/test splits, repeated seeds -> ``downstream``;
- :func:`run_sampling` (Fig. 5): T ∪ X'_N for several numbers N of generated pairs ->
  ``sampling_size``;
- :func:`run_lambda_grid` (Fig. 3): one KECAE per (λ1, λ2), SVM-RBF separability of hK and hN
  of test images -> ``lambda_grid``.

The studies call the trainers and the generator; none of the training logic lives here.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kecae.evaluation.metrics import mean_std, svm_separability
from kecae.generation import GenerateConfig, generate
from kecae.inference import encode, load_kecae
from kecae.runfolder import (ClassifierRun, GeneratedFolder, RunLayout, check_same, differences,
                             load_path, store_path, write_section)
from kecae.runfolder import jsonable as _jsonable
from kecae.training.classifier import train_classifier
from kecae.training.config import ClassifierTrainConfig, KECAETrainConfig, load_yaml
from kecae.training.kecae_trainer import train_kecae
from kecae.utils import KecaeError, atomic_path, atomic_write_text, file_sha256, select_device

log = logging.getLogger(__name__)

#: Training sets of the downstream study -> (sub-folder name, classic augmentation, adds X').
TRAINING_SETS: dict[str, tuple[str, bool, bool]] = {
    "T": ("T", False, False),
    "T+classic": ("T_classic", True, False),
    "T'": ("T_prime", False, True),
}

#: Classifier settings that must match for a finished sub-run to be reused.
_REUSE_FIELDS = ("data", "arch", "model", "image_size", "augment_dirs", "augment", "epochs",
                 "patience", "batch_size", "lr", "weight_decay", "balance", "max_train", "seed")
#: KECAE settings that must match for a λ-grid cell to be resumed (more steps may be added).
_KECAE_REUSE_FIELDS = ("data", "supervisor", "supervisor_mode", "preset", "model", "num_pairs",
                       "oversample", "batch_size", "lr", "lambda_sup", "lambda_lda", "lda_eps",
                       "lda_mode", "seed")


# ---------------------------------------------------------------------------------------------
# Configurations
# ---------------------------------------------------------------------------------------------

@dataclass
class ClassifierStudyConfig:
    """Settings shared by the studies that train classifiers (same for every sub-run)."""

    run: str = ""  # run folder (DIR/kecae, DIR/generated, DIR/metrics.json, ...)
    data: str | None = None  # data set; default: the one recorded in DIR/kecae/config.yaml
    image_size: int | None = None  # classifier input, px; default: the KECAE model's size
    epochs: int = 30  # most epochs per classifier (same for every training set)
    patience: int = 6  # early stopping on validation accuracy
    batch_size: int = 64  # classifier batch
    lr: float = 1e-3  # AdamW learning rate
    seeds: int = 3  # repetitions; seed s gives the same initial weights for every training set
    first_seed: int = 0  # seeds are first_seed, first_seed + 1, ...
    device: str = "auto"  # auto / cpu / cuda
    cache_dir: str | None = None  # preprocessed-image cache
    progress: bool = True  # the trainers' progress bars
    patient_regex: str | None = None  # folder layout: patients from file names; default: the run's

    def __post_init__(self) -> None:
        if not self.run:
            raise ValueError("run is empty: pass the run folder (e.g. runs/demo)")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1 (repetitions per cell), got {self.seeds}")
        for name in ("epochs", "patience", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be a "
                                 "whole number >= 1")
        if self.image_size is not None and self.image_size < 16:
            raise ValueError(f"image_size must be at least 16 px, got {self.image_size}")

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))


def _check_archs(archs: list[str]) -> None:
    from kecae.models.classifiers import CLASSIFIERS

    bad = [a for a in archs if a not in CLASSIFIERS]
    if not archs or bad:
        raise ValueError(f"unknown or missing classifier architecture(s) {bad or archs}: "
                         f"choose from {sorted(CLASSIFIERS)}")


@dataclass
class DownstreamConfig(ClassifierStudyConfig):
    """Table II: classifiers on T, T+classic and T' (T ∪ generated X')."""

    #: --pairs 0 means every generated pair (see kecae.configargs.check_values)
    value_ranges = {"pairs": (0, math.inf, True, "a whole number >= 0 (0: every generated pair)")}

    archs: list[str] = field(default_factory=lambda: ["resnet18", "vgg11"])  # classifier zoo keys
    training_sets: list[str] = field(default_factory=lambda: list(TRAINING_SETS))  # sets to train
    generated: str | None = None  # generated folder X'; default DIR/generated
    pairs: int = 0  # generated pairs added for T' (0: every pair in the folder)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_archs(self.archs)
        bad = [s for s in self.training_sets if s not in TRAINING_SETS]
        if not self.training_sets or bad:
            raise ValueError(f"unknown or missing training set(s) {bad or self.training_sets}: "
                             f"choose from {list(TRAINING_SETS)}")
        if self.pairs < 0:
            raise ValueError(f"pairs must be >= 0 (0 = all generated pairs), got {self.pairs}")


@dataclass
class SamplingConfig(ClassifierStudyConfig):
    """Fig. 5: accuracy against the number N of generated pairs added to T."""

    sizes: list[int] = field(default_factory=lambda: [0, 500, 2000])  # N values; 0 = T alone
    arch: str = "resnet18"  # classifier zoo key
    checkpoint: str | None = None  # KECAE checkpoint; default DIR/kecae/checkpoints/last.pt
    gen_seed: int = 0  # seeds the pair sample (the first N pairs of a larger sample are reused)
    gen_batch_size: int = 64  # pairs per generator forward pass

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_archs([self.arch])
        if not self.sizes or min(self.sizes) < 0 or len(set(self.sizes)) != len(self.sizes):
            raise ValueError(f"sizes must be distinct numbers of pairs >= 0, e.g. 0 500 2000; "
                             f"got {self.sizes}")


@dataclass
class LambdaGridConfig:
    """Fig. 3: one KECAE per (λ1, λ2), SVM-RBF accuracy on the latents of test images."""

    run: str = ""  # run folder; its kecae/config.yaml gives data, preset, pairs and batch
    lambda1: list[float] = field(default_factory=lambda: [1e-5, 1e-3, 1e-1, 1.0])  # rows: J_SUP
    lambda2: list[float] = field(default_factory=lambda: [1e-5, 1e-3, 1e-1, 1.0])  # cols: J_LDA
    kecae_steps: int = 300  # optimiser steps per KECAE (scaled down from the paper's 1,000 epochs)
    data: str | None = None  # default: the run's KECAE data set
    supervisor: str | None = None  # default DIR/supervisor/best.pt, else the run's supervisor
    preset: str | None = None  # default: the run's KECAE preset
    batch_size: int | None = None  # default: the run's KECAE batch
    num_pairs: int | None = None  # default: the run's N pairs
    images: int = 1000  # most test images for the SVM (half per class, 5-fold)
    seed: int | None = None  # default: the run's KECAE seed (same init and batches in every cell)
    device: str = "auto"  # auto / cpu / cuda
    cache_dir: str | None = None  # preprocessed-image cache
    progress: bool = True  # the trainer's progress bar

    def __post_init__(self) -> None:
        if not self.run:
            raise ValueError("run is empty: pass the run folder (e.g. runs/demo)")
        for name in ("lambda1", "lambda2"):
            values = getattr(self, name)
            if not values or min(values) < 0 or len(set(values)) != len(values):
                raise ValueError(f"{name} must be distinct weights >= 0, e.g. 1e-5 1e-3 1e-1 1; "
                                 f"got {values}")
        if self.kecae_steps < 1:
            raise ValueError(f"kecae_steps must be >= 1, got {self.kecae_steps}")
        if self.images < 10:
            raise ValueError(f"images must be >= 10 (5-fold SVM, both classes), got {self.images}")


# ---------------------------------------------------------------------------------------------
# Shared helpers: the run folder, metrics.json, reuse of finished sub-runs
# ---------------------------------------------------------------------------------------------

def _kecae_run_config(run: Path) -> KECAETrainConfig | None:
    path = RunLayout(run).kecae.config
    return load_yaml(KECAETrainConfig, path) if path.is_file() else None


def _resolve_data(data: str | None, run: Path) -> str:
    """The data set: given, or the one the run's KECAE was trained on (its config.yaml stores
    it relative to the run folder, so a moved run folder still finds it)."""
    if not data:
        base = _kecae_run_config(run)
        data = base.data if base else None
        if not data:
            raise KecaeError(f"no data set given and {RunLayout(run).kecae.config} does not name "
                             "one: pass --data (the folder or manifest KECAE was trained on)")
    path = Path(data).expanduser().resolve()
    if not path.exists():
        raise KecaeError(f"data set {path} does not exist: pass --data with the folder or "
                         "manifest of the real images")
    return str(path)


def _data_options(run: Path, data_given: str | None, patient_regex: str | None = None
                  ) -> dict[str, Any]:
    """The run's data options the classifiers must share with it (patients of a folder layout,
    accepted data problems), taken from its KECAE config unless another data set is given; a
    given ``patient_regex`` wins."""
    base = _kecae_run_config(run)
    options: dict[str, Any] = {}
    if base is not None and not data_given:
        options = {"patient_regex": base.patient_regex,
                   "accept_data_problems": base.accept_data_problems}
    if patient_regex:
        options["patient_regex"] = patient_regex
    return options


def _resolve_image_size(size: int | None, run: Path, generated: Path | None = None) -> int:
    """Given, else the run's KECAE model size, else the generated folder's image size."""
    if size:
        return int(size)
    base = _kecae_run_config(run)
    if base is not None:
        from kecae.training.kecae_trainer import model_config_for

        return int(model_config_for(base).image_size)
    meta = generated / "generation.json" if generated else None
    if meta is not None and meta.is_file():
        return int(json.loads(meta.read_text())["image_size"])
    raise KecaeError(f"cannot tell the image size: {RunLayout(run).kecae.config} is absent; "
                     "pass --image-size")


def _classifier_cfg(cfg: ClassifierStudyConfig, *, data: str, size: int, arch: str, out: Path,
                    seed: int, augment: str = "none", augment_dirs: list[str] | None = None,
                    data_options: dict[str, Any] | None = None) -> ClassifierTrainConfig:
    return ClassifierTrainConfig(
        data=data, out=str(out), arch=arch, image_size=size, augment_dirs=list(augment_dirs or []),
        augment=augment, epochs=cfg.epochs, patience=cfg.patience, batch_size=cfg.batch_size,
        lr=cfg.lr, seed=seed, device=cfg.device, cache_dir=cfg.cache_dir, progress=cfg.progress,
        **(data_options or {}))


def _check_same(out: Path, cls: type, new: Any, fields: tuple[str, ...]) -> None:
    """Refuse a sub-run folder whose config.yaml differs from ``new`` in ``fields``, so a study
    never mixes runs of two settings."""
    old_path = out / "config.yaml"
    if old_path.is_file():
        check_same(out, dataclasses.asdict(load_yaml(cls, old_path)), dataclasses.asdict(new),
                   fields=fields, what="a sub-run",
                   fix=f"pass the same options as before, or delete {out.parent} to run this "
                       "part of the study again")


def _train_or_reuse(ccfg: ClassifierTrainConfig) -> dict[str, Any]:
    """Metrics of a classifier run: read from a finished folder, else trained (or resumed)."""
    run = ClassifierRun(Path(ccfg.out))
    _check_same(run.folder, ClassifierTrainConfig, ccfg, _REUSE_FIELDS)
    if run.finished:
        return json.loads(run.metrics.read_text())
    return train_classifier(ccfg)


class _Progress:
    """One log line per finished sub-run: its number, what it was, its time and the total time."""

    def __init__(self, study: str, total: int) -> None:
        self.study, self.total, self.done = study, total, 0
        self.t0 = self.t = time.perf_counter()

    def step(self, what: str) -> None:
        now = time.perf_counter()
        self.done += 1
        log.info("[%s %d/%d] %s (%.1f s; %.1f s in all)", self.study, self.done, self.total,
                 what, now - self.t, now - self.t0)
        self.t = now


def _stats(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1, 0 for one value); NaN entries (e.g. AUC) are skipped."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return math.nan, math.nan
    s = mean_std(v)
    return s["mean"], s["std"]


def _test_metric(metrics: dict[str, Any], key: str) -> float:
    value = metrics["test"].get(key)
    return math.nan if value is None else float(value)


# ---------------------------------------------------------------------------------------------
# Generated folders: count pairs, take the first N
# ---------------------------------------------------------------------------------------------

def _manifest_rows(folder: Path) -> list[dict[str, str]]:
    path = folder / "manifest.csv"
    if not path.is_file():
        raise KecaeError(f"{path} is missing: {folder} is not a finished `kecae generate` folder; "
                         f"rerun `kecae generate --out {folder} ...` to finish it")
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def generated_pairs(folder: str | Path) -> int:
    """Number of pairs (two images each) listed in a generated folder's manifest."""
    rows = _manifest_rows(Path(folder))
    return len({int(r["pair_index"]) for r in rows})


def first_pairs_manifest(folder: str | Path, n_pairs: int, dest: str | Path) -> Path:
    """Write ``dest``, a manifest of the first ``n_pairs`` pairs of a generated folder.

    Pair k of a generated folder depends only on (checkpoint, data, seed, k), not on how many
    pairs were asked, so the first N pairs of a larger folder are exactly the set a generation
    of N pairs would write. Paths are written relative to ``dest`` inside the run folder and
    absolute outside it (see :mod:`kecae.runfolder`).
    """
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}; N = 0 needs no manifest")
    folder, dest = Path(folder).resolve(), Path(dest)
    rows = [r for r in _manifest_rows(folder) if int(r["pair_index"]) < n_pairs]
    if len({int(r["pair_index"]) for r in rows}) < n_pairs:
        raise KecaeError(f"{folder} holds fewer than {n_pairs} pairs: generate more, or ask for "
                         "fewer")
    for r in rows:  # every path re-anchored from the generated folder to dest's folder
        for col in ("path", "recipient_path", "donor_path"):
            if r.get(col):
                r[col] = store_path(load_path(r[col], folder, legacy=True), dest.parent)
    with atomic_path(dest) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return dest


# ---------------------------------------------------------------------------------------------
# Study 1: downstream benefit (Table II)
# ---------------------------------------------------------------------------------------------

def run_downstream(cfg: DownstreamConfig) -> dict[str, Any]:
    """Train every (arch, training set, seed) classifier; write and return ``downstream``.

    Rows: accuracy / precision / recall / AUC as mean ± sample std over seeds on the fixed test
    split. ``gain`` is the difference of means against T; ``paired_difference`` the per-seed
    differences (same seed -> same initial weights), their mean ± std and a paired t-test p-value.
    """
    run = Path(cfg.run).resolve()
    root = run / "studies" / "downstream"
    generated = Path(cfg.generated).resolve() if cfg.generated else RunLayout(run).generated.folder
    data = _resolve_data(cfg.data, run)
    options = _data_options(run, cfg.data, cfg.patient_regex)
    size = _resolve_image_size(cfg.image_size, run, generated)

    # T': the generated pairs to add (all of them, or the first --pairs)
    augment_dirs: list[str] = []
    available = used = 0
    if "T'" in cfg.training_sets:
        if not generated.is_dir():
            raise KecaeError(f"generated folder {generated} does not exist: run `kecae generate "
                             f"--out {generated} ...` first, or pass --generated DIR")
        available = generated_pairs(generated)
        used = min(cfg.pairs, available) if cfg.pairs else available
        if cfg.pairs > available:
            log.warning("%s holds %d pairs, fewer than the %d asked: using %d", generated,
                        available, cfg.pairs, available)
        subset = root / f"generated_first_{used}.csv"
        augment_dirs = [str(generated) if used == available else
                        str(first_pairs_manifest(generated, used, subset))]

    # every sub-run
    per_run: dict[tuple[str, str], list[dict[str, Any]]] = {}
    progress = _Progress("downstream", len(cfg.archs) * len(cfg.training_sets) * cfg.seeds)
    for arch in cfg.archs:
        for name in cfg.training_sets:
            folder, classic, adds = TRAINING_SETS[name]
            for seed in cfg.seed_list:
                m = _train_or_reuse(_classifier_cfg(
                    cfg, data=data, size=size, arch=arch, out=root / arch / folder / f"seed_{seed}",
                    seed=seed, augment="classic" if classic else "none",
                    augment_dirs=augment_dirs if adds else None, data_options=options))
                per_run.setdefault((arch, name), []).append(m)
                progress.step(f"{arch} {name} seed {seed}: test accuracy "
                              f"{_test_metric(m, 'accuracy'):.4f}")

    # summary rows, gains, paired differences
    rows, gain, paired = [], {}, {}
    for arch in cfg.archs:
        for name in cfg.training_sets:
            ms = per_run[(arch, name)]
            row: dict[str, Any] = {"model": arch, "training_set": name}
            for key in ("accuracy", "precision", "recall", "auc"):
                row[f"{key}_mean"], row[f"{key}_std"] = _stats([_test_metric(m, key) for m in ms])
            row.update(n_seeds=len(ms), n_train_real=int(ms[0]["n_train_real"]),
                       n_train_generated=int(ms[0]["n_train_generated"]),
                       accuracy_values=[_test_metric(m, "accuracy") for m in ms],
                       seeds=cfg.seed_list)
            rows.append(row)
        if "T" in cfg.training_sets:
            base = {r["training_set"]: r for r in rows if r["model"] == arch}
            base_acc = [_test_metric(m, "accuracy") for m in per_run[(arch, "T")]]
            gain[arch], paired[arch] = {}, {}
            for name in cfg.training_sets:
                if name == "T":
                    continue
                gain[arch][name] = base[name]["accuracy_mean"] - base["T"]["accuracy_mean"]
                acc = [_test_metric(m, "accuracy") for m in per_run[(arch, name)]]
                paired[arch][name] = paired_difference(acc, base_acc)
    first = next(iter(per_run.values()))[0]
    test_n = int(first["n_test"])
    note = (f"{cfg.seeds} seed(s) per cell, each trained from scratch with the same epochs "
            f"({cfg.epochs}, patience {cfg.patience}) and batch ({cfg.batch_size}); fixed "
            f"validation (n = {first['n_val']}) and test (n = {test_n}) splits; mean ± sample std "
            f"over seeds. A seed gives the same initial weights for every training set (the "
            f"batch order follows the seed but differs when the set differs). One test image is "
            f"{100 / test_n:.2f} pp of accuracy: judge a gain by its paired per-seed difference, "
            "not by the difference of means alone.")
    if "T'" in cfg.training_sets:
        note += f" T' adds {used} generated pairs ({2 * used} images) from {generated}."
        if cfg.pairs > available:
            note += f" {cfg.pairs} pairs were asked but the folder holds only {available}."
    section = {"rows": rows, "gain": gain, "paired_difference": paired, "test_n": test_n,
               "val_n": int(first["n_val"]), "epochs": cfg.epochs, "patience": cfg.patience,
               "batch_size": cfg.batch_size, "seeds": cfg.seed_list, "image_size": size,
               "data": data, "generated": str(generated) if augment_dirs else None,
               "generated_pairs_used": used, "generated_pairs_available": available,
               "generated_pairs_asked": cfg.pairs or available, "note": note}
    write_section(run, "downstream", section)
    return _jsonable(section)


def paired_difference(values: list[float], baseline: list[float]) -> dict[str, Any]:
    """Per-seed differences ``values[i] - baseline[i]``: mean, sample std, n, values, and the
    two-sided paired t-test p-value (scipy; null when n < 2 or every difference is equal)."""
    from scipy import stats

    a, b = np.asarray(values, float), np.asarray(baseline, float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"values and baseline must be equal-length 1-D lists (one entry per "
                         f"seed), got shapes {a.shape} and {b.shape}")
    d = a - b
    p = math.nan
    if len(d) > 1 and np.ptp(d) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_rel(a, b).pvalue)
    return {"mean": float(d.mean()), "std": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
            "n": int(len(d)), "values": [float(x) for x in d], "p_value": p}


# ---------------------------------------------------------------------------------------------
# Study 2: sampling size N (Fig. 5)
# ---------------------------------------------------------------------------------------------

def _reusable_generation(folder: Path, want: dict[str, Any], n_pairs: int) -> bool:
    """Whether ``folder`` is a finished generation of the same checkpoint, data and pair seed
    with at least ``n_pairs`` pairs (its first N pairs are then exactly a generation of N)."""
    from kecae.generation import _read_meta

    gen = GeneratedFolder(folder)
    if not gen.manifest.is_file():
        return False
    try:
        meta = _read_meta(gen)
    except KecaeError:
        return False  # a damaged generation.json: not reusable, never an error here
    if meta is None:
        return False
    return not differences(meta, want, fields=want) and int(meta.get("pairs", 0)) >= n_pairs


def _read_train_loss(run_dir: Path) -> list[float]:
    """The classifier run's per-epoch training loss from its log.csv."""
    path = run_dir / "log.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: float(r["epoch"]))
    return [float(r["train_loss"]) for r in rows if r.get("train_loss") not in ("", None)]


def _mean_curve(curves: list[list[float]]) -> list[float]:
    """Epoch-wise mean over the seeds that reached each epoch (early stopping varies)."""
    length = max((len(c) for c in curves), default=0)
    return [float(np.mean([c[e] for c in curves if len(c) > e])) for e in range(length)]


def run_sampling(cfg: SamplingConfig) -> dict[str, Any]:
    """Classifiers on T ∪ X'_N for each N in ``cfg.sizes``; write and return ``sampling_size``.

    The largest N is generated once (or taken from a finished folder of the same checkpoint,
    data and pair seed: ``DIR/generated`` or an earlier ``DIR/studies/sampling/gen_*``); every
    smaller N uses its first N pairs.
    """
    run = Path(cfg.run).resolve()
    root = run / "studies" / "sampling"
    data = _resolve_data(cfg.data, run)
    options = _data_options(run, cfg.data, cfg.patient_regex)
    size = _resolve_image_size(cfg.image_size, run)
    sizes = sorted(cfg.sizes)
    n_max = sizes[-1]

    source: Path | None = None
    if n_max > 0:
        ckpt = Path(cfg.checkpoint).resolve() if cfg.checkpoint else \
            RunLayout(run).kecae.last
        if not ckpt.is_file():
            raise KecaeError(f"KECAE checkpoint {ckpt} does not exist: train KECAE first "
                             f"(`kecae train --out {RunLayout(run).kecae.folder}`) or pass "
                             "--checkpoint")
        want = {"checkpoint_sha256": file_sha256(ckpt), "data": data, "seed": cfg.gen_seed,
                "oversample": False}
        candidates = [RunLayout(run).generated.folder] + sorted(root.glob("gen_*"))
        source = next((c for c in candidates if _reusable_generation(c, want, n_max)), None)
        if source is None:
            source = root / f"gen_{n_max}"
            log.info("[sampling] generating %d pairs into %s", n_max, source)
            generate(GenerateConfig(checkpoint=str(ckpt), data=data, out=str(source), pairs=n_max,
                                    seed=cfg.gen_seed, batch_size=cfg.gen_batch_size,
                                    device=cfg.device, cache_dir=cfg.cache_dir,
                                    progress=cfg.progress,
                                    patient_regex=options.get("patient_regex")))
        else:
            log.info("[sampling] reusing the first pairs of %s", source)

    acc_mean, acc_std, acc_values, n_generated = [], [], [], []
    curves: dict[str, list[float]] = {}
    seed_curves: dict[str, list[list[float]]] = {}
    progress = _Progress("sampling", len(sizes) * cfg.seeds)
    test_n = None
    for n in sizes:
        dirs = [] if n == 0 else [
            str(first_pairs_manifest(source, n, root / f"first_{n}_pairs.csv"))]
        accs, runs_curves = [], []
        for seed in cfg.seed_list:
            out = root / f"N_{n}" / f"seed_{seed}"
            m = _train_or_reuse(_classifier_cfg(cfg, data=data, size=size, arch=cfg.arch, out=out,
                                                seed=seed, augment_dirs=dirs,
                                                data_options=options))
            accs.append(_test_metric(m, "accuracy"))
            runs_curves.append(_read_train_loss(out))
            test_n = int(m["n_test"])
            progress.step(f"N = {n} seed {seed}: test accuracy {accs[-1]:.4f}")
        mean, std = _stats(accs)
        acc_mean.append(mean)
        acc_std.append(std)
        acc_values.append(accs)
        n_generated.append(2 * n)
        curves[str(n)], seed_curves[str(n)] = _mean_curve(runs_curves), runs_curves

    section = {"N": sizes, "accuracy_mean": acc_mean, "accuracy_std": acc_std,
               "accuracy_values": acc_values, "train_loss_curves": curves,
               "train_loss_curves_per_seed": seed_curves, "n_train_generated": n_generated,
               "arch": cfg.arch, "n_seeds": cfg.seeds, "seeds": cfg.seed_list,
               "epochs": cfg.epochs, "patience": cfg.patience, "test_n": test_n,
               "image_size": size, "generated_from": str(source) if source else None,
               "note": "N pairs add 2N images (X'1 labelled KL-2, X'2 labelled KL-0); the first N "
                       "pairs of one sample, so a larger N contains every smaller one. "
                       "train_loss_curves: per-epoch training loss, mean over the seeds that "
                       "reached the epoch (early stopping)."}
    write_section(run, "sampling_size", section)
    return _jsonable(section)


# ---------------------------------------------------------------------------------------------
# Study 3: the λ1 × λ2 grid (Fig. 3)
# ---------------------------------------------------------------------------------------------

def _cell_name(l1: float, l2: float) -> str:
    return f"l1_{l1:g}_l2_{l2:g}"


def _test_latent_sample(data: str, size: int, n_images: int, seed: int, cache_dir: str | None,
                        patient_regex: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n_images`` test images, half per class (seeded), and their labels (0/1)."""
    from kecae import CLASS_GRADES
    from kecae.data import load_image_set

    rng = np.random.default_rng(seed)
    picks, labels = [], []
    for label, grade in enumerate(CLASS_GRADES):
        s = load_image_set(data, size=size, split="test", grades=(grade,), cache_dir=cache_dir,
                           progress=False, patient_regex=patient_regex)
        idx = np.sort(rng.permutation(len(s.images))[: n_images // 2])
        picks.append(np.asarray(s.images[idx], np.float32))
        labels.append(np.full(len(idx), label))
    return np.concatenate(picks), np.concatenate(labels)


def run_lambda_grid(cfg: LambdaGridConfig) -> dict[str, Any]:
    """Train one KECAE per (λ1, λ2), measure SVM separability; write and return ``lambda_grid``.

    Every cell shares the run's data, supervisor, preset, pairs, batch and seed; only the two
    loss weights differ. Accuracies are 5-fold SVM-RBF on hK (and hN) of the same test images.
    """
    from kecae.training.kecae_trainer import model_config_for

    run = Path(cfg.run).resolve()
    root = run / "studies" / "lambda_grid"
    base = _kecae_run_config(run) or KECAETrainConfig()
    data = _resolve_data(cfg.data, run)
    own = RunLayout(run).supervisor.best
    supervisor = cfg.supervisor or (str(own) if own.is_file() else base.supervisor)
    if base.supervisor_mode == "frozen" and not (supervisor and Path(supervisor).is_file()):
        raise KecaeError(f"no supervisor checkpoint: {run / 'supervisor' / 'best.pt'} is absent; "
                         "train one (`kecae train-classifier --out DIR/supervisor`) or pass "
                         "--supervisor")
    template = dataclasses.replace(
        base, data=data, supervisor=str(Path(supervisor).resolve()) if supervisor else "",
        preset=cfg.preset or base.preset, batch_size=cfg.batch_size or base.batch_size,
        num_pairs=cfg.num_pairs or base.num_pairs,
        seed=base.seed if cfg.seed is None else cfg.seed, max_steps=cfg.kecae_steps,
        log_every=min(base.log_every, cfg.kecae_steps), sample_every=cfg.kecae_steps,
        ckpt_every=cfg.kecae_steps, device=cfg.device, cache_dir=cfg.cache_dir,
        progress=cfg.progress, resume=True)
    size = int(model_config_for(template).image_size)
    images, labels = _test_latent_sample(data, size, cfg.images, template.seed, cfg.cache_dir,
                                         template.patient_regex)
    if min(np.bincount(labels, minlength=2)) < 5:
        raise KecaeError(f"the test split of {data} has fewer than 5 images of a class: the "
                         "5-fold SVM needs at least 5 KL-0 and 5 KL-2 test images")

    shape = (len(cfg.lambda1), len(cfg.lambda2))
    grids = {k: np.full(shape, np.nan) for k in ("hk", "hk_std", "hn", "hn_std", "mse")}
    want = {"steps": cfg.kecae_steps, "n_images": int(len(labels)), "seed": template.seed}
    progress = _Progress("lambda-grid", shape[0] * shape[1])
    for i, l1 in enumerate(cfg.lambda1):
        for j, l2 in enumerate(cfg.lambda2):
            out = root / _cell_name(l1, l2)
            kcfg = dataclasses.replace(template, out=str(out), lambda_sup=l1, lambda_lda=l2)
            _check_same(out, KECAETrainConfig, kcfg, _KECAE_REUSE_FIELDS)
            result_path = out / "separability.json"
            result = json.loads(result_path.read_text()) if result_path.is_file() else None
            if result is None or any(result.get(k) != v for k, v in want.items()):
                result = _lambda_cell(kcfg, images, labels, cfg)
                atomic_write_text(result_path, json.dumps(_jsonable({**result, **want}), indent=2))
            for h in ("hk", "hn"):
                grids[h][i, j] = result[f"svm_{h}_accuracy"]
                grids[f"{h}_std"][i, j] = result[f"svm_{h}_std"]
            grids["mse"][i, j] = np.nan if result.get("final_mse") is None else result["final_mse"]
            progress.step(f"λ1 = {l1:g}, λ2 = {l2:g}: SVM on hK {result['svm_hk_accuracy']:.4f}, "
                          f"on hN {result['svm_hn_accuracy']:.4f}")

    section = {"lambda1": list(cfg.lambda1), "lambda2": list(cfg.lambda2),
               "svm_hk_accuracy": grids["hk"].tolist(),
               "svm_hk_accuracy_std": grids["hk_std"].tolist(),
               "svm_hn_accuracy": grids["hn"].tolist(),
               "svm_hn_accuracy_std": grids["hn_std"].tolist(),
               "final_mse": grids["mse"].tolist(), "steps": cfg.kecae_steps,
               "n_images": int(len(labels)), "folds": 5, "preset": template.preset,
               "batch_size": template.batch_size, "num_pairs": template.num_pairs,
               "seed": template.seed, "image_size": size,
               "note": "rows λ1 (J_SUP weight), columns λ2 (J_LDA weight); one KECAE per cell, "
                       "trained with the same data, supervisor, preset, pairs, batch and seed; "
                       "SVM-RBF 5-fold accuracy on the latents of the same test images. "
                       "final_mse: J_MSE of the last log row (a weight that wrecks reconstruction "
                       "shows here)."}
    write_section(run, "lambda_grid", section)
    return _jsonable(section)


def _lambda_cell(kcfg: KECAETrainConfig, images: np.ndarray, labels: np.ndarray,
                 cfg: LambdaGridConfig) -> dict[str, Any]:
    """Train (or resume) one cell's KECAE, then measure hK / hN separability."""
    from kecae.training.checkpoint import load_checkpoint

    ckpt_path = Path(kcfg.out) / "checkpoints" / "last.pt"
    if ckpt_path.is_file():
        done = int(load_checkpoint(ckpt_path, kind="kecae")["step"])
        if done > cfg.kecae_steps:
            raise KecaeError(f"{ckpt_path} was trained for {done} steps, more than the "
                             f"{cfg.kecae_steps} asked: pass --kecae-steps {done}, or delete "
                             f"{Path(kcfg.out).parent} to run the grid again")
    summary = train_kecae(kcfg)
    device = select_device(cfg.device)
    model, _ = load_kecae(str(ckpt_path), device)
    hk, hn = encode(model, images, device=device)
    sk = svm_separability(hk, labels, seed=kcfg.seed)
    sn = svm_separability(hn, labels, seed=kcfg.seed)
    last = summary.get("last_terms") or {}
    return {"svm_hk_accuracy": sk["mean"], "svm_hk_std": sk["std"], "svm_hn_accuracy": sn["mean"],
            "svm_hn_std": sn["std"], "final_mse": last.get("mse"), "latent_dim": int(hk.shape[1])}


# ---------------------------------------------------------------------------------------------
# Compact tables for the terminal
# ---------------------------------------------------------------------------------------------

def _pm(mean: Any, std: Any) -> str:
    if mean is None:
        return "—"
    return f"{100 * mean:6.2f} ± {100 * (std or 0):5.2f}"


def format_downstream(section: dict[str, Any]) -> str:
    """Table II as text: one row per (model, training set), percentages."""
    lines = [f"{'model':<12}{'set':<11}{'accuracy %':>16}{'precision %':>17}{'recall %':>17}"
             f"{'Δacc paired (pp)':>22}{'seeds':>7}"]
    for r in section["rows"]:
        pd_ = section.get("paired_difference", {}).get(r["model"], {}).get(r["training_set"])
        diff = f"{100 * pd_['mean']:+.2f} ± {100 * pd_['std']:.2f}" if pd_ else ""
        lines.append(f"{r['model']:<12}{r['training_set']:<11}"
                     f"{_pm(r['accuracy_mean'], r['accuracy_std']):>16}"
                     f"{_pm(r['precision_mean'], r['precision_std']):>17}"
                     f"{_pm(r['recall_mean'], r['recall_std']):>17}{diff:>22}{r['n_seeds']:>7}")
    lines.append(f"test n = {section['test_n']}; {section['note']}")
    return "\n".join(lines)


def format_sampling(section: dict[str, Any]) -> str:
    """Fig. 5 as text: accuracy for each N."""
    lines = [f"{'N pairs':>9}{'accuracy %':>18}   ({section['arch']}, {section['n_seeds']} seeds, "
             f"test n = {section['test_n']})"]
    for n, m, s in zip(section["N"], section["accuracy_mean"], section["accuracy_std"],
                       strict=True):
        lines.append(f"{n:>9}{_pm(m, s):>18}")
    return "\n".join(lines)


def format_lambda_grid(section: dict[str, Any]) -> str:
    """Fig. 3 as text: SVM accuracy on hK (and hN in brackets), rows λ1, columns λ2."""
    head = "λ1 \\ λ2".ljust(10) + "".join(f"{v:>16g}" for v in section["lambda2"])
    lines = [f"SVM-RBF accuracy % on hK (hN), {section['steps']} steps, "
             f"{section['n_images']} test images", head]
    for l1, hk_row, hn_row in zip(section["lambda1"], section["svm_hk_accuracy"],
                                  section["svm_hn_accuracy"], strict=True):
        cells = "".join(f"{_pct(a)} ({_pct(b)})".rjust(16)
                        for a, b in zip(hk_row, hn_row, strict=True))
        lines.append(f"{l1:<10g}{cells}")
    return "\n".join(lines)


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.1f}"
