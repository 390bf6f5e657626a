"""The ceiling on phantom data: every rule of `kecae evaluate` again on perfect exchanges, each
recipient rendered from its ground truth with its donor's key features.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kecae.evaluation.config import EvaluateConfig
from kecae.evaluation.inputs import Measured, Models, RealImages, calls_of, measure_joints
from kecae.evaluation.sections import exchange_success_of, fidelity_of, plausibility_of
from kecae.inference import classifier_features
from kecae.phantoms.dataset import CSV_NAME
from kecae.phantoms.oracle import oracle_images, read_ground_truth
from kecae.results import (
    Oracle,
)

if TYPE_CHECKING:
    import torch


def oracle_of(
    models: Models,
    real: RealImages,
    ij: np.ndarray,
    cfg: EvaluateConfig,
    device: torch.device,
    images: dict[str, np.ndarray],
    sides: dict[str, list[str | None]],
    calls: dict[str, dict[str, np.ndarray]],
    measured: dict[str, Measured],
    measured_real: dict[str, Measured],
    features: dict[str, np.ndarray],
    found: dict[str, np.ndarray],
    recall: dict[int, float],
) -> tuple[Oracle, tuple[dict[str, Measured], dict[str, np.ndarray]]]:
    """The plausibility, exchange-success and fidelity sections computed with perfect exchanges
    in place of X'1 and X'2 (everything else, controls included, unchanged); and the joint
    measurements and judge's calls of every set with the perfect exchanges in."""

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
        who: {**c, **calls_of(clf, perfect, device)}
        for (who, c), clf in zip(calls.items(), (models.judge, models.supervisor), strict=True)
    }
    o_measured = {**measured, **{k: measure_joints(v, sides[k[:2]]) for k, v in perfect.items()}}
    o_features = {
        **features,
        **{k: classifier_features(models.judge, v, device=device) for k, v in perfect.items()},
    }
    o_found = {**found, **{k: o_measured[k].ok for k in perfect}}
    plausibility, plausible = plausibility_of(o_features, o_found, cfg.plausibility_quantile)
    exchange = exchange_success_of(o_calls, plausible, recall, len(ij), models.independent)
    fidelity, _ = fidelity_of(o_measured, measured_real, o_images, models.image_size, cfg.band)
    section = Oracle(
        exchange_success=exchange,
        plausibility=plausibility,
        fidelity=fidelity,
        description="the same test pairs, each X' replaced by the recipient rendered from its "
        "ground truth with the donor's key features (joint-space widths, osteophytes, "
        "severity): what a perfect key exchange would score",
    )
    return section, (o_measured, o_calls["judge"])
