"""The generated images the studies train on, and one training fraction of the downstream study.

A study's regime is the data it works on: ``iid``, the run's own data; or ``site_bias_<b>``
(the shortcut regime), phantoms made exactly like the run's own with acquisition sites whose
marker goes with the grade in train and validation (:mod:`kecae.phantoms.site`).

A fraction keeps a share of the training patients (stratified, seeded; validation and test
whole). From that subsample alone it trains the supervisor and KECAE with the run's recipe
(at 1.0 in the i.i.d. regime the run's own are reused when their settings match), generates
pairs, and writes the parts of them the rows draw from as manifests:

- ``pairs_<r>``: the first ⌈r·n/2⌉ pairs (2 images each: r generated per real image);
- ``x1`` / ``x2``: X'1 (labelled KL-2) of the first n_KL2 pairs, X'2 (KL-0) of the first
  n_KL0 pairs, so a class of T can be replaced image for image; ``x``: both;
- ``confirmed_<r>``: images whose intended label the fraction's *supervisor* gives with at
  least the set confidence (never the judge, which evaluates), up to r per real image.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kecae import CLASS_GRADES, generation
from kecae.config import load_yaml
from kecae.data import load_image_set
from kecae.data.catalog import load_catalog, task_grades, write_catalog
from kecae.data.splits import ensure_splits, subsample_train
from kecae.errors import KecaeError
from kecae.files import file_sha256
from kecae.phantoms.site import has_marker
from kecae.results import DownstreamFraction, Rate, SiteCheck
from kecae.reuse import differences
from kecae.runfolder import DownstreamFraction as FractionFolder
from kecae.runfolder import GeneratedFolder, RunLayout
from kecae.studies.subruns import (
    at_budget,
    generated_rows,
    kecae_run_config,
    member_recipe,
    reusable_generation,
    run_recipe,
    subset_manifest,
    train_kecae_or_reuse,
    train_or_reuse,
)
from kecae.training.config import KECAE_MAY_CHANGE, ClassifierTrainConfig, member_seed

# Checkpoints, classifiers, measures and the phantom renderer (torch, SciPy, scikit-learn) are
# imported where a study uses them: the command line imports the studies for their settings.

log = logging.getLogger(__name__)


class StudySettings(Protocol):
    """What the helpers here read from a study's configuration."""

    device: str
    cache_dir: str | None
    progress: bool
    gen_seed: int
    gen_batch_size: int


# ---------------------------------------------------------------------------------------------
# Generated images: found where a finished folder of the same checkpoint holds enough, or made
# ---------------------------------------------------------------------------------------------


def find_or_generate(
    cfg: StudySettings,
    ckpt: Path,
    data: str,
    pairs: int,
    candidates: list[GeneratedFolder],
    target: GeneratedFolder,
    patient_regex: str | None = None,
) -> Path:
    """A finished generation of at least ``pairs`` pairs by ``ckpt`` from ``data``'s training
    split with the study's pair seed: the first of ``candidates`` that holds one (its first N
    pairs are exactly a generation of N), else a new one in ``target``."""

    if not ckpt.is_file():
        raise KecaeError(
            f"KECAE checkpoint {ckpt} does not exist: train KECAE first (`kecae train`) or "
            "pass --checkpoint"
        )
    want = {"checkpoint_sha256": file_sha256(ckpt), "data": data, "seed": cfg.gen_seed}
    want["oversample"] = False
    found = next((c for c in candidates if reusable_generation(c, want, pairs)), None)
    if found is not None:
        log.info("reusing the first %d pairs of %s", pairs, found.folder)
        return found.folder
    log.info("generating %d pairs into %s", pairs, target.folder)
    generation.generate(
        generation.GenerateConfig(
            checkpoint=str(ckpt),
            data=data,
            out=str(target.folder),
            pairs=pairs,
            seed=cfg.gen_seed,
            batch_size=cfg.gen_batch_size,
            device=cfg.device,
            cache_dir=cfg.cache_dir,
            progress=cfg.progress,
            patient_regex=patient_regex,
        )
    )
    return target.folder


# ---------------------------------------------------------------------------------------------
# The regime
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Regime:
    """The data one run of the study works on."""

    name: str  # iid, or site_bias_<b>
    data: str  # its data set
    site_bias: float | None = None

    @property
    def shortcut(self) -> bool:
        return self.site_bias is not None


