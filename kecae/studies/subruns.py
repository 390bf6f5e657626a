"""What every study shares: the run it studies (its data, patients and image size, read from the
run's KECAE config), and the sub-runs it trains under ``RUN/studies/<name>/`` -- reused when
finished, resumed when interrupted, refused when made with other settings.

The studies call the trainers and the generator; none of the training logic lives here. Heavy
modules (torch) are imported when a study runs, so ``kecae --help`` stays fast.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kecae.config import load_yaml, setting
from kecae.errors import KecaeError
from kecae.files import atomic_path
from kecae.generated_files import read_meta
from kecae.paths import load_path, store_path
from kecae.registry import CLASSIFIERS
from kecae.reuse import check_config_file, differences
from kecae.runfolder import ClassifierRun, GeneratedFolder, KECAERun, RunLayout
from kecae.training.config import (
    KECAE_MAY_CHANGE,
    ClassifierTrainConfig,
    KECAETrainConfig,
    kecae_model_config,
    member_seed,
)

# The trainers, checkpoints and measures (torch, SciPy, scikit-learn) are imported when a sub-run
# trains: the command line imports the studies for their settings and stays light.

log = logging.getLogger(__name__)

#: Classifier settings that must match for a finished sub-run to be reused.
CLASSIFIER_REUSE_FIELDS = (
    "data",
    "arch",
    "model",
    "image_size",
    "augment_dirs",
    "augment",
    "real_grades",
    "mix_dirs",
    "mix_ratio",
    "pretrain_steps",
    "max_steps",
    "eval_every",
    "epochs",
    "patience",
    "batch_size",
    "lr",
    "lr_schedule",
    "weight_decay",
    "balance",
    "max_train",
    "seed",
)


@dataclass
class ClassifierStudyConfig:
    """Settings shared by the studies that train classifiers (same for every sub-run)."""

    run: str = setting("", required=True, metavar="DIR")  # run folder (made by kecae run or demo)
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
                raise ValueError(
                    f"--{name.replace('_', '-')} {getattr(self, name)}: must be a whole number >= 1"
                )
        if self.image_size is not None and self.image_size < 16:
            raise ValueError(f"image_size must be at least 16 px, got {self.image_size}")

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))


@dataclass
class KECAEStudyConfig:
    """Settings shared by the studies that train KECAEs on a run's data (the ablation, the λ grid,
    the tuning)."""

    run: str = setting("", required=True, metavar="DIR")  # run folder (made by kecae run or demo)
    data: str | None = None  # default: the run's KECAE data set
    supervisor: str | None = None  # default: DIR/supervisor/best.pt
    device: str = "auto"  # auto / cpu / cuda
    cache_dir: str | None = None  # preprocessed-image cache
    progress: bool = True  # the trainer's progress bar

    def __post_init__(self) -> None:
        if not self.run:
            raise ValueError("run is empty: pass the run folder (e.g. runs/demo)")


def check_archs(archs: list[str]) -> None:
    """Refuse classifier names that are not in the zoo."""

    bad = [a for a in archs if a not in CLASSIFIERS]
    if not archs or bad:
        raise ValueError(
            f"unknown or missing classifier architecture(s) {bad or archs}: "
            f"choose from {sorted(CLASSIFIERS)}"
        )


# ---------------------------------------------------------------------------------------------
# The run a study works on
# ---------------------------------------------------------------------------------------------


def at_budget(
    base: KECAETrainConfig,
    steps: int,
    device: str,
    cache_dir: str | None,
    progress: bool,
    **changes: Any,
) -> KECAETrainConfig:
    """A study's sub-run of the recipe ``base``: ``steps`` optimiser steps (logs, samples and
    checkpoints scaled to them), the study's device, cache and progress bar, resumed when
    interrupted; ``changes`` replace other fields (data, supervisor, out, …)."""
    return dataclasses.replace(
        base,
        max_steps=steps,
        log_every=min(base.log_every, steps),
        sample_every=steps,
        ckpt_every=max(1, min(base.ckpt_every, steps)),
        device=device,
        cache_dir=cache_dir,
        progress=progress,
        resume=True,
        fresh=False,
        **changes,
    )


def kecae_run_config(run: Path) -> KECAETrainConfig | None:
    """The run's KECAE training configuration (None when the run has none)."""
    path = RunLayout(run).kecae.config
    return load_yaml(KECAETrainConfig, path) if path.is_file() else None


