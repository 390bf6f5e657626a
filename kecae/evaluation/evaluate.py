"""`kecae evaluate --run DIR`: every number about a trained KECAE, written to DIR/metrics.json.

The run folder (layout: :mod:`kecae.runfolder`; made by `kecae demo`, or by hand)::

    DIR/kecae/        KECAE training run (config.yaml, checkpoints/last.pt, log.csv)
    DIR/supervisor/   the classifier that supervised training (best.pt, metrics.json)
    DIR/judge/        an independent classifier: other architecture and seed, never used in training
    DIR/eval/         arrays behind the report's figures (examples.npz, fidelity.npz)
    DIR/metrics.json  sections: separability, plausibility, exchange_success, judge, supervisor,
                      fidelity, quality, oracle, grade_match, targets (:mod:`kecae.results`;
                      others are kept)

Exchanged pairs are drawn from the TEST split (``split="val"``: validation, for tuning), so nothing
here was seen in training. Every rate on generated images sits beside the same rule on controls:

- the **no-exchange output** (the recipient given its own key: the reconstruction X̂ for the
  paper's decoded exchange, the recipient itself for a residual or warp exchange): what the
  pipeline produces when nothing is exchanged, the rate an exchange must beat;
- the **reconstructions** X̂ (what the auto-encoder's blur alone does);
- **real held-out images**: the plausibility rule is fitted on train images, thresholded on
  validation images and checked on test images, where it must pass about its nominal share; the
  judge's own recall on real test images of the donor's grade caps what any exchange can score.

The numbers themselves are pure functions of arrays (:mod:`kecae.evaluation.metrics`); this module
runs the models and lays the numbers out.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from kecae.config import setting
from kecae.data.cache import ImageSet, load_image_set
from kecae.data.catalog import grades_of
from kecae.data.pairs import PairSampler
from kecae.device import select_device
from kecae.errors import KecaeError
from kecae.evaluation import grade_match as grade_match_metrics
from kecae.evaluation.summary import check_targets
from kecae.files import atomic_path
from kecae.results import (
    DIRECTIONS,
    KL0_TO_KL2,
    KL2_TO_KL0,
    ClassifierRates,
    ExchangeSuccess,
    Fidelity,
    FidelityDirection,
    GradeMatch,
    JudgeRates,
    JudgeSummary,
    KeyTransfer,
    Oracle,
    Plausibility,
    Quality,
    Rate,
    Separability,
    SupervisorSummary,
)
from kecae.runfolder import ClassifierRun, RunLayout, write_sections

if TYPE_CHECKING:
    import torch

    from kecae.models.autoencoder import KECAE
    from kecae.models.classifiers import Classifier

log = logging.getLogger(__name__)


class _Direction(NamedTuple):
    """One exchange direction in terms of the pair's image sets."""

    exchanged: str  # X'
    recipient: str  # the knee whose anatomy X' keeps
    donor: str  # the knee whose key X' takes
    donor_class: int  # class index of the donor's grade (1: KL-2)


_DIRECTION_IMAGES = {
    KL0_TO_KL2: _Direction("x1_ex", "x1", "x2", 1),
    KL2_TO_KL0: _Direction("x2_ex", "x2", "x1", 0),
}


#: Where ``kecae evaluate`` draws its pairs and SVM images from.
EVAL_SPLITS = ("test", "val")


@dataclass
class EvaluateConfig:
    """Evaluation of a run folder.

    ``split="val"`` (what ``kecae tune`` selects on) draws the pairs, the separability images and
    the judge's real-image control from the validation split instead of the test split. The
    plausibility rule is calibrated on validation images, so on "val" its real-image control
    passes the nominal share by construction: read ``plausibility.ratio_to_real`` there as X'
    against the nominal level, not against an independent control.
    """

    run: str = ""  # run folder (see the module docstring)
    kecae_checkpoint: str | None = None  # default: RUN/kecae/checkpoints/last.pt
    judge: str | None = None  # independent classifier checkpoint; default: RUN/judge/best.pt
    supervisor: str | None = None  # default: the one named in the KECAE run's config
    data: str | None = None  # default: the KECAE run's data set
    patient_regex: str | None = None  # folder layout: patient regex (default: the KECAE run's)
    pairs: int = 500  # test pairs to exchange
    separability_images: int = 1000  # most test images per SVM (5-fold)
    examples: int = 8  # pairs kept for the report's figure
    seed: int = 0  # seeds the test-pair sample
    split: str = setting("test", choices=EVAL_SPLITS)  # where pairs and SVM images come from
    band: float = 0.12  # half-height of the joint band, as a fraction of the image side
    plausibility_quantile: float = 0.99  # nominal pass rate of real held-out images
    device: str = "auto"  # auto / cpu / cuda
    cache_dir: str | None = None  # preprocessed-image cache


