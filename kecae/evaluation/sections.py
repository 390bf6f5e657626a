"""The sections of metrics.json that `kecae evaluate` computes, each from the images, calls and
measurements of :mod:`kecae.evaluation.inputs`; the numbers themselves are pure functions of
arrays (:mod:`kecae.evaluation.metrics`).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kecae.evaluation import grade_match as grade_match_metrics
from kecae.evaluation import image_quality, metrics
from kecae.evaluation.config import EvaluateConfig
from kecae.evaluation.inputs import DIRECTION_IMAGES, Measured, Models, RealImages
from kecae.evaluation.metrics import rate
from kecae.inference import classifier_features, classify, encode
from kecae.results import (
    DIRECTIONS,
    ClassifierRates,
    ExchangeSuccess,
    Fidelity,
    FidelityDirection,
    GradeMatch,
    JudgeRates,
    JudgeSummary,
    KeyTransfer,
    Plausibility,
    Quality,
    Separability,
    SupervisorSummary,
)
from kecae.runfolder import ClassifierRun

if TYPE_CHECKING:
    import torch


log = logging.getLogger(__name__)


def separability_of(
    models: Models, real: RealImages, cfg: EvaluateConfig, device: torch.device
) -> Separability:
    """The paper's Fig. 3 metric: SVM-RBF accuracy on hK and on hN of test images, beside the same
    SVM on the judge's penultimate features of the same images (what a vector made to tell the
    grades reaches on these images: the phantom grades overlap, so no key can reach 100 %)."""

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


def judge_summary_of(models: Models, real: RealImages, device: torch.device) -> JudgeSummary:
    """The judge's accuracy, confusion and per-grade recall on every real test image."""

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


def supervisor_summary_of(models: Models) -> SupervisorSummary:
    run_metrics = ClassifierRun(Path(models.supervisor_path).parent).metrics
    return SupervisorSummary(
        arch=models.supervisor_ckpt["model_config"]["arch"],
        checkpoint=str(models.supervisor_path),
        seed=models.supervisor_ckpt["train_config"].get("seed"),
        test_accuracy=(
            json.loads(run_metrics.read_text())["test_accuracy"] if run_metrics.exists() else None
        ),
    )


def plausibility_of(
    features: dict[str, np.ndarray], found: dict[str, np.ndarray], quantile: float
) -> tuple[Plausibility, dict[str, np.ndarray]]:
    """Fit on train, threshold on validation, report on test and on every generated set.

    Plausible = the joint measurement finds a joint AND the judge's features pass the calibrated
    Mahalanobis rule. Returns the section and the per-image verdict of each set."""

    rule = metrics.fit_plausibility(features["real_train"], features["real_val"], quantile)
    sets = ("real_test", "x1_ex", "x2_ex", "x1_hat", "x2_hat", "x1_self", "x2_self")
    plausible = {name: rule.accept(features[name]) & found[name] for name in sets}
    x_ex = np.r_[plausible["x1_ex"], plausible["x2_ex"]]
    real_test = rate(plausible["real_test"])
    x_ex_rate = rate(x_ex)
    train = features["real_train"]
    section = Plausibility(
        quantile=quantile,
        n_fit=rule.n_fit,
        n_calibration=rule.n_calibration,
        real_test=real_test,
        x_ex=x_ex_rate,
        x_ex_kl0_to_kl2=rate(plausible["x1_ex"]),
        x_ex_kl2_to_kl0=rate(plausible["x2_ex"]),
        recon=rate(np.r_[plausible["x1_hat"], plausible["x2_hat"]]),
        control=rate(np.r_[plausible["x1_self"], plausible["x2_self"]]),
        features_only_real_test=rate(rule.accept(features["real_test"])),
        features_only_x_ex=rate(rule.accept(np.r_[features["x1_ex"], features["x2_ex"]])),
        ratio_to_real=(x_ex_rate.value / real_test.value if real_test.value > 0 else math.nan),
        # k-NN manifold precision against the training images, a second, assumption-free view
        knn_real_test=rate(metrics.knn_precision(train, features["real_test"])),
        knn_x_ex=rate(metrics.knn_precision(train, np.r_[features["x1_ex"], features["x2_ex"]])),
        knn_recon=rate(metrics.knn_precision(train, np.r_[features["x1_hat"], features["x2_hat"]])),
        rule=(
            f"plausible = the joint measurement finds a joint AND the judge's penultimate "
            f"features lie within the Mahalanobis distance (Ledoit-Wolf fit on {rule.n_fit} "
            f"real training images) that {100 * quantile:g} % of {rule.n_calibration} real "
            f"validation images pass; real_test is the same rule on real test images (the "
            f"control); knn_* = k-NN manifold precision (k = 3) against the training images"
        ),
    )
    return section, plausible


