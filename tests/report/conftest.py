"""``full_run(root)``: a run folder holding every file the report reads."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest


def _grade_match_and_robustness() -> dict:
    """The grade-match and robustness sections, built from their types."""
    from kecae.results import (
        DistributionMatch,
        FailureAnalysis,
        GradeMatch,
        GradeMatchDirection,
        Robustness,
        RobustnessMetric,
    )

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
        metric="fidelity.key_transfer_median_kl2_to_kl0",
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


def make_full_run(root: Path, k: int = 3, size: int = 32) -> Path:
    """A run folder holding every file the report reads, with small synthetic contents."""
    rng = np.random.default_rng(0)
    metrics = {
        "separability": {
            "svm_hk_accuracy": 0.91,
            "svm_hk_accuracy_std": 0.02,
            "svm_hn_accuracy": 0.55,
            "n": 400,
        },
        "exchange_success": {
            "judge_kl0_to_kl2_raw": 0.72,
            "judge_kl0_to_kl2_raw_ci_low": 0.66,
            "judge_kl0_to_kl2_raw_ci_high": 0.77,
            "judge_kl2_to_kl0_raw": 0.64,
            "judge_kl0_to_kl2": 0.70,
            "judge_kl2_to_kl0": 0.60,
            "judge_agreement_kl0_to_kl2": 0.93,
            "judge_agreement_kl2_to_kl0": 0.81,
            "judge_agreement_control_kl0_to_kl2": 0.2,
            "judge_agreement_control_kl2_to_kl0": 0.3,
            "supervisor_kl0_to_kl2_raw": 0.97,
            "supervisor_kl2_to_kl0_raw": 0.95,
            "judge_control_kl0_to_kl2": 0.12,
            "judge_control_kl2_to_kl0": 0.20,
            "judge_recon_kl0_to_kl2": 0.30,
            "judge_recon_kl2_to_kl0": 0.25,
            "judge_relative_kl0_to_kl2": 0.88,
            "judge_relative_kl2_to_kl0": 0.71,
            "supervisor_control_kl0_to_kl2": 0.10,
            "supervisor_control_kl2_to_kl0": 0.18,
            "n": 256,
        },
        "plausibility": {
            "real_test": 0.985,
            "x_ex": 0.93,
            "ratio_to_real": 0.944,
            "recon": 0.4,
            "control": 0.98,
            "knn_real_test": 0.86,
            "rule": "plausible = the joint is found AND the features pass",
        },
        "judge": {
            "arch": "resnet18",
            "test_accuracy": 0.84,
            "confusion": [[45, 5], [9, 41]],
            "recall_kl0": 0.9,
            "recall_kl2": 0.82,
        },
        "ablation": {
            "rows": [
                {
                    "name": "paper",
                    "description": "the paper",
                    "seeds": 1,
                    "targets_met": 1.0,
                    "cells": {"SVM hK": {"mean": 0.6, "std": None}},
                },
                {
                    "name": "warp",
                    "description": "a warp",
                    "seeds": 3,
                    "targets_met": 7.3,
                    "cells": {"SVM hK": {"mean": 0.81, "std": 0.02}},
                },
            ],
            "columns": {"SVM hK": {"metric": "separability.svm_hk_accuracy", "kind": "pct"}},
            "best": ["warp"],
            "budget": {"steps": 2000, "batch_size": 32, "lr": 0.001, "eval_pairs": 400},
            "examples": {"warp": "eval/examples.npz"},
        },
        "supervisor": {"arch": "siamese", "test_accuracy": 0.86},
        "fidelity": {
            "key_transfer_median": 0.81,
            "key_transfer_iqr": 0.3,
            "key_transfer_median_kl2_to_kl0": 0.7,
            "osteophyte_transfer_rate": 0.6,
            "osteophyte_removal_rate": 0.75,
            "nonkey_ssim_median": 0.88,
            "recon_key_transfer_median": 0.02,
            "refusal_rate": 0.05,
            "n": 256,
            "extra_unknown_measure": 1.5,
        },
        "quality": {
            "recon_psnr": 27.3,
            "recon_ssim": 0.83,
            "frechet": 12.0,
            "frechet_real_floor": 3.0,
            "n": 256,
        },
        "downstream": {
            "rows": [
                {
                    "model": "resnet18",
                    "training_set": "T",
                    "accuracy_mean": 0.8359,
                    "accuracy_std": 0.0158,
                    "precision_mean": 0.80,
                    "precision_std": 0.02,
                    "recall_mean": 0.79,
                    "recall_std": 0.02,
                    "n_seeds": 5,
                },
                {
                    "model": "resnet18",
                    "training_set": "T'",
                    "accuracy_mean": 0.8522,
                    "accuracy_std": 0.0119,
                    "precision_mean": 0.83,
                    "precision_std": 0.01,
                    "recall_mean": 0.82,
                    "recall_std": 0.01,
                    "n_seeds": 5,
                },
                {
                    "model": "resnet18",
                    "training_set": "T+classic",
                    "accuracy_mean": 0.8400,
                    "accuracy_std": 0.0120,
                    "precision_mean": 0.81,
                    "precision_std": 0.01,
                    "recall_mean": 0.80,
                    "recall_std": 0.01,
                    "n_seeds": 5,
                },
            ]
        },
        "lambda_grid": {
            "lambda1": [1e-3, 1e-2, 1e-1],
            "lambda2": [1e-4, 1e-3],
            "svm_hk_accuracy": [[0.7, 0.8], [0.75, 0.9], [0.6, 0.65]],
        },
        "sampling_size": {
            "N": [0, 50000, 100000],
            "accuracy_mean": [0.83, 0.845, 0.85],
            "accuracy_std": [0.015, 0.012, 0.011],
        },
        "targets": {
            "key_transfer_median": {"target": ">= 0.7", "value": 0.81, "met": True},
            "nonkey_ssim_median": {"target": 0.9, "value": 0.88, "met": False},
        },
        "tune": {
            "objective": "mean of 7 terms",
            "sampler": "Optuna TPESampler (seed 0)",
            "steps": 2000,
            "batch_size": 32,
            "eval_pairs": 200,
            "search_space": {"lambda_sup": "log-uniform 0.001 … 1", "width": "one of 0.125, 0.25"},
            "trials": [
                {
                    "number": k,
                    "state": "COMPLETE",
                    "params": {"lambda_sup": ls, "width": w},
                    "objective": o,
                    "terms": {},
                }
                for k, (ls, w, o) in enumerate(
                    [(0.01, 0.125, 0.41), (0.3, 0.25, 0.57), (0.05, 0.25, 0.49)]
                )
            ]
            + [{"number": 3, "state": "FAIL", "params": {}, "objective": None, "terms": {}}],
            "best_trial": 1,
            "best_params": {"lambda_sup": 0.3, "width": 0.25},
            "final": [
                {
                    "name": "best",
                    "description": "the best trial (#1)",
                    "params": {"lambda_sup": 0.3, "width": 0.25},
                    "val_objective": 0.57,
                    "test_objective": 0.552,
                    "test_terms": {"non-key SSIM": 0.93},
                    "targets_met": 4,
                    "targets_total": 11,
                },
                {
                    "name": "run",
                    "description": "the run's own settings",
                    "params": {},
                    "val_objective": 0.41,
                    "test_objective": 0.398,
                    "test_terms": {},
                    "targets_met": 1,
                    "targets_total": 11,
                },
            ],
        },
        "config": {"preset": "tiny", "train": {"lr": 1e-4, "lambda1": 0.01}},
        "timings": {"train": 125.0, "evaluate": 12.5},
        "reader_study": {"fleiss_kappa": 0.61},
    }
    metrics.update(_grade_match_and_robustness())
    metrics["downstream_shortcut"] = {**metrics["downstream"], "site_bias": 0.85}
    (root / "metrics.json").write_text(json.dumps(metrics))

    (root / "kecae").mkdir()
    from kecae.config import save_yaml
    from kecae.training.config import KECAETrainConfig

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
