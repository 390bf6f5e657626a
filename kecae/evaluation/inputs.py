"""What `kecae evaluate` measures: the run's models (checked for one image size and one grade
pair), the real images of its data set, the generated images of the test pairs, the classifiers'
calls and the joint measurement of every image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from kecae.data.cache import ImageSet, load_image_set
from kecae.data.catalog import grades_of
from kecae.data.pairs import PairSampler
from kecae.errors import KecaeError
from kecae.evaluation.config import EvaluateConfig
from kecae.inference import batched, classifier_features, classify, load_classifier, load_kecae
from kecae.phantoms.dataset import CSV_NAME
from kecae.phantoms.measure import measure_many
from kecae.results import (
    KL0_TO_KL2,
    KL2_TO_KL0,
)
from kecae.runfolder import RunLayout

if TYPE_CHECKING:
    import torch

    from kecae.models.autoencoder import KECAE
    from kecae.models.classifiers import Classifier


log = logging.getLogger(__name__)


class Direction(NamedTuple):
    """One exchange direction in terms of the pair's image sets."""

    exchanged: str  # X'
    recipient: str  # the knee whose anatomy X' keeps
    donor: str  # the knee whose key X' takes
    donor_class: int  # class index of the donor's grade (1: KL-2)


DIRECTION_IMAGES = {
    KL0_TO_KL2: Direction("x1_ex", "x1", "x2", 1),
    KL2_TO_KL0: Direction("x2_ex", "x2", "x1", 0),
}


@dataclass
class Models:
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
class RealImages:
    """The real images of the data set at the model's size."""

    test_kl0: ImageSet
    test_kl2: ImageSet
    train: np.ndarray  # both grades
    val: np.ndarray
    test: np.ndarray


@dataclass
class Measured:
    """The joint measurement of each image of one set."""

    ok: np.ndarray  # a joint was found
    jsw: np.ndarray  # medial joint-space width, px (NaN when refused)
    osteophytes: np.ndarray  # a definite osteophyte (False when refused)
    joint_row: np.ndarray  # the joint line's row


def load_models(cfg: EvaluateConfig, layout: RunLayout, device: torch.device) -> Models:
    """The KECAE model, judge and supervisor with their checkpoints, checked for one image size."""

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
    return Models(
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


def real_images(cfg: EvaluateConfig, models: Models) -> RealImages:
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
    return RealImages(
        test_kl0=test_kl0,
        test_kl2=test_kl2,
        train=np.concatenate([load("train", g).images for g in models.grades]),
        val=np.concatenate([load("val", g).images for g in models.grades]),
        test=np.concatenate([test_kl0.images, test_kl2.images]),
    )


def pair_outputs(
    model: KECAE, x1: np.ndarray, x2: np.ndarray, device: torch.device
) -> dict[str, np.ndarray]:
    """Eval-mode outputs of aligned pairs, each (n, S, S): reconstructions, exchanges and the
    no-exchange controls ``x1_self`` = exchange(X1, X1)'s X'1 and ``x2_self`` likewise; and
    ``mask1`` / ``mask2``, the edit masks of X'1 / X'2, from a model that has them."""

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


def calls_of(
    classifier: Classifier, images: dict[str, np.ndarray], device: torch.device
) -> dict[str, np.ndarray]:
    """The classifier's class index (1 = KL-2) for every image of every set."""

    return {
        name: (classify(classifier, imgs, device=device)[:, 1] >= 0.5).astype(int)
        for name, imgs in images.items()
    }


def measure_joints(images: np.ndarray, sides: list[str | None]) -> Measured:
    """The joint measurement of each image; a refused one counts as 'no osteophyte'."""

    m = measure_many(images, sides)
    return Measured(
        ok=m["ok"].astype(bool),
        jsw=m["jsw_medial_px"].astype(np.float64),
        osteophytes=m["osteophytes"].astype(bool) & m["ok"].astype(bool),
        joint_row=m["joint_row"].astype(np.float64),
    )


def is_phantom_data(data: str) -> bool:

    p = Path(data)
    gt = p / CSV_NAME if p.is_dir() else p
    if not gt.is_file():
        return False
    with open(gt) as fh:
        return "jsw_medial_px" in fh.readline()


def test_pairs(
    cfg: EvaluateConfig, models: Models, real: RealImages, device: torch.device
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, list[str | None]]]:
    """The test pairs (rows of (KL-0, KL-2) image indices) and every image set the rules are
    applied to: inputs X1 (KL-0) and X2 (KL-2), reconstructions, exchanges and the no-exchange
    controls; the edit masks when the model has them; the knees' sides."""
    n_pairs = min(cfg.pairs, len(real.test_kl0) * len(real.test_kl2))
    ij = PairSampler(len(real.test_kl0), len(real.test_kl2), n_pairs, seed=cfg.seed).pairs()
    images = {
        "x1": np.asarray(real.test_kl0.images[ij[:, 0]], np.float32),
        "x2": np.asarray(real.test_kl2.images[ij[:, 1]], np.float32),
    }
    images.update(pair_outputs(models.kecae, images["x1"], images["x2"], device))
    masks: dict[str, np.ndarray] = {
        name: images.pop(name) for name in ("mask1", "mask2") if name in images
    }
    sides = {
        "x1": [real.test_kl0.sides[i] for i in ij[:, 0]],
        "x2": [real.test_kl2.sides[j] for j in ij[:, 1]],
    }

    return ij, images, masks, sides


def judge_features(
    models: Models, real: RealImages, images: dict[str, np.ndarray], device: torch.device
) -> dict[str, np.ndarray]:
    """The judge's features of every image set and of the real train, validation and test
    images (``real_train``, ...)."""

    features = {
        name: classifier_features(models.judge, imgs, device=device)
        for name, imgs in images.items()
    }
    for name in ("train", "val", "test"):
        features[f"real_{name}"] = classifier_features(
            models.judge, getattr(real, name), device=device
        )
    return features
