"""`kecae study sampling` (kecae.studies.sampling): the first N pairs of one generation,
curves, resume and reuse of RUN/generated."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from kecae.studies import sampling


def test_sampling_first_pairs_curves_and_resume(run_dir, monkeypatch, kit):
    cfg = kit.sampling_cfg(run_dir)
    sec = sampling.run_sampling(cfg)
    root = run_dir / "studies" / "sampling"
    # 8 pairs > the 6 of RUN/generated: generated once, N = 3 takes its first 3 pairs
    assert sec["N"] == [0, 3, 8] and Path(sec["generated_from"]) == root / "gen_8"
    rows = list(csv.DictReader((root / "first_3_pairs.csv").read_text().splitlines()))
    assert sorted(int(r["pair_index"]) for r in rows) == [0, 0, 1, 1, 2, 2]
    # paths inside the run folder are relative to the manifest's folder (the run may move)
    assert all(not Path(r["path"]).is_absolute() and (root / r["path"]).is_file() for r in rows)
    for k, n in enumerate(sec["N"]):
        ms = kit.run_metrics(root / f"N_{n}")
        v = [m["test_accuracy"] for m in ms]
        assert sec["accuracy_mean"][k] == pytest.approx(np.mean(v))
        assert sec["accuracy_std"][k] == pytest.approx(np.std(v, ddof=1))
        assert [m["n_train_generated"] for m in ms] == [2 * n, 2 * n]
        curves = sec["train_loss_curves_per_seed"][str(n)]
        with open(root / f"N_{n}" / "seed_0" / "log.csv") as fh:
            logged = [float(r["train_loss"]) for r in csv.DictReader(fh)]
        assert len(curves) == 2 and curves[0] == pytest.approx(logged) and len(logged) == 2
        assert sec["train_loss_curves"][str(n)] == pytest.approx(np.mean(curves, axis=0))
    assert sec["arch"] == "small" and sec["n_seeds"] == 2
    assert "separability" in json.loads((run_dir / "metrics.json").read_text())

    kit.forbid(monkeypatch, "train_classifier", "generate")
    assert sampling.run_sampling(cfg) == sec
    # a smaller study reuses RUN/generated (same checkpoint and pair seed, enough pairs)
    kit.forbid(monkeypatch, "train_classifier", "generate")
    with pytest.raises(AssertionError, match="train_classifier"):
        sampling.run_sampling(
            sampling.SamplingConfig(run=str(run_dir), arch="small", sizes=[5], **kit.SMALL)
        )
    assert not (root / "gen_5").exists()
    assert Path(
        next(iter(csv.DictReader((root / "first_5_pairs.csv").read_text().splitlines())))["path"]
    ).is_relative_to(run_dir / "generated")