def regime_of(site_bias: float | None, layout: RunLayout, data: str) -> Regime:
    """The i.i.d. regime (the run's data), or with ``site_bias`` phantoms made like the run's
    own (same counts, size, seed, splits: the same knees) with acquisition sites."""
    from kecae.phantoms.dataset import SPEC_NAME, make_phantoms

    if site_bias is None:
        return Regime("iid", data)
    spec_file = Path(data) / SPEC_NAME
    if not spec_file.is_file():
        raise KecaeError(
            f"--site-bias makes phantoms like the run's own, but {data} is not a `kecae "
            "phantoms` data set: leave --site-bias out for your own data"
        )
    spec = json.loads(spec_file.read_text())
    name = f"site_bias_{site_bias:g}"
    out = layout.studies.downstream_regime(name) / "data"
    counts = {int(g): int(n) for g, n in spec["counts"].items()}
    make_phantoms(
        out,
        **{f"n_kl{g}": counts.get(g, 0) for g in range(5)},
        size=int(spec["size"]),
        seed=int(spec["seed"]),
        splits=tuple(spec["splits"]),
        noise_free=bool(spec.get("noise_free", False)),
        site_bias=site_bias,
        progress=False,
    )
    return Regime(name, str(out), site_bias)


# ---------------------------------------------------------------------------------------------
# A training fraction
# ---------------------------------------------------------------------------------------------


@dataclass
class Fraction:
    """One training fraction, ready for its classifiers."""

    info: DownstreamFraction
    folder: FractionFolder
    subsets: dict[str, str]  # part of the generated images -> its manifest

    @property
    def n_balanced(self) -> int:
        """Images in one class-balanced epoch of T (the minority class bootstrapped)."""
        return 2 * max(self.info.n_kl0 or 0, self.info.n_kl2 or 0)


def subset_pairs(name: str, n_real: int, n_kl0: int, n_kl2: int) -> int:
    """Pairs a part of the generated images needs (see the module docstring)."""
    if name.startswith(("pairs_", "confirmed_")):
        return math.ceil(float(name.split("_")[1]) * n_real / 2)
    return {"x1": n_kl2, "x2": n_kl0, "x": max(n_kl0, n_kl2)}[name]


def prepare_fraction(
    cfg: Any,
    layout: RunLayout,
    regime: Regime,
    fraction: float,
    options: dict[str, Any],
    parts: set[str],
    size: int,
) -> Fraction:
    """The fraction's data set (a manifest with the training split subsampled; the regime's
    data itself at 1.0) and, when ``parts`` asks for them, its generated images."""
    folder = layout.studies.downstream(fraction, regime.name)
    info = _subsample(cfg, regime, fraction, folder, options)
    fdata, n_kl0, n_kl2 = info.data, info.n_kl0 or 0, info.n_kl2 or 0
    if not parts:
        return Fraction(info, folder, {})
    own = regime.name == "iid" and fraction == 1
    supervisors = _supervisors(cfg, layout, folder, fdata, options, own)
    supervisor = supervisors[0]  # member 0 of an ensemble: the one that confirms X'
    ckpt, reused, steps = _kecae(cfg, layout, folder, fdata, supervisors, own)
    need = {p: subset_pairs(p, info.n_train_real, n_kl0, n_kl2) for p in parts}
    pairs = min(max(need.values()), n_kl0 * n_kl2)
    candidates = [folder.generated] + ([layout.generated] if own else [])
    generated = find_or_generate(
        cfg, ckpt, fdata, pairs, candidates, folder.generated, options.get("patient_regex")
    )
    subsets, confirms = _write_subsets(cfg, folder, generated, need, supervisor, (n_kl0, n_kl2))
    info = dataclasses.replace(
        info,
        supervisor=supervisor,
        kecae=str(ckpt),
        kecae_reused=reused,
        kecae_steps=steps,
        generated=str(generated),
        generated_pairs=pairs,
        subsets={name: count for name, (_, count) in subsets.items()},
        supervisor_confirms=confirms.value if confirms else None,
        supervisor_confirms_n=confirms.n if confirms else None,
    )
    if regime.shortcut:
        info.site_check = site_check(cfg, regime, fdata, generated, options, size)
    log.info(
        "[downstream %s] fraction %g: %d real training images of %d patients; %d generated "
        "pairs (%s KECAE)",
        regime.name,
        fraction,
        info.n_train_real,
        info.n_patients,
        pairs,
        "the run's" if reused else "its own",
    )
    return Fraction(info, folder, {name: path for name, (path, _) in subsets.items()})


