"""`kecae study downstream` (kecae.studies.downstream): Table II's statistics are the
per-seed runs', resume, refusal of other settings, the paired difference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from kecae.cli import main
from kecae.errors import KecaeError
from kecae.runfolder import write_section
from kecae.studies import downstream


def test_downstream_section_statistics_and_resume(run_dir, monkeypatch, capsys, kit):
    sec = downstream.run_downstream(kit.downstream_cfg(run_dir))
    assert [r["training_set"] for r in sec["rows"]] == ["T", "T+classic", "T'"]
    keys = {
        "model",
        "training_set",
        "accuracy_mean",
        "accuracy_std",
        "precision_mean",
        "precision_std",
        "recall_mean",
        "recall_std",
        "auc_mean",
        "auc_std",
        "n_seeds",
        "n_train_real",
        "n_train_generated",
    }
    root = run_dir / "studies" / "downstream" / "small"
    per = {name: kit.run_metrics(root / ts.folder) for name, ts in downstream.TRAINING_SETS.items()}
    for r in sec["rows"]:
        assert keys <= set(r) and r["model"] == "small" and r["n_seeds"] == 2
        for key in ("accuracy", "precision", "recall"):
            v = [m["test"][key] for m in per[r["training_set"]]]
            assert r[f"{key}_mean"] == pytest.approx(np.mean(v))
            assert r[f"{key}_std"] == pytest.approx(np.std(v, ddof=1))
        assert r["n_train_real"] == 20  # 10 KL-0 + 10 KL-2 train images
    # the folder holds 6 pairs, 10 were asked: all 6 are used (12 images) and the note says so
    assert [r["n_train_generated"] for r in sec["rows"]] == [0, 0, 12]
    assert sec["generated_pairs_used"] == 6 and "only 6" in sec["note"]
    assert per["T+classic"][0]["augment"] == "classic"
    acc = {name: [m["test"]["accuracy"] for m in ms] for name, ms in per.items()}
    assert sec["gain"]["small"]["T'"] == pytest.approx(np.mean(acc["T'"]) - np.mean(acc["T"]))
    paired = sec["paired_difference"]["small"]["T+classic"]
    diffs = np.subtract(acc["T+classic"], acc["T"])
    assert paired["values"] == pytest.approx(diffs.tolist())
    assert paired["std"] == pytest.approx(np.std(diffs, ddof=1))
    assert sec["test_n"] == 12 and sec["epochs"] == 1
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["separability"] == {"svm_hk_accuracy": 0.75} and saved["downstream"] == sec

    # resume through the CLI: nothing is trained again, the same section comes back
    kit.forbid(monkeypatch, "train_classifier")
    assert (
        main(
            [
                "study",
                "downstream",
                "--run",
                str(run_dir),
                "--arch",
                "small",
                "--pairs",
                "10",
                "--epochs",
                "1",
                "--patience",
                "1",
                "--batch-size",
                "8",
                "--seeds",
                "2",
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "T+classic" in capsys.readouterr().out
    assert json.loads((run_dir / "metrics.json").read_text())["downstream"] == sec
    # other settings on the same sub-runs are refused, not mixed in
    with pytest.raises(KecaeError, match="other settings"):
        downstream.run_downstream(kit.downstream_cfg(run_dir, epochs=2))


def test_write_section_and_paired_difference(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"quality": {"recon_ssim": 0.9}}))
    write_section(tmp_path, "downstream", {"x": [1.0, math.nan], "n": np.int64(3)})
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == {"quality": {"recon_ssim": 0.9}, "downstream": {"x": [1.0, None], "n": 3}}
    d = downstream.paired_difference([0.8, 0.9, 0.7], [0.75, 0.8, 0.7])
    assert d["values"] == pytest.approx([0.05, 0.1, 0.0])
    assert d["mean"] == pytest.approx(0.05) and d["std"] == pytest.approx(0.05)
    # paired t: t = mean / (std / sqrt(n)) = sqrt(3); two-sided p from Student t with 2 dof
    from scipy import stats

    assert d["p_value"] == pytest.approx(2 * stats.t.sf(math.sqrt(3), 2))
    single = downstream.paired_difference([0.6], [0.5])
    assert single["std"] == 0.0 and math.isnan(single["p_value"])
    with pytest.raises(ValueError, match="equal-length"):
        downstream.paired_difference([0.5, 0.6], [0.5])


def test_missing_inputs_are_user_errors(tmp_path, run_dir, kit):
    with pytest.raises(KecaeError, match="--data"):
        downstream.run_downstream(
            downstream.DownstreamConfig(run=str(tmp_path), archs=["small"], **kit.SMALL)
        )
    with pytest.raises(KecaeError, match="kecae generate"):
        downstream.run_downstream(
            downstream.DownstreamConfig(
                run=str(run_dir), archs=["small"], **kit.SMALL, generated=str(tmp_path / "none")
            )
        )
    assert main(["study", "sampling", "--run", str(tmp_path), "--sizes", "0", "-5"]) == 2