@dataclass
class _Models:
    """The trained models a run is evaluated with, and what their checkpoints say."""

    kecae: KECAE
    judge: Classifier
    judge_ckpt: dict[str, Any]
    judge_path: Path
    supervisor: Classifier
    supervisor_ckpt: dict[str, Any]
    supervisor_path: str
    image_size: int
    independent: bool  # the judge has another architecture and seed than the supervisor
    data: str  # the data set KECAE was trained on (or the one given)
    patient_regex: str | None
    grades: tuple[int, int]  # the pair KECAE exchanges (X1 of the first grade, X2 of the second)


@dataclass
class _RealImages:
    """The real images of the data set at the model's size."""

    test_kl0: ImageSet
    test_kl2: ImageSet
    train: np.ndarray  # both grades
    val: np.ndarray
    test: np.ndarray


@dataclass
class _Measured:
    """The joint measurement of each image of one set."""

    ok: np.ndarray  # a joint was found
    jsw: np.ndarray  # medial joint-space width, px (NaN when refused)
    osteophytes: np.ndarray  # a definite osteophyte (False when refused)
    joint_row: np.ndarray  # the joint line's row


def evaluate(cfg: EvaluateConfig) -> dict[str, Any]:
    """Measure the run in ``cfg.run``; write its sections of metrics.json (and the report's
    arrays in RUN/eval/) and return the whole merged metrics.json."""
    from kecae.inference import classifier_features

    layout = RunLayout(cfg.run)
    device = select_device(cfg.device)

    # the models, and the real images of the data set they were trained on
    models = _load_models(cfg, layout, device)
    real = _real_images(cfg, models)

    # test pairs, and every image set the rules are applied to: inputs X1 (KL-0) and X2 (KL-2),
    # reconstructions, exchanges and the no-exchange controls
    n_pairs = min(cfg.pairs, len(real.test_kl0) * len(real.test_kl2))
    ij = PairSampler(len(real.test_kl0), len(real.test_kl2), n_pairs, seed=cfg.seed).pairs()
    images = {
        "x1": np.asarray(real.test_kl0.images[ij[:, 0]], np.float32),
        "x2": np.asarray(real.test_kl2.images[ij[:, 1]], np.float32),
    }
    images.update(_pair_outputs(models.kecae, images["x1"], images["x2"], device))
    masks = {name: images.pop(name) for name in ("mask1", "mask2") if name in images}
    sides = {
        "x1": [real.test_kl0.sides[i] for i in ij[:, 0]],
        "x2": [real.test_kl2.sides[j] for j in ij[:, 1]],
    }

    # the paper's separability of the latents (Fig. 3)
    separability = _separability(models, real, cfg, device)

    # the classifiers' calls (class index 1 = KL-2) on every set; the judge on real test images
    judge_summary = _judge_summary(models, real, device)
    calls = {
        "judge": _calls(models.judge, images, device),
        "supervisor": _calls(models.supervisor, images, device),
    }

    # plausibility: the joint is found and the judge's features look like real images'
    measured = {name: _measure(imgs, sides[name[:2]]) for name, imgs in images.items()}
    measured_real = {
        "kl0": _measure(np.asarray(real.test_kl0.images), list(real.test_kl0.sides)),
        "kl2": _measure(np.asarray(real.test_kl2.images), list(real.test_kl2.sides)),
    }
    features = {
        name: classifier_features(models.judge, imgs, device=device)
        for name, imgs in images.items()
    }
    for name in ("train", "val", "test"):
        features[f"real_{name}"] = classifier_features(
            models.judge, getattr(real, name), device=device
        )
    found = {name: m.ok for name, m in measured.items()}
    found["real_test"] = np.r_[measured_real["kl0"].ok, measured_real["kl2"].ok]
    plausibility, plausible = _plausibility(features, found, cfg.plausibility_quantile)

    # exchange success: the donor's grade on X', beside its controls
    recall = {0: judge_summary.recall_kl0, 1: judge_summary.recall_kl2}
    exchange = _exchange_success(calls, plausible, recall, n_pairs, models.independent)

    # ground-truth fidelity (the measurement is built for the phantoms' geometry)
    fidelity: Fidelity | None = None
    fidelity_arrays: dict[str, np.ndarray] = {}
    if _is_phantom_data(models.data):
        fidelity, fidelity_arrays = _fidelity(
            measured, measured_real, images, models.image_size, cfg.band
        )

    # image quality
    quality = _quality(images, features, judge_summary.arch, cfg.seed)
    quality.edit_mask_area_kl0_to_kl2 = grade_match_metrics.mask_area(masks.get("mask1"))
    quality.edit_mask_area_kl2_to_kl0 = grade_match_metrics.mask_area(masks.get("mask2"))

    # on phantoms, every rule again on perfect exchanges rendered from the ground truth: the
    # ceiling a generator can reach with this judge and this measurement
    oracle: Oracle | None = None
    oracle_sets: tuple[dict[str, _Measured], dict[str, np.ndarray]] | None = None
    if fidelity is not None:
        oracle, oracle_sets = _oracle(
            models,
            real,
            ij,
            cfg,
            device,
            images,
            sides,
            calls,
            measured,
            measured_real,
            features,
            found,
            recall,
        )

    # on phantoms: X' against real knees of its grade, the judge against the oracle's X'
    grade_match: GradeMatch | None = None
    if fidelity is not None:
        grade_match = _grade_match(
            measured, measured_real, calls["judge"], fidelity_arrays, oracle_sets, cfg.seed
        )

    # the sections in the order metrics.json has them, then the targets they meet
    sections: dict[str, Any] = {
        Separability.NAME: separability.to_dict(),
        Plausibility.NAME: plausibility.to_dict(),
        ExchangeSuccess.NAME: exchange.to_dict(),
        JudgeSummary.NAME: judge_summary.to_dict(),
        SupervisorSummary.NAME: _supervisor_summary(models).to_dict(),
    }
    if fidelity is not None:
        sections[Fidelity.NAME] = fidelity.to_dict()
    sections[Quality.NAME] = quality.to_dict()
    if oracle is not None:
        sections[Oracle.NAME] = oracle.to_dict()
    if grade_match is not None:
        sections[GradeMatch.NAME] = grade_match.to_dict()
    targets = check_targets(sections, oracle=sections.get(Oracle.NAME))
    sections["targets"] = {name: t.to_dict() for name, t in targets.items()}

    # the arrays behind the report's figures, then metrics.json
    _save_report_arrays(layout, images, measured, min(cfg.examples, n_pairs), fidelity_arrays)
    return write_sections(layout.root, sections)


