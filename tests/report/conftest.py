"""``full_run(root)``: a run folder holding every file the report reads, its metrics.json built
from the types of :mod:`kecae.results` (no metric key is typed here)."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kecae.config import save_yaml
from kecae.evaluation.summary import TARGETS
from kecae.results import (
    CONFIG_SECTION,
    KL0_TO_KL2,
    KL2_TO_KL0,
    READER_STUDY_SECTION,
    TARGETS_SECTION,
    TIMINGS_SECTION,
    Ablation,
    AblationCell,
    AblationColumn,
    AblationRowResult,
    ClassifierRates,
    DistributionMatch,
    Downstream,
    DownstreamRow,
    DownstreamShortcut,
    ExchangeSuccess,
    FailureAnalysis,
    Fidelity,
    FidelityDirection,
    GradeMatch,
    GradeMatchDirection,
    JudgeRates,
    JudgeSummary,
    LambdaGrid,
    Plausibility,
    Quality,
    Rate,
    Robustness,
    RobustnessMetric,
    SamplingSize,
    Section,
    Separability,
    SupervisorSummary,
    Target,
    Tune,
    TuneFinal,
    TuneTrial,
)
from kecae.results.base import S
from kecae.training.config import KECAETrainConfig


def _grade_match_and_robustness() -> dict:
    """The grade-match and robustness sections, built from their types."""
    match = DistributionMatch(
        ks=0.12, ks_p=0.3, wasserstein=0.21, n=250, n_reference=120, n_missing=6
    )
    failures = FailureAnalysis(
        n_disagree=20,
        n=256,
        refused=2,
        osteophyte_extra=9,
        osteophyte_missing=1,
        joint_narrow=3,
        joint_wide=2,
        osteophyte_and_joint=1,
        other=2,
    )
    direction = GradeMatchDirection(
        jsw=match,
        jsw_control=match,
        key_transfer_q25=0.61,
        key_transfer_q75=1.17,
        overshoot_rate=0.08,
        overshoot_n=20,
        judge_intended=0.97,
        failures=failures,
        jsw_oracle=match,
        judge_intended_oracle=0.9,
        caricature_excess=0.07,
        failures_oracle=failures,
    )
    grade = GradeMatch(
        kl0_to_kl2=direction,
        kl2_to_kl0=direction,
        overshoot_at=1.5,
        joint_tolerance_px=0.5,
        rule="jsw = X' against real knees of its grade",
    )
    metric = RobustnessMetric(
        name="key transfer median, KL-2 -> KL-0 (refusals fail)",
        metric=Fidelity.path(FidelityDirection.key("key_transfer_median", KL2_TO_KL0)),
        kind="num",
        better="high",
        target=">= 0.7",
        values=[1.02, 0.2, 0.9],
        mean=0.7067,
        std=0.44,
        worst=0.2,
        worst_seed=1,
        met=[True, False, True],
    )
    robustness = Robustness(
        seeds=[0, 1, 2],
        metrics=[metric],
        targets_met=[7, 5, 6],
        targets_total=[14, 14, 14],
        worst_seed=1,
        reused_seed=0,
        recipe={"kecae_steps": 2000},
        eval_pairs=400,
        eval_seed=0,
        seconds=[40.0, 300.0, 310.0],
        note="per seed: a fresh run",
    )
    return {GradeMatch.NAME: grade.to_dict(), Robustness.NAME: robustness.to_dict()}


def partial(cls: type[S], **values: Any) -> S:
    """``cls`` with ``values`` set and its other fields unset, as a partial run folder has it;
    a field the type does not have is a TypeError (a renamed metric fails here)."""
    return dataclasses.replace(cls.from_dict({}), **values)


def written(section: Section) -> dict[str, Any]:
    """What :meth:`Section.to_dict` writes for ``section``, less the entries left unset."""
    return _set_only(section.to_dict())


def _set_only(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _set_only(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_set_only(v) for v in value]
    return value


def _rate(value: float, low: float | None = None, high: float | None = None) -> Rate:
    return Rate(value, low, high, None)


def _exchange_success() -> ExchangeSuccess:
    judge = {
        KL0_TO_KL2: partial(
            JudgeRates,
            raw=_rate(0.72, 0.66, 0.77),
            control=_rate(0.12),
            recon=_rate(0.30),
            success=_rate(0.70),
            agreement=_rate(0.93),
            agreement_control=_rate(0.2),
            relative=0.88,
        ),
        KL2_TO_KL0: partial(
            JudgeRates,
            raw=_rate(0.64),
            control=_rate(0.20),
            recon=_rate(0.25),
            success=_rate(0.60),
            agreement=_rate(0.81),
            agreement_control=_rate(0.3),
            relative=0.71,
        ),
    }
    supervisor = {
        KL0_TO_KL2: partial(ClassifierRates, raw=_rate(0.97), control=_rate(0.10)),
        KL2_TO_KL0: partial(ClassifierRates, raw=_rate(0.95), control=_rate(0.18)),
    }
    return partial(ExchangeSuccess, n=256, judge=judge, supervisor=supervisor)


def _fidelity() -> dict[str, Any]:
    directions = {
        KL0_TO_KL2: partial(
            FidelityDirection,
            key_transfer_median=0.81,
            key_transfer_iqr=0.3,
            recon_key_transfer_median=0.02,
        ),
        KL2_TO_KL0: partial(FidelityDirection, key_transfer_median=0.7),
    }
    fidelity = partial(
        Fidelity,
        n=256,
        directions=directions,
        osteophyte_transfer_rate=_rate(0.6),
        osteophyte_removal_rate=_rate(0.75),
        nonkey_ssim_median=0.88,
        refusal_rate=0.05,
    )
    # a measure this kecae does not know (a newer evaluation's): the report shows it as it is
    return {**written(fidelity), "extra_unknown_measure": 1.5}


def _downstream() -> Downstream:
    def row(training_set: str, acc: tuple[float, float], pr: float, rc: float, sd: float):
        return partial(
            DownstreamRow,
            model="resnet18",
            training_set=training_set,
            accuracy_mean=acc[0],
            accuracy_std=acc[1],
            precision_mean=pr,
            precision_std=sd,
            recall_mean=rc,
            recall_std=sd,
            n_seeds=5,
        )

    rows = [
        row("T", (0.8359, 0.0158), 0.80, 0.79, 0.02),
        row("T'", (0.8522, 0.0119), 0.83, 0.82, 0.01),
        row("T+classic", (0.8400, 0.0120), 0.81, 0.80, 0.01),
    ]
    return partial(Downstream, rows=rows)


def _targets() -> dict[str, Any]:
    """Two of the evaluation's targets, one met and one missed."""
    by_metric = {spec.metric: spec for spec in TARGETS}
    transfer = by_metric[Fidelity.path(FidelityDirection.key("key_transfer_median", KL0_TO_KL2))]
    ssim = by_metric[Fidelity.path("nonkey_ssim_median")]
    return {
        spec.name: written(
            Target(spec.metric, f"{spec.op} {spec.threshold:g}", value, spec.met(value))
        )
        for spec, value in ((transfer, 0.81), (ssim, 0.88))
    }


