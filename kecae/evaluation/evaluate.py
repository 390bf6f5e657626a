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

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kecae.device import select_device
from kecae.evaluation import grade_match as grade_match_metrics
from kecae.evaluation.config import EvaluateConfig
from kecae.evaluation.inputs import (
    Measured,
    Models,
    RealImages,
    calls_of,
    is_phantom_data,
    judge_features,
    load_models,
    measure_joints,
    real_images,
    test_pairs,
)
from kecae.evaluation.oracle import oracle_of
from kecae.evaluation.sections import (
    exchange_success_of,
    fidelity_of,
    grade_match_of,
    judge_summary_of,
    plausibility_of,
    quality_of,
    separability_of,
    supervisor_summary_of,
)
from kecae.evaluation.summary import check_targets
from kecae.files import atomic_path
from kecae.metrics_file import write_sections
from kecae.results import (
    Fidelity,
    GradeMatch,
    Oracle,
    Section,
)
from kecae.runfolder import RunLayout

if TYPE_CHECKING:
    import torch

#: The stages the progress bar counts (in the order evaluate runs them).
STAGES = (
    "models and images",
    "exchanges",
    "separability",
    "classifiers",
    "joint measurement",
    "plausibility",
    "fidelity and quality",
    "oracle and grade match",
)


def evaluate(cfg: EvaluateConfig) -> dict[str, Any]:
    """Measure the run in ``cfg.run``; write its sections of metrics.json (and the report's
    arrays in RUN/eval/) and return the whole merged metrics.json. With ``cfg.progress`` a bar
    counts the :data:`STAGES`."""
    from tqdm.auto import tqdm

    layout = RunLayout(cfg.run)
    device = select_device(cfg.device)
    bar = tqdm(total=len(STAGES), desc="evaluate", unit="stage", disable=not cfg.progress)

    def stage(done: str) -> None:
        bar.update()
        if bar.n < len(STAGES):
            bar.set_postfix_str(STAGES[bar.n])

    bar.set_postfix_str(STAGES[0])
    try:
        return _evaluate(cfg, layout, device, stage)
    finally:
        bar.close()


def _evaluate(
    cfg: EvaluateConfig, layout: RunLayout, device: torch.device, stage: Callable[[str], None]
) -> dict[str, Any]:
    # the models, and the real images of the data set they were trained on
    models = load_models(cfg, layout, device)
    real = real_images(cfg, models)
    stage("models and images")

    # test pairs, and every image set the rules are applied to: inputs X1 (KL-0) and X2 (KL-2),
    # reconstructions, exchanges and the no-exchange controls
    ij, images, masks, sides = test_pairs(cfg, models, real, device)
    n_pairs = len(ij)
    stage("exchanges")

    # the paper's separability of the latents (Fig. 3)
    separability = separability_of(models, real, cfg, device)
    stage("separability")

    # the classifiers' calls (class index 1 = KL-2) on every set; the judge on real test images
    judge_summary = judge_summary_of(models, real, device)
    calls = {
        "judge": calls_of(models.judge, images, device),
        "supervisor": calls_of(models.supervisor, images, device),
    }
    stage("classifiers")

    # plausibility: the joint is found and the judge's features look like real images'
    measured = {name: measure_joints(imgs, sides[name[:2]]) for name, imgs in images.items()}
    measured_real = {
        "kl0": measure_joints(np.asarray(real.test_kl0.images), list(real.test_kl0.sides)),
        "kl2": measure_joints(np.asarray(real.test_kl2.images), list(real.test_kl2.sides)),
    }
    stage("joint measurement")
    features = judge_features(models, real, images, device)
    found = {name: m.ok for name, m in measured.items()}
    found["real_test"] = np.r_[measured_real["kl0"].ok, measured_real["kl2"].ok]
    plausibility, plausible = plausibility_of(features, found, cfg.plausibility_quantile)

    # exchange success: the donor's grade on X', beside its controls
    recall = {0: judge_summary.recall_kl0, 1: judge_summary.recall_kl2}
    exchange = exchange_success_of(calls, plausible, recall, n_pairs, models.independent)
    stage("plausibility")

    # ground-truth fidelity (the measurement is built for the phantoms' geometry)
    fidelity: Fidelity | None = None
    fidelity_arrays: dict[str, np.ndarray] = {}
    if is_phantom_data(models.data):
        fidelity, fidelity_arrays = fidelity_of(
            measured, measured_real, images, models.image_size, cfg.band
        )

    # image quality
    quality = quality_of(images, features, judge_summary.arch, cfg.seed)
    quality.edit_mask_area_kl0_to_kl2 = grade_match_metrics.mask_area(masks.get("mask1"))
    quality.edit_mask_area_kl2_to_kl0 = grade_match_metrics.mask_area(masks.get("mask2"))
    stage("fidelity and quality")

    # on phantoms, every rule again on perfect exchanges rendered from the ground truth (the
    # ceiling), and X' against real knees of its grade
    oracle, grade_match = None, None
    if fidelity is not None:
        oracle, grade_match = _against_ground_truth(
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
            fidelity_arrays,
        )
    stage("oracle and grade match")

    # the sections in the order metrics.json has them, then the targets they meet
    sections = _in_order(
        separability,
        plausibility,
        exchange,
        judge_summary,
        supervisor_summary_of(models),
        fidelity,
        quality,
        oracle,
        grade_match,
    )

    # the arrays behind the report's figures, then metrics.json
    _save_report_arrays(layout, images, measured, min(cfg.examples, n_pairs), fidelity_arrays)
    return write_sections(layout.root, sections)


def _against_ground_truth(
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
    fidelity_arrays: dict[str, np.ndarray],
) -> tuple[Oracle, GradeMatch]:
    """On phantoms: every rule again on perfect exchanges rendered from the ground truth (the
    ceiling a generator can reach with this judge and this measurement), then X' against real
    knees of its grade and the judge against the oracle's X'."""
    oracle, oracle_sets = oracle_of(
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
    grade_match = grade_match_of(
        measured, measured_real, calls["judge"], fidelity_arrays, oracle_sets, cfg.seed
    )
    return oracle, grade_match


def _in_order(*sections: Section | None) -> dict[str, Any]:
    """The computed sections (``None``: not computed on this data) in the order metrics.json has
    them, then the targets they meet."""
    out: dict[str, Any] = {s.NAME: s.to_dict() for s in sections if s is not None}
    targets = check_targets(out, oracle=out.get(Oracle.NAME))
    out["targets"] = {name: t.to_dict() for name, t in targets.items()}
    return out


def _save_report_arrays(
    layout: RunLayout,
    images: dict[str, np.ndarray],
    measured: dict[str, Measured],
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