# ---------------------------------------------------------------------------------------------
# Models and images
# ---------------------------------------------------------------------------------------------


def _load_models(cfg: EvaluateConfig, layout: RunLayout, device: torch.device) -> _Models:
    """The KECAE model, judge and supervisor with their checkpoints, checked for one image size."""
    from kecae.inference import load_classifier, load_kecae

    model, kecae_ckpt = load_kecae(cfg.kecae_checkpoint or str(layout.kecae.last), device)
    train_config = kecae_ckpt["train_config"]
    sup_path = cfg.supervisor or train_config.get("supervisor") or str(layout.supervisor.best)
    judge_path = Path(cfg.judge or layout.judge.best)
    size = int(kecae_ckpt["model_config"]["image_size"])
    judge, judge_ckpt = load_classifier(str(judge_path), device)
    supervisor, sup_ckpt = load_classifier(sup_path, device)
    grades = grades_of(train_config)
    for name, ckpt in (("judge", judge_ckpt), ("supervisor", sup_ckpt)):
        if ckpt["model_config"]["image_size"] != size:
            raise KecaeError(
                f"the {name} works at {ckpt['model_config']['image_size']} px but "
                f"KECAE at {size} px: train it with --image-size {size}"
            )
        if (told := grades_of(ckpt.get("train_config"))) != grades:
            raise KecaeError(
                f"the {name} tells KL-{told[0]} from KL-{told[1]} but KECAE exchanges "
                f"KL-{grades[0]} and KL-{grades[1]}: train it with --grades {grades[0]} {grades[1]}"
            )
    independent = judge_ckpt["model_config"]["arch"] != sup_ckpt["model_config"][
        "arch"
    ] and judge_ckpt["train_config"].get("seed") != sup_ckpt["train_config"].get("seed")
    if not independent:
        log.warning(
            "the judge %s has the supervisor's architecture or seed: it is not independent",
            judge_path,
        )
    return _Models(
        kecae=model,
        judge=judge,
        judge_ckpt=judge_ckpt,
        judge_path=judge_path,
        supervisor=supervisor,
        supervisor_ckpt=sup_ckpt,
        supervisor_path=sup_path,
        image_size=size,
        independent=independent,
        data=cfg.data or train_config["data"],
        patient_regex=cfg.patient_regex or train_config.get("patient_regex"),
        grades=grades,
    )


def _real_images(cfg: EvaluateConfig, models: _Models) -> _RealImages:
    def load(split: str, grade: int) -> ImageSet:
        return load_image_set(
            models.data,
            size=models.image_size,
            split=split,
            grades=(grade,),
            cache_dir=cfg.cache_dir,
            progress=False,
            patient_regex=models.patient_regex,
        )

    # "test" unless cfg.split says "val" (kecae tune): every *test* set below is then the
    # validation split, and the plausibility control passes its nominal share by construction
    low, high = models.grades
    test_kl0, test_kl2 = load(cfg.split, low), load(cfg.split, high)
    return _RealImages(
        test_kl0=test_kl0,
        test_kl2=test_kl2,
        train=np.concatenate([load("train", g).images for g in models.grades]),
        val=np.concatenate([load("val", g).images for g in models.grades]),
        test=np.concatenate([test_kl0.images, test_kl2.images]),
    )