def _tune() -> Tune:
    trials = [
        partial(
            TuneTrial,
            number=k,
            state="COMPLETE",
            params={"lambda_sup": ls, "width": w},
            objective=o,
            terms={},
        )
        for k, (ls, w, o) in enumerate([(0.01, 0.125, 0.41), (0.3, 0.25, 0.57), (0.05, 0.25, 0.49)])
    ]
    trials.append(partial(TuneTrial, number=3, state="FAIL", params={}, terms={}))
    final = [
        partial(
            TuneFinal,
            name="best",
            description="the best trial (#1)",
            params={"lambda_sup": 0.3, "width": 0.25},
            val_objective=0.57,
            test_objective=0.552,
            test_terms={"non-key SSIM": 0.93},
            targets_met=4,
            targets_total=11,
        ),
        partial(
            TuneFinal,
            name="run",
            description="the run's own settings",
            params={},
            val_objective=0.41,
            test_objective=0.398,
            test_terms={},
            targets_met=1,
            targets_total=11,
        ),
    ]
    return partial(
        Tune,
        objective="mean of 7 terms",
        sampler="Optuna TPESampler (seed 0)",
        steps=2000,
        batch_size=32,
        eval_pairs=200,
        search_space={"lambda_sup": "log-uniform 0.001 … 1", "width": "one of 0.125, 0.25"},
        trials=trials,
        best_trial=1,
        best_params={"lambda_sup": 0.3, "width": 0.25},
        final=final,
    )


def _ablation() -> Ablation:
    rows = [
        partial(
            AblationRowResult,
            name="paper",
            description="the paper",
            seeds=1,
            targets_met=1.0,
            cells={"SVM hK": partial(AblationCell, mean=0.6)},
        ),
        partial(
            AblationRowResult,
            name="warp",
            description="a warp",
            seeds=3,
            targets_met=7.3,
            cells={"SVM hK": partial(AblationCell, mean=0.81, std=0.02)},
        ),
    ]
    return partial(
        Ablation,
        rows=rows,
        columns={
            "SVM hK": partial(
                AblationColumn, metric=Separability.path("svm_hk_accuracy"), kind="pct"
            )
        },
        best=["warp"],
        budget={"steps": 2000, "batch_size": 32, "lr": 0.001, "eval_pairs": 400},
        examples={"warp": "eval/examples.npz"},
    )