def _subsample(
    cfg: Any, regime: Regime, fraction: float, folder: FractionFolder, options: dict[str, Any]
) -> DownstreamFraction:
    """The fraction's data set: a manifest with the training split cut to the fraction's
    patients (the regime's data itself at 1.0), and its counts."""

    catalog = ensure_splits(load_catalog(regime.data, patient_regex=options.get("patient_regex")))
    fdata = regime.data
    if fraction < 1:
        catalog = subsample_train(catalog, fraction, cfg.subsample_seed)
        folder.folder.mkdir(parents=True, exist_ok=True)
        write_catalog(catalog, folder.data_view)
        fdata = str(folder.data_view)
    low, high = task_grades(options.get("grades") or CLASS_GRADES)
    train = catalog.select("train", (low, high))
    n_kl0 = sum(r.grade == low for r in train)
    n_kl2 = len(train) - n_kl0
    if not (n_kl0 and n_kl2):
        raise KecaeError(
            f"--train-fraction {fraction:g} keeps {n_kl0} KL-{low} and {n_kl2} KL-{high} "
            "training images: a classifier needs both; pass a larger fraction"
        )
    return DownstreamFraction(
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
        n_kl0=n_kl0,
        n_kl2=n_kl2,
    )


def _supervisors(
    cfg: Any,
    layout: RunLayout,
    folder: FractionFolder,
    fdata: str,
    options: dict[str, Any],
    own: bool,
) -> list[str]:
    """The fraction's supervisor (and the other members of the recipe's supervisor ensemble):
    the run's own where ``own`` (trained on all of the run's data), else the run's supervisor
    recipe (its config.yaml) trained on the subsample, member k at its member seed."""
    recipe = kecae_run_config(layout.root)
    count = recipe.supervisors if recipe else 1
    run_sups = [layout.supervisor_member(k) for k in range(count)]
    if own and all(m.finished for m in run_sups):
        return [str(m.best) for m in run_sups]
    run_sup = layout.supervisor
    if not run_sup.config.is_file():
        raise KecaeError(
            f"{run_sup.config} is missing: the study trains each fraction's supervisor with "
            f"the run's recipe; train the run's supervisor first (`kecae demo --out "
            f"{layout.root}` or `kecae train-classifier --out ...`)"
        )
    base = load_yaml(ClassifierTrainConfig, run_sup.config)
    for k in range(count):
        scfg = dataclasses.replace(
            member_recipe(layout, k, base),
            data=fdata,
            out=str(folder.supervisor_member(k).folder),
            seed=member_seed(base.seed, k),
            augment_dirs=[],
            device=cfg.device,
            cache_dir=cfg.cache_dir,
            progress=cfg.progress,
            resume=True,
            fresh=False,
            **options,
        )
        train_or_reuse(scfg)
    return [str(folder.supervisor_member(k).best) for k in range(count)]


def _kecae(
    cfg: Any,
    layout: RunLayout,
    folder: FractionFolder,
    fdata: str,
    supervisors: list[str],
    own: bool,
) -> tuple[Path, bool, int]:
    """The fraction's KECAE: the run's recipe trained on the subsample with its supervisor(s);
    where ``own``, the run's own KECAE when its settings and steps are those. Returns
    (checkpoint, reused, steps)."""
    from kecae.checkpoint import load_checkpoint

    base, steps = run_recipe(
        layout,
        "the study trains each fraction's KECAE with the run's recipe",
        cfg.kecae_steps,
        "--kecae-steps (the budget of each fraction's KECAE)",
    )
    want = at_budget(
        base,
        steps,
        cfg.device,
        cfg.cache_dir,
        cfg.progress,
        data=fdata,
        supervisor=supervisors[0],
        supervisor_members=supervisors[1:],
        out=str(folder.kecae.folder),
    )
    run_ckpt = layout.kecae.last
    if own and run_ckpt.is_file():
        same = not differences(
            dataclasses.asdict(base), dataclasses.asdict(want), ignore=KECAE_MAY_CHANGE
        )
        if same and int(load_checkpoint(run_ckpt, kind="kecae")["step"]) == steps:
            return run_ckpt, True, steps
    return train_kecae_or_reuse(want), False, steps


# ---------------------------------------------------------------------------------------------
# The parts the rows draw from
# ---------------------------------------------------------------------------------------------