def run_recipe(
    layout: RunLayout, why: str, steps: int | None, option: str
) -> tuple[KECAETrainConfig, int]:
    """The run's KECAE recipe and a study's step budget (``steps``, else the run's own), or a
    :class:`KecaeError` naming the missing recipe (``why`` the study needs it) or budget
    (``option`` the flag that sets it)."""
    base = kecae_run_config(layout.root)
    if base is None:
        raise KecaeError(
            f"{layout.kecae.config} is missing: {why}; train the run's KECAE first "
            f"(`kecae demo --out {layout.root}`)"
        )
    budget = steps or base.max_steps
    if not budget:
        raise KecaeError(f"{layout.kecae.config} sets no max_steps: pass {option}")
    return base, budget


def resolve_data(data: str | None, run: Path) -> str:
    """The data set: given, or the one the run's KECAE was trained on (its config.yaml stores
    it relative to the run folder, so a moved run folder still finds it)."""
    if not data:
        base = kecae_run_config(run)
        data = base.data if base else None
        if not data:
            raise KecaeError(
                f"no data set given and {RunLayout(run).kecae.config} does not name "
                "one: pass --data (the folder or manifest KECAE was trained on)"
            )
    path = Path(data).expanduser().resolve()
    if not path.exists():
        raise KecaeError(
            f"data set {path} does not exist: pass --data with the folder or "
            "manifest of the real images"
        )
    return str(path)


def data_options(
    run: Path, data_given: str | None, patient_regex: str | None = None
) -> dict[str, Any]:
    """The run's data options the classifiers must share with it (the grade pair; patients of
    a folder layout and accepted data problems, taken from its KECAE config unless another data
    set is given); a given ``patient_regex`` wins."""
    base = kecae_run_config(run)
    options: dict[str, Any] = {}
    if base is not None:
        options["grades"] = list(base.grades)
    if base is not None and not data_given:
        options.update(
            patient_regex=base.patient_regex, accept_data_problems=base.accept_data_problems
        )
    if patient_regex:
        options["patient_regex"] = patient_regex
    return options


def resolve_image_size(size: int | None, run: Path, generated: Path | None = None) -> int:
    """Given, else the run's KECAE model size, else the generated folder's image size."""

    if size:
        return int(size)
    base = kecae_run_config(run)
    if base is not None:
        return int(kecae_model_config(base).image_size)
    meta = GeneratedFolder(generated).meta if generated else None
    if meta is not None and meta.is_file():
        return int(json.loads(meta.read_text())["image_size"])
    raise KecaeError(
        f"cannot tell the image size: {RunLayout(run).kecae.config} is absent; pass --image-size"
    )


# ---------------------------------------------------------------------------------------------
# Sub-runs: trained once, reused after
# ---------------------------------------------------------------------------------------------


def classifier_config(
    cfg: ClassifierStudyConfig,
    *,
    data: str,
    size: int,
    arch: str,
    out: ClassifierRun,
    seed: int,
    augment: str = "none",
    augment_dirs: list[str] | None = None,
    options: dict[str, Any] | None = None,
) -> ClassifierTrainConfig:
    """One classifier sub-run of a study: the study's shared settings and the cell's own."""
    return ClassifierTrainConfig(
        data=data,
        out=str(out.folder),
        arch=arch,
        image_size=size,
        augment_dirs=list(augment_dirs or []),
        augment=augment,
        epochs=cfg.epochs,
        patience=cfg.patience,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=seed,
        device=cfg.device,
        cache_dir=cfg.cache_dir,
        progress=cfg.progress,
        **(options or {}),
    )


def check_sub_run(folder: Path, new: Any, fields: tuple[str, ...]) -> None:
    """Refuse a sub-run folder made with other ``fields`` than ``new``: a study never mixes
    runs of two settings."""
    check_config_file(
        folder,
        new,
        fields,
        what="a sub-run",
        fix=f"pass the same options as before, or delete {folder.parent} to run "
        "this part of the study again",
    )


