"""The settings of `kecae evaluate` (:class:`EvaluateConfig`): importable without torch, so the
CLI and the studies can build one before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from kecae.config import setting

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
    progress: bool = True  # a progress bar over the evaluation's stages