def make_full_run(root: Path, k: int = 3, size: int = 32) -> Path:
    """A run folder holding every file the report reads, with small synthetic contents; every
    section of metrics.json is built from its type in :mod:`kecae.results`."""
    rng = np.random.default_rng(0)
    sections: list[Section] = [
        partial(
            Separability,
            svm_hk_accuracy=0.91,
            svm_hk_accuracy_std=0.02,
            svm_hn_accuracy=0.55,
            n=400,
        ),
        _exchange_success(),
        partial(
            Plausibility,
            real_test=_rate(0.985),
            x_ex=_rate(0.93),
            ratio_to_real=0.944,
            recon=_rate(0.4),
            control=_rate(0.98),
            knn_real_test=_rate(0.86),
            rule="plausible = the joint is found AND the features pass",
        ),
        partial(
            JudgeSummary,
            arch="resnet18",
            test_accuracy=0.84,
            confusion=[[45, 5], [9, 41]],
            recall_kl0=0.9,
            recall_kl2=0.82,
        ),
        _ablation(),
        partial(SupervisorSummary, arch="siamese", test_accuracy=0.86),
    ]
    metrics: dict[str, Any] = {section.NAME: written(section) for section in sections}
    metrics[Fidelity.NAME] = _fidelity()
    more: list[Section] = [
        partial(
            Quality, recon_psnr=27.3, recon_ssim=0.83, frechet=12.0, frechet_real_floor=3.0, n=256
        ),
        _downstream(),
        partial(
            LambdaGrid,
            lambda1=[1e-3, 1e-2, 1e-1],
            lambda2=[1e-4, 1e-3],
            svm_hk_accuracy=[[0.7, 0.8], [0.75, 0.9], [0.6, 0.65]],
        ),
        partial(
            SamplingSize,
            N=[0, 50000, 100000],
            accuracy_mean=[0.83, 0.845, 0.85],
            accuracy_std=[0.015, 0.012, 0.011],
        ),
    ]
    metrics.update({section.NAME: written(section) for section in more})
    metrics[TARGETS_SECTION] = _targets()
    metrics[Tune.NAME] = written(_tune())
    # the sections without a type: the pipeline's settings and step times, the reader study's
    metrics[CONFIG_SECTION] = {"preset": "tiny", "train": {"lr": 1e-4, "lambda1": 0.01}}
    metrics[TIMINGS_SECTION] = {"train": 125.0, "evaluate": 12.5}
    metrics[READER_STUDY_SECTION] = {"fleiss_kappa": 0.61}
    metrics.update(_grade_match_and_robustness())
    metrics[DownstreamShortcut.NAME] = {**metrics[Downstream.NAME], "site_bias": 0.85}
    (root / "metrics.json").write_text(json.dumps(metrics))

    (root / "kecae").mkdir()
    save_yaml(
        KECAETrainConfig(
            data=str(root / "data"),
            out=str(root / "kecae"),
            preset="cpu",
            model={"warp_grid": 16},
            max_steps=2000,
            lambda_sup=0.1,
            lambda_lda=0.0,
            lambda_disp=0.01,
            lambda_cycle=1.0,
        ),
        root / "kecae" / "config.yaml",
    )
    with open(root / "kecae" / "log.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "epoch", "total", "mse", "sup", "lda", "sup_real", "pairs_per_s", "lr"])
        for s in range(1, 80):
            w.writerow(
                [
                    s,
                    s / 10,
                    1 / s + 0.1,
                    0.5 / s,
                    0.7 / s,
                    "" if s % 7 == 0 else 2 / s,
                    0.6,
                    40 + s % 3,
                    1e-4,
                ]
            )

    (root / "eval").mkdir()
    imgs = {
        name: rng.uniform(-1, 1, size=(k, size, size)).astype(np.float32)
        for name in ("x1", "x1_ex", "x2", "x2_ex", "x1_hat", "x2_hat")
    }
    meas = {
        f"{q}_{name}": np.full(k, v, dtype=np.float32)
        for name in ("x1", "x1_ex", "x2", "x2_ex")
        for q, v in (("jsw", 6.0), ("joint_row", size / 2))
    }
    meas["jsw_x1_ex"][0] = np.nan  # an unmeasured image is left unmarked
    np.savez(root / "eval" / "examples.npz", **imgs, **meas)
    np.savez(
        root / "eval" / "fidelity.npz",
        key_transfer_kl0_to_kl2=np.r_[rng.normal(0.8, 0.3, 100), np.nan, 9.0],
        key_transfer_kl2_to_kl0=rng.normal(0.7, 0.3, 100),
        recon_key_transfer_kl0_to_kl2=rng.normal(0.0, 0.1, 100),
        nonkey_ssim=rng.uniform(0.8, 0.95, 100),
    )

    for name, acc in (("supervisor", 0.86), ("judge", 0.84)):
        (root / name).mkdir()
        (root / name / "metrics.json").write_text(
            json.dumps(
                {
                    "arch": name,
                    "n_test": 100,
                    "test_accuracy": acc,
                    "test": {
                        "accuracy": acc,
                        "precision": 0.8,
                        "recall": 0.75,
                        "auc": 0.9,
                        "confusion": [[45, 5], [9, 41]],
                        "n": 100,
                    },
                }
            )
        )
    return root


@pytest.fixture(scope="session")
def full_run():
    return make_full_run