def train_or_reuse(ccfg: ClassifierTrainConfig) -> dict[str, Any]:
    """Metrics of a classifier run: read from a finished folder, else trained (or resumed)."""
    from kecae.training import classifier_trainer

    run = ClassifierRun(Path(ccfg.out))
    check_sub_run(run.folder, ccfg, CLASSIFIER_REUSE_FIELDS)
    if run.finished:
        return {**json.loads(run.metrics.read_text()), "out": str(run.folder)}
    return classifier_trainer.train_classifier(ccfg)


def member_recipe(
    layout: RunLayout, k: int, supervisor: ClassifierTrainConfig
) -> ClassifierTrainConfig:
    """How member ``k`` of the run's supervisor ensemble is trained: the supervisor's recipe
    with the model settings of the run's own member k (its config.yaml; a member may see another
    view than the supervisor, as the ``cpu`` preset's inner-view member does), else the
    supervisor's recipe as it is. Seeds and folders are the caller's."""
    own = layout.supervisor_member(k).config
    if k == 0 or not own.is_file():
        return supervisor
    return dataclasses.replace(supervisor, model=load_yaml(ClassifierTrainConfig, own).model)


def train_supervisor_members(
    layout: RunLayout, count: int, device: str, cache_dir: str | None, progress: bool
) -> list[str]:
    """Checkpoints of members 1..count-1 of the run's supervisor ensemble: the run's supervisor
    (its config.yaml, with a member's own model settings, :func:`member_recipe`) at the members'
    seeds, in ``RUN/supervisor_<k>``, each trained, resumed or reused (the pipeline's
    ``--supervisors`` trains the same ones)."""
    if count > 1 and not layout.supervisor.config.is_file():
        raise KecaeError(
            f"{layout.supervisor.config} is missing: a supervisor ensemble trains the run's "
            f"supervisor at other seeds; finish the run first (`kecae demo --out {layout.root}`)"
        )
    checkpoints = []
    supervisor = load_yaml(ClassifierTrainConfig, layout.supervisor.config)
    for k in range(1, count):
        base = member_recipe(layout, k, supervisor)
        member = layout.supervisor_member(k)
        train_or_reuse(
            dataclasses.replace(
                base,
                out=str(member.folder),
                seed=member_seed(base.seed, k),
                device=device,
                cache_dir=cache_dir,
                progress=progress,
                resume=True,
                fresh=False,
            )
        )
        checkpoints.append(str(member.best))
    return checkpoints


#: KECAE settings a study's KECAE folder must share with a rerun (more steps may be added).
KECAE_REUSE_FIELDS = tuple(
    f.name for f in dataclasses.fields(KECAETrainConfig) if f.name not in KECAE_MAY_CHANGE
)


def train_kecae_or_reuse(kcfg: KECAETrainConfig) -> Path:
    """The checkpoint of a KECAE sub-run: reused when it has ``kcfg.max_steps`` steps, else
    trained (or resumed). A folder made with other settings, or trained for more steps, is
    refused."""
    from kecae.checkpoint import load_checkpoint
    from kecae.training.kecae_trainer import train_kecae

    run = KECAERun(Path(kcfg.out))
    check_sub_run(run.folder, kcfg, KECAE_REUSE_FIELDS)
    if run.last.is_file():
        done = int(load_checkpoint(run.last, kind="kecae")["step"])
        if done == kcfg.max_steps:
            return run.last
        if done > kcfg.max_steps:
            raise KecaeError(
                f"{run.last} was trained for {done} steps, more than the {kcfg.max_steps} "
                f"asked: pass the same number of steps as before, or delete {run.folder} to "
                "train it again"
            )
    train_kecae(kcfg)
    return run.last


class Progress:
    """One log line per finished sub-run: its number, what it was, its time and the total time."""

    def __init__(self, study: str, total: int) -> None:
        self.study, self.total, self.done = study, total, 0
        self.t0 = self.t = time.perf_counter()

    def step(self, what: str) -> None:
        now = time.perf_counter()
        self.done += 1
        log.info(
            "[%s %d/%d] %s (%.1f s; %.1f s in all)",
            self.study,
            self.done,
            self.total,
            what,
            now - self.t,
            now - self.t0,
        )
        self.t = now


