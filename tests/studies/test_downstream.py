"""`kecae study downstream` (kecae.studies.downstream): training fractions subsampled by patient
and shared by every row, a generator trained on the subsample alone (the run's own at 1.0),
Table II's statistics and paired differences by hand, resume, refusal of other settings, and the
note on a generator that misses its targets."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from kecae.cli import main
from kecae.data.catalog import load_catalog
from kecae.errors import KecaeError
from kecae.runfolder import load_path, write_section
from kecae.studies import downstream


def _train_paths(data: Path | str, split: str = "train") -> set[Path]:
    return {r.path for r in load_catalog(data).records if r.split == split}


def _config(folder: Path) -> dict:
    return yaml.safe_load((folder / "config.yaml").read_text())


def test_fractions_rows_paired_differences_and_resume(run_dir, monkeypatch, capsys, kit):
    cfg = kit.downstream_cfg(run_dir)
    sec = downstream.run_downstream(cfg)
    root = run_dir / "studies" / "downstream"
    data = run_dir.parent / "data"
    sets = ["T", "T+classic", "T'", "T+mixup"]
    assert [(r["train_fraction"], r["training_set"]) for r in sec["rows"]] == [
        (f, s) for f in (0.5, 1.0) for s in sets
    ]

    # fraction 0.5: half the training patients of each grade, validation and test whole, one
    # manifest for every row
    half = root / "fraction_0.5"
    view = half / "data.csv"
    kept, everything = _train_paths(view), _train_paths(data)
    assert kept < everything and len(kept) == 10
    grades = [r.grade for r in load_catalog(view).records if r.split == "train"]
    assert grades.count(0) == grades.count(2) == 5
    for split in ("val", "test"):
        assert _train_paths(view, split) == _train_paths(data, split)
    for name, ts in downstream.TRAINING_SETS.items():
        if name not in sets:
            continue
        for seed in (0, 1):
            sub = half / "small" / ts.folder / f"seed_{seed}"
            assert load_path(_config(sub)["data"], sub) == str(view)
            assert _config(sub)["augment"] == ts.augment
            metrics = json.loads((sub / "metrics.json").read_text())
            assert metrics["n_train_real"] == 10
    # its generator: supervisor and KECAE trained on the subsample, pairs drawn from it alone
    fr = {f["train_fraction"]: f for f in sec["fractions"]}
    assert fr[0.5]["n_train_real"] == 10 and fr[0.5]["generated_pairs"] == 3  # ceil(0.5*10/2)
    assert not fr[0.5]["kecae_reused"]
    assert load_path(_config(half / "supervisor")["data"], half / "supervisor") == str(view)
    kecae_cfg = _config(half / "kecae")
    assert load_path(kecae_cfg["data"], half / "kecae") == str(view)
    assert Path(load_path(kecae_cfg["supervisor"], half / "kecae")) == (
        half / "supervisor" / "best.pt"
    )
    with open(half / "generated" / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    sources = {
        Path(load_path(r[c], half / "generated"))
        for r in rows
        for c in ("recipient_path", "donor_path")
    }
    assert sources <= kept  # never a validation, test or dropped training image
    t_prime = json.loads((half / "small" / "T_prime" / "seed_0" / "metrics.json").read_text())
    assert t_prime["n_train_generated"] == 6
    # fraction 1.0: the run's supervisor, KECAE and the first 5 of its 6 generated pairs
    assert fr[1.0]["kecae_reused"] and fr[1.0]["generated_pairs"] == 5
    assert Path(fr[1.0]["kecae"]) == run_dir / "kecae" / "checkpoints" / "last.pt"
    assert Path(fr[1.0]["generated"]) == run_dir / "generated"
    assert not (root / "fraction_1" / "kecae").exists()

    # statistics and paired differences, by hand from the per-seed runs
    def accuracies(f: str, ts: str) -> list[float]:
        return [
            json.loads((root / f / "small" / ts / f"seed_{s}" / "metrics.json").read_text())[
                "test"
            ]["accuracy"]
            for s in (0, 1)
        ]

    row = next(r for r in sec["rows"] if (r["train_fraction"], r["training_set"]) == (1.0, "T'"))
    acc = {ts: accuracies("fraction_1", ts) for ts in ("T", "T_classic", "T_prime")}
    assert row["accuracy_mean"] == pytest.approx(np.mean(acc["T_prime"]))
    assert row["accuracy_std"] == pytest.approx(np.std(acc["T_prime"], ddof=1))
    assert row["n_train_generated"] == 10 and row["n_train_real"] == 20
    for key, base in (("paired_vs_t", "T"), ("paired_vs_classic", "T_classic")):
        d = np.subtract(acc["T_prime"], acc[base])
        diff = row[key]
        assert diff["values"] == pytest.approx(d.tolist())
        assert diff["mean"] == pytest.approx(d.mean())
        assert diff["std"] == pytest.approx(np.std(d, ddof=1))
        assert diff["wilcoxon_min_p"] == 0.5  # 2 seeds: 2 / 2**2
    first = sec["rows"][0]
    assert first["training_set"] == "T" and "paired_vs_t" not in first
    assert sec["test"].startswith("two-sided paired t-test")
    assert sec["generator_targets_missed"] is None  # the tiny run was never evaluated
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["separability"] == {"svm_hk_accuracy": 0.75} and saved["downstream"] == sec

    # resume through the CLI: nothing is trained or generated again; the console table has the
    # paired differences and the note on the generator's targets
    write_section(
        run_dir,
        "targets",
        {
            "SVM on hK": {"metric": "separability.svm_hk_accuracy", "target": ">= 0.85"}
            | {"value": 0.75, "met": False},
            "SVM on hN": {"metric": "separability.svm_hn_accuracy", "target": "<= 0.65"}
            | {"value": 0.5, "met": True},
        },
    )
    kit.forbid(monkeypatch, "train_classifier", "train_kecae", "generate")
    args = ["study", "downstream", "--run", str(run_dir), "--arch", "small"]
    args += ["--sets", *sets, "--train-fraction", "1.0", "0.5", "--gen-ratio", "0.5"]
    args += ["--epochs", "1", "--patience", "1", "--batch-size", "8", "--seeds", "2"]
    assert main([*args, "--device", "cpu", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "training fraction 0.5" in out and "Δ vs T+classic" in out
    assert "cannot go below p = 0.5 with 2 seeds" in out
    assert "misses 1 of 2 targets (SVM on hK)" in out
    again = json.loads((run_dir / "metrics.json").read_text())["downstream"]
    assert again["rows"] == sec["rows"] and again["generator_targets_missed"] == ["SVM on hK"]
    # other settings on the same sub-runs are refused, not mixed in
    with pytest.raises(KecaeError, match="other settings"):
        downstream.run_downstream(kit.downstream_cfg(run_dir, epochs=2))


def test_paired_difference_by_hand():
    d = downstream.paired_difference([0.8, 0.9, 0.7], [0.75, 0.8, 0.7])
    assert d["values"] == pytest.approx([0.05, 0.1, 0.0])
    assert d["mean"] == pytest.approx(0.05) and d["std"] == pytest.approx(0.05)
    # paired t: t = mean / (std / sqrt(n)) = sqrt(3); two-sided p from Student t with 2 dof
    from scipy import stats

    assert d["p_value"] == pytest.approx(2 * stats.t.sf(math.sqrt(3), 2))
    # exact Wilcoxon: the zero difference is dropped; the 2 others both positive: p = 2 / 2**2
    assert d["wilcoxon_p"] == pytest.approx(0.5) and d["wilcoxon_min_p"] == 0.25
    three = downstream.paired_difference([0.9, 0.8, 0.7], [0.8, 0.75, 0.6])
    assert three["wilcoxon_p"] == pytest.approx(0.25)  # all 3 positive: the floor at 3 seeds
    single = downstream.paired_difference([0.6], [0.5])
    assert single["std"] == 0.0 and math.isnan(single["p_value"])
    with pytest.raises(ValueError, match="equal-length"):
        downstream.paired_difference([0.5, 0.6], [0.5])


def test_config_checks_and_missing_inputs(tmp_path, run_dir, kit):
    for bad, match in (
        ({"train_fractions": [0.0]}, "train-fraction"),
        ({"train_fractions": [1.5]}, "train-fraction"),
        ({"gen_ratio": 0.0}, "gen-ratio"),
    ):
        with pytest.raises(ValueError, match=match):
            downstream.DownstreamConfig(run="r", archs=["small"], **bad)
    with pytest.raises(KecaeError, match="--data"):
        downstream.run_downstream(
            downstream.DownstreamConfig(run=str(tmp_path), archs=["small"], **kit.SMALL)
        )
    assert main(["study", "downstream", "--run", str(run_dir), "--train-fraction", "2"]) == 2
    assert main(["study", "sampling", "--run", str(tmp_path), "--sizes", "0", "-5"]) == 2