def exchange_success_of(
    calls: dict[str, dict[str, np.ndarray]],
    plausible: dict[str, np.ndarray],
    recall: dict[int, float],
    n_pairs: int,
    independent: bool,
) -> ExchangeSuccess:
    """Rates of the donor's grade on X', with the no-exchange and reconstruction controls."""
    judge, supervisor = {}, {}
    for direction, (exchanged, _recipient, donor, donor_class) in DIRECTION_IMAGES.items():
        reconstructed = exchanged.replace("_ex", "_hat")
        unexchanged = exchanged.replace("_ex", "_self")
        rates = {}
        for who, call in calls.items():
            raw = call[exchanged] == donor_class
            control = call[unexchanged] == donor_class
            rates[who] = ClassifierRates(
                raw=rate(raw),
                control=rate(control),
                recon=rate(call[reconstructed] == donor_class),
                lift=float(raw.mean() - control.mean()),
            )
        raw = calls["judge"][exchanged] == donor_class
        judge[direction] = JudgeRates(
            **vars(rates["judge"]),
            success=rate(raw & plausible[exchanged]),
            agreement=rate(calls["judge"][exchanged] == calls["judge"][donor]),
            agreement_control=rate(calls["judge"][unexchanged] == calls["judge"][donor]),
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


def fidelity_of(
    measured: dict[str, Measured],
    measured_real: dict[str, Measured],
    images: dict[str, np.ndarray],
    size: int,
    band_fraction: float,
) -> tuple[Fidelity, dict[str, np.ndarray]]:
    """Ground truth on phantoms: did X' take the donor's joint space and osteophytes, and keep
    the recipient's anatomy elsewhere? Refused measurements of X' count as failures. Returns the
    section and the per-pair arrays of the report's histograms."""

    directions: dict[str, FidelityDirection] = {}
    arrays: dict[str, np.ndarray] = {}
    for direction, (exchanged, recipient, donor, _cls) in DIRECTION_IMAGES.items():
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
        transfer = key_transfer_of(vs_real)
        recon_transfer = key_transfer_of(vs_recon)
        # non-key anatomy: SSIM outside the joint band of the recipient
        band = band_fraction * size
        ssim = np.array(
            [
                image_quality.masked_ssim(a, b, image_quality.joint_band_mask(a.shape, row, band))
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
    # a refused X' fails its direction, as in key transfer: a refused X'1 gains no osteophyte
    # (Measured.osteophytes is False where refused) and a refused X'2 keeps its own, so an X'2
    # broken past measuring cannot pass for a healthy one
    kept = osteo["x2_ex"] | ~measured["x2_ex"].ok
    rates = {
        "real_kl0": rate(osteo_real["kl0"]),
        "real_kl2": rate(osteo_real["kl2"]),
        "x1_ex": rate(osteo["x1_ex"]),
        "x2_ex": rate(kept),
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
        osteophyte_rate_x1_self=rate(osteo["x1_self"]),
        osteophyte_rate_x2_self=rate(osteo["x2_self"]),
        osteophyte_gap_kl0_to_kl2=abs(rates["x1_ex"].value - rates["real_kl2"].value),
        osteophyte_gap_kl2_to_kl0=abs(rates["x2_ex"].value - rates["real_kl0"].value),
        osteophyte_transfer_rate=rate(osteo["x1_ex"][gains]),
        osteophyte_removal_rate=rate(~kept[losses]),
    )
    return section, arrays


def grade_match_of(
    measured: dict[str, Measured],
    measured_real: dict[str, Measured],
    judge: dict[str, np.ndarray],
    fidelity_arrays: dict[str, np.ndarray],
    oracle_sets: tuple[dict[str, Measured], dict[str, np.ndarray]] | None,
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


def key_transfer_of(ratios: np.ndarray) -> KeyTransfer:

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


def quality_of(
    images: dict[str, np.ndarray], features: dict[str, np.ndarray], judge_arch: str, seed: int
) -> Quality:
    """PSNR / SSIM of the reconstructions, and Fréchet distances in the judge's feature space."""

    x = np.r_[images["x1"], images["x2"]]
    x_hat = np.r_[images["x1_hat"], images["x2_hat"]]
    psnr, ssim = image_quality.psnr_batch(x, x_hat), image_quality.ssim_batch(x, x_hat)
    generated = np.r_[features["x1_ex"], features["x2_ex"]]
    return Quality(
        recon_psnr=psnr["mean"],
        recon_psnr_std=psnr["std"],
        recon_ssim=ssim["mean"],
        recon_ssim_std=ssim["std"],
        n=psnr["n"],
        frechet=image_quality.frechet_distance(features["real_test"], generated),
        frechet_recon=image_quality.frechet_distance(
            features["real_test"], np.r_[features["x1_hat"], features["x2_hat"]]
        ),
        frechet_real_floor=image_quality.frechet_real_floor(features["real_train"], seed=seed),
        frechet_feature=f"{judge_arch} penultimate features",
        frechet_n_real=len(features["real_test"]),
        frechet_n_generated=len(generated),
    )