def mean_and_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1, 0 for one value); NaN entries (e.g. AUC) are skipped."""
    from kecae.evaluation.metrics import mean_std

    finite = [x for x in values if x is not None and math.isfinite(x)]
    if not finite:
        return math.nan, math.nan
    s = mean_std(finite)
    return s["mean"], s["std"]


def percent_pm(mean: Any, std: Any) -> str:
    """``mean ± std`` of a fraction, in percent, for the studies' terminal tables."""
    if mean is None:
        return "—"
    return f"{100 * mean:6.2f} ± {100 * (std or 0):5.2f}"


def split_metric(metrics: dict[str, Any], key: str) -> float:
    """One test-split metric of a classifier run's metrics.json (NaN when absent)."""
    value = metrics["test"].get(key)
    return math.nan if value is None else float(value)


# ---------------------------------------------------------------------------------------------
# Generated folders: count pairs, take the first N
# ---------------------------------------------------------------------------------------------


def _manifest_rows(folder: GeneratedFolder) -> list[dict[str, str]]:
    if not folder.manifest.is_file():
        raise KecaeError(
            f"{folder.manifest} is missing: {folder.folder} is not a finished "
            f"`kecae generate` folder; rerun `kecae generate --out {folder.folder} "
            "...` to finish it"
        )
    with open(folder.manifest, newline="") as fh:
        return list(csv.DictReader(fh))


def generated_pairs(folder: str | Path) -> int:
    """Number of pairs (two images each) listed in a generated folder's manifest."""
    rows = _manifest_rows(GeneratedFolder(Path(folder)))
    return len({int(r["pair_index"]) for r in rows})


def first_pairs_manifest(folder: str | Path, n_pairs: int, dest: str | Path) -> Path:
    """Write ``dest``, a manifest of the first ``n_pairs`` pairs of a generated folder.

    Pair k of a generated folder depends only on (checkpoint, data, seed, k), not on how many
    pairs were asked, so the first N pairs of a larger folder are exactly the set a generation
    of N pairs would write.
    """
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}; N = 0 needs no manifest")
    folder = Path(folder).resolve()
    rows = [r for r in _manifest_rows(GeneratedFolder(folder)) if int(r["pair_index"]) < n_pairs]
    if len({int(r["pair_index"]) for r in rows}) < n_pairs:
        raise KecaeError(
            f"{folder} holds fewer than {n_pairs} pairs: generate more, or ask for fewer"
        )
    return subset_manifest(folder, rows, dest)


def generated_rows(folder: str | Path) -> list[dict[str, str]]:
    """The manifest rows of a generated folder (one per image, pair order)."""
    return _manifest_rows(GeneratedFolder(Path(folder).resolve()))


def subset_manifest(folder: str | Path, rows: list[dict[str, str]], dest: str | Path) -> Path:
    """Write ``dest``, a manifest of ``rows`` of the generated folder ``folder`` (its manifest
    rows, some left out). Paths are written relative to ``dest`` inside the run folder and
    absolute outside it (see :mod:`kecae.paths`)."""
    folder, dest = Path(folder).resolve(), Path(dest)
    if not rows:
        raise KecaeError(f"no image of {folder} is left for {dest.name}: nothing to write")
    rows = [dict(r) for r in rows]
    for r in rows:  # every path re-anchored from the generated folder to dest's folder
        for col in ("path", "recipient_path", "donor_path"):
            if r.get(col):
                r[col] = store_path(load_path(r[col], folder, legacy=True), dest.parent)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return dest


def reusable_generation(folder: GeneratedFolder, want: dict[str, Any], n_pairs: int) -> bool:
    """Whether ``folder`` is a finished generation of the same checkpoint, data and pair seed
    with at least ``n_pairs`` pairs (its first N pairs are then exactly a generation of N)."""

    if not folder.manifest.is_file():
        return False
    try:
        meta = read_meta(folder)
    except KecaeError:
        return False  # a damaged generation.json: not reusable, never an error here
    if meta is None:
        return False
    return not differences(meta, want, fields=want) and int(meta.get("pairs", 0)) >= n_pairs