def _write_subsets(
    cfg: Any,
    folder: FractionFolder,
    generated: Path,
    need: dict[str, int],
    supervisor: str,
    counts: tuple[int, int],
) -> tuple[dict[str, tuple[str, int]], Rate | None]:
    """Each part's manifest and image count, and the share of X' the supervisor confirms
    (None when no part filters). ``counts``: the fraction's real (KL-0, KL-2) images."""
    from kecae.evaluation.metrics import rate

    rows = generated_rows(generated)
    x1 = [r for r in rows if r["direction"] == "kl0_to_kl2"]  # pair order
    x2 = [r for r in rows if r["direction"] == "kl2_to_kl0"]
    out: dict[str, tuple[str, int]] = {}
    confirms = None
    for name, pairs in sorted(need.items()):
        if name.startswith("confirmed_"):
            p = supervisor_confidence(cfg, supervisor, generated)
            ok = {i for i, q in p.items() if q >= cfg.filter_confidence}
            confirms = rate(np.array([i in ok for i in p]))
            keep = [r for r in rows if r["image_id"] in ok][: 2 * pairs]
        elif name == "x1":
            keep = x1[: counts[1]]
        elif name == "x2":
            keep = x2[: counts[0]]
        elif name == "x":  # T's class counts, every image generated
            keep = x1[: counts[1]] + x2[: counts[0]]
        else:
            keep = [r for r in rows if int(r["pair_index"]) < pairs]
        path = subset_manifest(generated, keep, folder.generated_subset(name))
        out[name] = (str(path), len(keep))
    return out, confirms


def _generated_images(cfg: Any, generated: Path, size: int) -> Any:
    """The generated folder's images at ``size`` px (an ImageSet, grade order)."""

    return load_image_set(
        generated,
        size=size,
        split=None,
        grades=CLASS_GRADES,
        cache_dir=cfg.cache_dir,
        progress=False,
    )


def supervisor_confidence(cfg: Any, supervisor: str, generated: Path) -> dict[str, float]:
    """image id -> the supervisor's probability of the image's intended label (KL-2 for X'1,
    KL-0 for X'2), for every image of a generated folder."""
    from kecae.inference import classify, load_classifier

    model, ckpt = load_classifier(supervisor, device="cpu")
    images = _generated_images(cfg, generated, int(ckpt["model_config"]["image_size"]))
    p_kl2 = classify(model, images.images)[:, 1]
    intended = np.where(np.asarray(images.grades) == CLASS_GRADES[1], p_kl2, 1 - p_kl2)
    return {str(i): float(q) for i, q in zip(images.image_ids, intended, strict=True)}


def site_check(
    cfg: Any, regime: Regime, fdata: str, generated: Path, options: dict[str, Any], size: int
) -> SiteCheck:
    """Whether X' kept its recipient's site, and how often each label carries the marker in
    the real training images and in X' (the correlation the exchange should break)."""
    from kecae.evaluation.metrics import rate
    from kecae.phantoms.dataset import CSV_NAME
    from kecae.phantoms.oracle import read_ground_truth

    truth = read_ground_truth(Path(regime.data) / CSV_NAME)
    real = load_image_set(
        fdata,
        size=size,
        split="train",
        grades=CLASS_GRADES,
        cache_dir=cfg.cache_dir,
        progress=False,
        patient_regex=options.get("patient_regex"),
    )
    real_marked = has_marker(real.images)
    real_site = np.array([truth[i]["site"] == "B" for i in real.image_ids])
    gen = _generated_images(cfg, generated, size)
    gen_marked = has_marker(gen.images)
    rows = {r["image_id"]: r for r in generated_rows(generated)}
    recipient_b = np.array([truth[rows[i]["recipient_id"]]["site"] == "B" for i in gen.image_ids])
    real_kl2 = np.asarray(real.grades) == CLASS_GRADES[1]
    x1 = np.asarray(gen.grades) == CLASS_GRADES[1]
    return SiteCheck(
        x1_site_kept=rate((gen_marked == recipient_b)[x1]),
        x2_site_kept=rate((gen_marked == recipient_b)[~x1]),
        real_kl2_marked=rate(real_marked[real_kl2]),
        x1_marked=rate(gen_marked[x1]),
        real_kl0_marked=rate(real_marked[~real_kl2]),
        x2_marked=rate(gen_marked[~x1]),
        detector_accuracy=rate(real_marked == real_site),
    )