def _pair_outputs(
    model: KECAE, x1: np.ndarray, x2: np.ndarray, device: torch.device
) -> dict[str, np.ndarray]:
    """Eval-mode outputs of aligned pairs, each (n, S, S): reconstructions, exchanges and the
    no-exchange controls ``x1_self`` = exchange(X1, X1)'s X'1 and ``x2_self`` likewise; and
    ``mask1`` / ``mask2``, the edit masks of X'1 / X'2, from a model that has them."""
    from kecae.inference import batched

    def outputs(a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        out = model(a, b)
        images = {
            "x1_hat": out.x1_hat[:, 0],
            "x2_hat": out.x2_hat[:, 0],
            "x1_ex": out.x1_ex[:, 0],
            "x2_ex": out.x2_ex[:, 0],
            "x1_self": model.exchange(a, a)[0][:, 0],
            "x2_self": model.exchange(b, b)[0][:, 0],
        }
        for name in ("mask1", "mask2"):  # the edit masks of X'1 / X'2, when the model has them
            if (mask := getattr(out, name, None)) is not None:
                images[name] = mask[:, 0]
        return images

    return batched(outputs, x1, x2, batch_size=64, device=device)


def _calls(
    classifier: Classifier, images: dict[str, np.ndarray], device: torch.device
) -> dict[str, np.ndarray]:
    """The classifier's class index (1 = KL-2) for every image of every set."""
    from kecae.inference import classify

    return {
        name: (classify(classifier, imgs, device=device)[:, 1] >= 0.5).astype(int)
        for name, imgs in images.items()
    }


def _measure(images: np.ndarray, sides: list[str | None]) -> _Measured:
    """The joint measurement of each image; a refused one counts as 'no osteophyte'."""
    from kecae.phantoms.measure import measure_many

    m = measure_many(images, sides)
    return _Measured(
        ok=m["ok"].astype(bool),
        jsw=m["jsw_medial_px"].astype(np.float64),
        osteophytes=m["osteophytes"].astype(bool) & m["ok"].astype(bool),
        joint_row=m["joint_row"].astype(np.float64),
    )


def _is_phantom_data(data: str) -> bool:
    from kecae.phantoms.dataset import CSV_NAME

    p = Path(data)
    gt = p / CSV_NAME if p.is_dir() else p
    if not gt.is_file():
        return False
    with open(gt) as fh:
        return "jsw_medial_px" in fh.readline()


# ---------------------------------------------------------------------------------------------
# The sections
# ---------------------------------------------------------------------------------------------


def _separability(
    models: _Models, real: _RealImages, cfg: EvaluateConfig, device: torch.device
) -> Separability:
    """The paper's Fig. 3 metric: SVM-RBF accuracy on hK and on hN of test images, beside the same
    SVM on the judge's penultimate features of the same images (what a vector made to tell the
    grades reaches on these images: the phantom grades overlap, so no key can reach 100 %)."""
    from kecae.evaluation import metrics
    from kecae.inference import classifier_features, encode

    rng = np.random.default_rng(cfg.seed)
    half = cfg.separability_images // 2
    pick0 = np.sort(rng.permutation(len(real.test_kl0.images))[:half])
    pick2 = np.sort(rng.permutation(len(real.test_kl2.images))[:half])
    imgs = np.concatenate(
        [np.asarray(real.test_kl0.images[pick0]), np.asarray(real.test_kl2.images[pick2])]
    )
    labels = np.r_[np.zeros(len(pick0), int), np.ones(len(pick2), int)]
    hk, hn = encode(models.kecae, imgs, device=device)
    # 5 folds, fewer when a grade has fewer test images (a small data set); none below 2
    folds = min(5, len(pick0), len(pick2))
    if folds < 2:
        log.warning(
            "separability not measured: the %s split has %d and %d images of the two grades "
            "(an SVM fold needs 2 of each)",
            cfg.split,
            len(pick0),
            len(pick2),
        )
        none = {"mean": math.nan, "std": math.nan}
        key = nonkey = judge = none
    else:
        key = metrics.svm_separability(hk, labels, folds=folds, seed=cfg.seed)
        nonkey = metrics.svm_separability(hn, labels, folds=folds, seed=cfg.seed)
        judge = metrics.svm_separability(
            classifier_features(models.judge, imgs, device=device),
            labels,
            folds=folds,
            seed=cfg.seed,
        )
    return Separability(
        svm_hk_accuracy=key["mean"],
        svm_hk_accuracy_std=key["std"],
        svm_hn_accuracy=nonkey["mean"],
        svm_hn_accuracy_std=nonkey["std"],
        svm_judge_features_accuracy=judge["mean"],
        svm_judge_features_accuracy_std=judge["std"],
        n=len(labels),
        folds=folds,
        latent_dim=int(hn.shape[1]),
        key_dim=int(hk.shape[1]),
    )


def _judge_summary(models: _Models, real: _RealImages, device: torch.device) -> JudgeSummary:
    """The judge's accuracy, confusion and per-grade recall on every real test image."""
    from kecae.evaluation import metrics
    from kecae.inference import classify

    y = np.r_[np.zeros(len(real.test_kl0.images), int), np.ones(len(real.test_kl2.images), int)]
    p = classify(models.judge, real.test, device=device)[:, 1]
    m = metrics.classification_metrics(y, (p >= 0.5).astype(int), p)
    (tn, fp), (fn, tp) = m["confusion"]
    return JudgeSummary(
        arch=models.judge_ckpt["model_config"]["arch"],
        checkpoint=str(models.judge_path),
        seed=models.judge_ckpt["train_config"].get("seed"),
        test_accuracy=m["accuracy"],
        n_test=m["n"],
        confusion=m["confusion"],
        auc=m["auc"],
        recall_kl2=tp / max(tp + fn, 1),
        recall_kl0=tn / max(tn + fp, 1),
    )


def _supervisor_summary(models: _Models) -> SupervisorSummary:
    run_metrics = ClassifierRun(Path(models.supervisor_path).parent).metrics
    return SupervisorSummary(
        arch=models.supervisor_ckpt["model_config"]["arch"],
        checkpoint=str(models.supervisor_path),
        seed=models.supervisor_ckpt["train_config"].get("seed"),
        test_accuracy=(
            json.loads(run_metrics.read_text())["test_accuracy"] if run_metrics.exists() else None
        ),
    )


def _plausibility(
    features: dict[str, np.ndarray], found: dict[str, np.ndarray], quantile: float
) -> tuple[Plausibility, dict[str, np.ndarray]]:
    """Fit on train, threshold on validation, report on test and on every generated set.

    Plausible = the joint measurement finds a joint AND the judge's features pass the calibrated
    Mahalanobis rule. Returns the section and the per-image verdict of each set."""
    from kecae.evaluation import metrics

    rule = metrics.fit_plausibility(features["real_train"], features["real_val"], quantile)
    sets = ("real_test", "x1_ex", "x2_ex", "x1_hat", "x2_hat", "x1_self", "x2_self")
    plausible = {name: rule.accept(features[name]) & found[name] for name in sets}
    x_ex = np.r_[plausible["x1_ex"], plausible["x2_ex"]]
    real_test = Rate.of(plausible["real_test"])
    x_ex_rate = Rate.of(x_ex)
    train = features["real_train"]
    section = Plausibility(
        quantile=quantile,
        n_fit=rule.n_fit,
        n_calibration=rule.n_calibration,
        real_test=real_test,
        x_ex=x_ex_rate,
        x_ex_kl0_to_kl2=Rate.of(plausible["x1_ex"]),
        x_ex_kl2_to_kl0=Rate.of(plausible["x2_ex"]),
        recon=Rate.of(np.r_[plausible["x1_hat"], plausible["x2_hat"]]),
        control=Rate.of(np.r_[plausible["x1_self"], plausible["x2_self"]]),
        features_only_real_test=Rate.of(rule.accept(features["real_test"])),
        features_only_x_ex=Rate.of(rule.accept(np.r_[features["x1_ex"], features["x2_ex"]])),
        ratio_to_real=(x_ex_rate.value / real_test.value if real_test.value > 0 else math.nan),
        # k-NN manifold precision against the training images, a second, assumption-free view
        knn_real_test=Rate.of(metrics.knn_precision(train, features["real_test"])),
        knn_x_ex=Rate.of(metrics.knn_precision(train, np.r_[features["x1_ex"], features["x2_ex"]])),
        knn_recon=Rate.of(
            metrics.knn_precision(train, np.r_[features["x1_hat"], features["x2_hat"]])
        ),
        rule=(
            f"plausible = the joint measurement finds a joint AND the judge's penultimate "
            f"features lie within the Mahalanobis distance (Ledoit-Wolf fit on {rule.n_fit} "
            f"real training images) that {100 * quantile:g} % of {rule.n_calibration} real "
            f"validation images pass; real_test is the same rule on real test images (the "
            f"control); knn_* = k-NN manifold precision (k = 3) against the training images"
        ),
    )
    return section, plausible


def _exchange_success(
    calls: dict[str, dict[str, np.ndarray]],
    plausible: dict[str, np.ndarray],
    recall: dict[int, float],
    n_pairs: int,
    independent: bool,
) -> ExchangeSuccess:
    """Rates of the donor's grade on X', with the no-exchange and reconstruction controls."""
    judge, supervisor = {}, {}
    for direction, (exchanged, _recipient, donor, donor_class) in _DIRECTION_IMAGES.items():
        reconstructed = exchanged.replace("_ex", "_hat")
        unexchanged = exchanged.replace("_ex", "_self")
        rates = {}
        for who, call in calls.items():
            raw = call[exchanged] == donor_class
            control = call[unexchanged] == donor_class
            rates[who] = ClassifierRates(
                raw=Rate.of(raw),
                control=Rate.of(control),
                recon=Rate.of(call[reconstructed] == donor_class),
                lift=float(raw.mean() - control.mean()),
            )
        raw = calls["judge"][exchanged] == donor_class
        judge[direction] = JudgeRates(
            **vars(rates["judge"]),
            success=Rate.of(raw & plausible[exchanged]),
            agreement=Rate.of(calls["judge"][exchanged] == calls["judge"][donor]),
            agreement_control=Rate.of(calls["judge"][unexchanged] == calls["judge"][donor]),
            relative=(
                float(raw.mean() / recall[donor_class]) if recall[donor_class] > 0 else math.nan
            ),
        )
        supervisor[direction] = rates["supervisor"]
    return ExchangeSuccess(
        n=n_pairs,
        judge_independent=independent,
        judge=judge,
        supervisor=supervisor,
        rule="success = the judge calls the donor's grade AND the image is plausible (see the "
        "plausibility section); *_raw = label only; agreement = the judge gives X' the "
        "grade it gives the donor itself; control = the same rule on the no-exchange output "
        "(the recipient given its own key); recon = on X̂; lift = label-only rate minus the "
        "control; relative = label-only rate / the judge's recall on real test images of "
        "the donor's grade",
    )


def _fidelity(
    measured: dict[str, _Measured],
    measured_real: dict[str, _Measured],
    images: dict[str, np.ndarray],
    size: int,
    band_fraction: float,
) -> tuple[Fidelity, dict[str, np.ndarray]]:
    """Ground truth on phantoms: did X' take the donor's joint space and osteophytes, and keep
    the recipient's anatomy elsewhere? Refused measurements of X' count as failures. Returns the
    section and the per-pair arrays of the report's histograms."""
    from kecae.evaluation import metrics

    directions: dict[str, FidelityDirection] = {}
    arrays: dict[str, np.ndarray] = {}
    for direction, (exchanged, recipient, donor, _cls) in _DIRECTION_IMAGES.items():
        refused = ~measured[exchanged].ok
        vs_real = metrics.transfer_with_refusals(
            measured[recipient].jsw, measured[exchanged].jsw, measured[donor].jsw, refused
        )
        vs_recon = metrics.transfer_with_refusals(
            measured[f"{recipient}_hat"].jsw,
            measured[exchanged].jsw,
            measured[f"{donor}_hat"].jsw,
            refused,
        )
        transfer = _key_transfer(vs_real)
        recon_transfer = _key_transfer(vs_recon)
        # non-key anatomy: SSIM outside the joint band of the recipient
        band = band_fraction * size
        ssim = np.array(
            [
                metrics.masked_ssim(a, b, metrics.joint_band_mask(a.shape, row, band))
                if np.isfinite(row)
                else np.nan
                for a, b, row in zip(
                    images[recipient], images[exchanged], measured[recipient].joint_row
                )
            ]
        )
        directions[direction] = FidelityDirection(
            key_transfer_median=transfer.median,
            key_transfer_iqr=transfer.iqr,
            key_transfer_success_rate=transfer.success_rate,
            key_transfer_n=transfer.n,
            key_transfer_failed=transfer.failed,
            key_transfer_excluded=transfer.excluded,
            recon_key_transfer_median=recon_transfer.median,
            recon_key_transfer_failed=recon_transfer.failed,
            nonkey_ssim_median=_nanmedian(ssim),
            refusal_rate_x_ex=float(refused.mean()),
            jsw_x_ex_median=(
                float(np.nanmedian(measured[exchanged].jsw))
                if measured[exchanged].ok.any()
                else math.nan
            ),
        )
        arrays[f"key_transfer_{direction}"] = vs_real
        arrays[f"recon_key_transfer_{direction}"] = vs_recon
        arrays[f"nonkey_ssim_{direction}"] = ssim
    both_ssim = np.r_[arrays["nonkey_ssim_kl0_to_kl2"], arrays["nonkey_ssim_kl2_to_kl0"]]
    osteo = {name: m.osteophytes for name, m in measured.items()}
    osteo_real = {grade: m.osteophytes for grade, m in measured_real.items()}
    # conditional views: X'1 of a donor with osteophytes gains them; X'2 of a recipient with
    # osteophytes given a clean donor's key loses them
    gains = osteo["x2"]
    losses = osteo["x2"] & measured["x1"].ok & ~osteo["x1"]
    rates = {
        "real_kl0": Rate.of(osteo_real["kl0"]),
        "real_kl2": Rate.of(osteo_real["kl2"]),
        "x1_ex": Rate.of(osteo["x1_ex"]),
        "x2_ex": Rate.of(osteo["x2_ex"]),
    }
    section = Fidelity(
        n=len(measured["x1"].ok),
        directions=directions,
        nonkey_ssim_median=_nanmedian(both_ssim),
        jsw_x1_median=float(np.nanmedian(measured["x1"].jsw)),
        jsw_x2_median=float(np.nanmedian(measured["x2"].jsw)),
        refusal_rate=float(1 - np.r_[measured["x1_ex"].ok, measured["x2_ex"].ok].mean()),
        refusal_rate_real=float(1 - np.r_[measured_real["kl0"].ok, measured_real["kl2"].ok].mean()),
        refusal_rate_recon=float(1 - np.r_[measured["x1_hat"].ok, measured["x2_hat"].ok].mean()),
        osteophyte_rate_real_kl0=rates["real_kl0"],
        osteophyte_rate_real_kl2=rates["real_kl2"],
        osteophyte_rate_x1_ex=rates["x1_ex"],
        osteophyte_rate_x2_ex=rates["x2_ex"],
        osteophyte_rate_x1_self=Rate.of(osteo["x1_self"]),
        osteophyte_rate_x2_self=Rate.of(osteo["x2_self"]),
        osteophyte_gap_kl0_to_kl2=abs(rates["x1_ex"].value - rates["real_kl2"].value),
        osteophyte_gap_kl2_to_kl0=abs(rates["x2_ex"].value - rates["real_kl0"].value),
        osteophyte_transfer_rate=Rate.of(osteo["x1_ex"][gains]),
        osteophyte_removal_rate=Rate.of(~osteo["x2_ex"][losses]),
    )
    return section, arrays


def _oracle(
    models: _Models,
    real: _RealImages,
    ij: np.ndarray,
    cfg: EvaluateConfig,
    device: torch.device,
    images: dict[str, np.ndarray],
    sides: dict[str, list[str | None]],
    calls: dict[str, dict[str, np.ndarray]],
    measured: dict[str, _Measured],
    measured_real: dict[str, _Measured],
    features: dict[str, np.ndarray],
    found: dict[str, np.ndarray],
    recall: dict[int, float],
) -> tuple[Oracle, tuple[dict[str, _Measured], dict[str, np.ndarray]]]:
    """The plausibility, exchange-success and fidelity sections computed with perfect exchanges
    in place of X'1 and X'2 (everything else, controls included, unchanged); and the joint
    measurements and judge's calls of every set with the perfect exchanges in."""
    from kecae.inference import classifier_features
    from kecae.phantoms.dataset import CSV_NAME
    from kecae.phantoms.oracle import oracle_images, read_ground_truth

    data = Path(models.data)
    rows = read_ground_truth(data / CSV_NAME if data.is_dir() else data)
    ids0 = [real.test_kl0.image_ids[i] for i in ij[:, 0]]
    ids2 = [real.test_kl2.image_ids[j] for j in ij[:, 1]]
    perfect = {
        "x1_ex": oracle_images(rows, ids0, ids2, models.image_size),
        "x2_ex": oracle_images(rows, ids2, ids0, models.image_size),
    }
    o_images = {**images, **perfect}
    o_calls = {
        who: {**c, **_calls(clf, perfect, device)}
        for (who, c), clf in zip(calls.items(), (models.judge, models.supervisor), strict=True)
    }
    o_measured = {**measured, **{k: _measure(v, sides[k[:2]]) for k, v in perfect.items()}}
    o_features = {
        **features,
        **{k: classifier_features(models.judge, v, device=device) for k, v in perfect.items()},
    }
    o_found = {**found, **{k: o_measured[k].ok for k in perfect}}
    plausibility, plausible = _plausibility(o_features, o_found, cfg.plausibility_quantile)
    exchange = _exchange_success(o_calls, plausible, recall, len(ij), models.independent)
    fidelity, _ = _fidelity(o_measured, measured_real, o_images, models.image_size, cfg.band)
    section = Oracle(
        exchange_success=exchange,
        plausibility=plausibility,
        fidelity=fidelity,
        description="the same test pairs, each X' replaced by the recipient rendered from its "
        "ground truth with the donor's key features (joint-space widths, osteophytes, "
        "severity): what a perfect key exchange would score",
    )
    return section, (o_measured, o_calls["judge"])


def _grade_match(
    measured: dict[str, _Measured],
    measured_real: dict[str, _Measured],
    judge: dict[str, np.ndarray],
    fidelity_arrays: dict[str, np.ndarray],
    oracle_sets: tuple[dict[str, _Measured], dict[str, np.ndarray]] | None,
    seed: int,
) -> GradeMatch:
    """The ``grade_match`` section (:mod:`kecae.evaluation.grade_match`)."""
    gm = grade_match_metrics
    transfer = {d: fidelity_arrays[f"key_transfer_{d}"] for d in DIRECTIONS}
    numbers = gm.grade_match_numbers(measured, measured_real, judge, transfer, oracle_sets, seed)
    return GradeMatch.from_dict(
        {
            **numbers,
            "overshoot_at": gm.OVERSHOOT_AT,
            "joint_tolerance_px": gm.JOINT_TOLERANCE_PX,
            "rule": "jsw = X''s medial joint-space widths against those of real test knees of "
            "the intended grade (X'1: KL-2, X'2: KL-0): two-sample Kolmogorov-Smirnov "
            "statistic and p-value, Wasserstein distance in px; jsw_control = the same for two "
            "random halves of those real knees; jsw_oracle = for the oracle's X' of the same "
            "pairs. judge_intended = the judge calls X' its intended grade; caricature_excess "
            "= that minus the same rate on the oracle's X'. overshoot = key transfer above "
            f"{gm.OVERSHOOT_AT:g} (past the donor by more than half the gap). failures: each X' "
            "whose judge's call differs from its call on the donor, by what the measurement "
            "sees (refused; an osteophyte the donor lacks / has; the joint narrower / wider "
            "than the donor's by more than half the recipient-donor gap, at least "
            f"{gm.JOINT_TOLERANCE_PX:g} px; other)",
        }
    )


def _key_transfer(ratios: np.ndarray) -> KeyTransfer:
    from kecae.evaluation import metrics

    s = metrics.failure_aware_summary(ratios)
    return KeyTransfer(
        median=s["median"],
        iqr=s["iqr"],
        success_rate=s["success_rate"],
        n=s["n"],
        failed=s["n_failed"],
        excluded=s["n_excluded"],
    )


def _nanmedian(values: np.ndarray) -> float:
    return float(np.nanmedian(values)) if np.isfinite(values).any() else math.nan


def _quality(
    images: dict[str, np.ndarray], features: dict[str, np.ndarray], judge_arch: str, seed: int
) -> Quality:
    """PSNR / SSIM of the reconstructions, and Fréchet distances in the judge's feature space."""
    from kecae.evaluation import metrics

    x = np.r_[images["x1"], images["x2"]]
    x_hat = np.r_[images["x1_hat"], images["x2_hat"]]
    psnr, ssim = metrics.psnr_batch(x, x_hat), metrics.ssim_batch(x, x_hat)
    generated = np.r_[features["x1_ex"], features["x2_ex"]]
    return Quality(
        recon_psnr=psnr["mean"],
        recon_psnr_std=psnr["std"],
        recon_ssim=ssim["mean"],
        recon_ssim_std=ssim["std"],
        n=psnr["n"],
        frechet=metrics.frechet_distance(features["real_test"], generated),
        frechet_recon=metrics.frechet_distance(
            features["real_test"], np.r_[features["x1_hat"], features["x2_hat"]]
        ),
        frechet_real_floor=metrics.frechet_real_floor(features["real_train"], seed=seed),
        frechet_feature=f"{judge_arch} penultimate features",
        frechet_n_real=len(features["real_test"]),
        frechet_n_generated=len(generated),
    )


# ---------------------------------------------------------------------------------------------
# The arrays behind the report's figures
# ---------------------------------------------------------------------------------------------


def _save_report_arrays(
    layout: RunLayout,
    images: dict[str, np.ndarray],
    measured: dict[str, _Measured],
    examples: int,
    fidelity_arrays: dict[str, np.ndarray],
) -> None:
    """RUN/eval/examples.npz (the first pairs, their outputs and joint measurements) and, on
    phantoms, RUN/eval/fidelity.npz (the per-pair fidelity arrays)."""
    arrays = {
        name: images[name][:examples] for name in ("x1", "x2", "x1_hat", "x2_hat", "x1_ex", "x2_ex")
    }
    for name in ("x1", "x1_ex", "x2", "x2_ex"):
        arrays[f"jsw_{name}"] = measured[name].jsw[:examples]
        arrays[f"joint_row_{name}"] = measured[name].joint_row[:examples]
    layout.eval.folder.mkdir(parents=True, exist_ok=True)
    _save_npz(layout.eval.examples, arrays)
    if fidelity_arrays:
        _save_npz(layout.eval.fidelity, fidelity_arrays)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        float32: dict[str, Any] = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
        np.savez_compressed(tmp, **float32)
