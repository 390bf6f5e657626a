"""`kecae study downstream` (kecae.studies.downstream): every row of a fraction trained to the
same step budget, generated images drawn into its batches, the label check and the options on
the parts of the generated images they name, paired differences with intervals by hand, the
validation curves and the budget check, resume, a study cut by --max-minutes, and refusals."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from kecae.cli import main
from kecae.data.catalog import load_catalog
from kecae.errors import KecaeError
from kecae.evaluation.paired import minimal_detectable_effect
from kecae.metrics_file import write_section
from kecae.studies import downstream, fractions
from kecae.training.logs import read_log


def _config(folder: Path) -> dict:
    return yaml.safe_load((folder / "config.yaml").read_text())


def _manifest(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


@pytest.fixture(scope="module")
def study(run_dir, kit):
    cfg = kit.downstream_cfg(run_dir)
    return cfg, downstream.run_downstream(cfg)


def test_rows_train_the_same_steps_on_the_parts_they_name(run_dir, study):
    _, sec = study
    root = run_dir / "studies" / "downstream" / "iid"
    assert [(r["train_fraction"], r["training_set"]) for r in sec["rows"]] == [
        *[(0.5, s) for s in ("T", "T+classic", "T+mixup", "T'")],
        *[(1.0, s) for s in ("T", "T+classic", "T+mixup", "T'", "X'", "X'1+T0", "T'confirmed")],
        (1.0, "X'->T"),
    ]
    one, half = root / "fraction_1", root / "fraction_0.5"
    # fraction 0.5: half the training patients of each grade, one manifest for every row
    kept = {r.path for r in load_catalog(half / "data.csv").records if r.split == "train"}
    assert len(kept) == 10
    for r in sec["rows"]:
        ts = downstream.TRAINING_SETS[r["training_set"]]
        folder = root / f"fraction_{r['train_fraction']:g}" / "small" / ts.folder
        for seed in (0, 1):
            c, m = _config(folder / f"seed_{seed}"), _metrics(folder / f"seed_{seed}")
            assert c["max_steps"] == 4 and m["steps"] == 4 and c["lr_schedule"] == "cosine"
            assert [row["step"] for row in read_log(folder / f"seed_{seed}" / "log.csv").rows] == [
                1,
                2,
                3,
                4,
            ]
        assert r["steps"] == 4 and r["group"] == ts.group
    fr = {f["train_fraction"]: f for f in sec["fractions"]}
    assert fr[1.0]["kecae_reused"] and not fr[0.5]["kecae_reused"] and fr[0.5]["steps"] == 4
    # T': the first ceil(0.5 · 20 / 2) = 5 pairs, drawn into each batch at 0.5 per real image
    t_prime = _config(one / "small" / "T_prime" / "seed_0")
    assert t_prime["mix_ratio"] == 0.5 and t_prime["augment_dirs"] == []
    pairs = _manifest(one / "generated_pairs_0.5.csv")
    assert sorted({int(r["pair_index"]) for r in pairs}) == [0, 1, 2, 3, 4]
    assert _metrics(one / "small" / "T_prime" / "seed_0")["n_train_generated"] == 10
    # the label check: X' has T's class counts, every image generated; X'1 replaces KL-2
    x = _metrics(one / "small" / "X" / "seed_0")
    assert (x["n_train_real"], x["n_train_generated"]) == (0, 20)
    directions = [r["direction"] for r in _manifest(one / "generated_x.csv")]
    assert directions.count("kl0_to_kl2") == directions.count("kl2_to_kl0") == 10
    x1 = _metrics(one / "small" / "X1_T0" / "seed_0")
    assert (x1["n_train_real"], x1["n_train_generated"]) == (10, 10)
    assert {r["grade"] for r in _manifest(one / "generated_x1.csv")} == {"2"}
    # pre-training: the first half of the budget on X', chosen only after it
    pre = _config(one / "small" / "pretrain_X_T" / "seed_0")
    assert pre["pretrain_steps"] == 2 and pre["mix_ratio"] == 0.0
    assert _metrics(one / "small" / "pretrain_X_T" / "seed_0")["best_step"] in (3, 4)


def test_the_filter_is_the_supervisors_confidence(run_dir, study):
    cfg, sec = study
    one = run_dir / "studies" / "downstream" / "iid" / "fraction_1"
    f1 = next(f for f in sec["fractions"] if f["train_fraction"] == 1.0)
    conf = fractions.supervisor_confidence(cfg, f1["supervisor"], Path(f1["generated"]))
    assert f1["supervisor"] == str(run_dir / "supervisor" / "best.pt")  # never the judge
    passing = [i for i, q in conf.items() if q >= 0.5]
    kept = [r["image_id"] for r in _manifest(one / "generated_confirmed_0.5.csv")]
    order = [r["image_id"] for r in _manifest(Path(f1["generated"]) / "manifest.csv")]
    assert kept == [i for i in order if i in passing][:10]  # pair order, r · n images at most
    assert f1["supervisor_confirms"] == pytest.approx(len(passing) / len(conf))


def test_paired_differences_curves_and_the_budget_check(run_dir, study):
    _, sec = study
    root = run_dir / "studies" / "downstream" / "iid" / "fraction_1" / "small"

    def test_acc(folder: str) -> list[float]:
        return [_metrics(root / folder / f"seed_{s}")["test"]["accuracy"] for s in (0, 1)]

    row = next(r for r in sec["rows"] if (r["train_fraction"], r["training_set"]) == (1.0, "X'"))
    acc = {ts: test_acc(ts) for ts in ("T", "T_classic", "X")}
    assert row["accuracy_mean"] == pytest.approx(np.mean(acc["X"]))
    for key, base in (("paired_vs_t", "T"), ("paired_vs_classic", "T_classic")):
        d = np.subtract(acc["X"], acc[base])
        diff = row[key]
        assert diff["values"] == pytest.approx(d.tolist())
        sd = np.std(d, ddof=1)
        half = 12.706205 * sd / math.sqrt(2)  # t(0.975, 1 dof)
        assert diff["ci_low"] == pytest.approx(d.mean() - half, abs=1e-6)
        assert diff["ci_high"] == pytest.approx(d.mean() + half, abs=1e-6)
        assert (diff["mde"] is None and sd == 0) or diff["mde"] == pytest.approx(
            minimal_detectable_effect(sd, 2)
        )
    val = [_metrics(root / "T_prime" / f"seed_{s}")["val"]["accuracy"] for s in (0, 1)]
    t_prime = next(
        r for r in sec["rows"] if (r["train_fraction"], r["training_set"]) == (1.0, "T'")
    )
    assert t_prime["val_accuracy_mean"] == pytest.approx(np.mean(val))
    # T's validation curve: mean over the seeds' logs at each validation
    curve = next(c for c in sec["curves"] if c["train_fraction"] == 1.0)
    logs = [read_log(root / "T" / f"seed_{s}" / "log.csv").column("val_accuracy") for s in (0, 1)]
    assert curve["steps"] == [1, 2, 3, 4]
    assert curve["val_accuracy_mean"] == pytest.approx(np.mean(logs, axis=0), abs=1e-5)
    # T of seed 0 at twice the budget, beside T at the budget
    check = next(f for f in sec["fractions"] if f["train_fraction"] == 1.0)["budget_checks"][0]
    twice = _metrics(root / "T_twice_the_steps" / "seed_0")
    assert (
        check["steps"] == 8 == twice["steps"] and check["test_accuracy"] == twice["test_accuracy"]
    )
    assert check["budget_test_accuracy"] == acc["T"][0]
    assert sec["answer"].startswith("In the i.i.d. regime") and "2 seeds" in sec["answer"]
    assert sec["seconds"] > 0 and sec["regime"] == "iid"
    assert json.loads((run_dir / "metrics.json").read_text())["downstream"] == sec


def test_resume_and_a_study_cut_short(run_dir, study, monkeypatch, capsys, kit):
    cfg, sec = study
    kit.forbid(monkeypatch, "train_classifier", "train_kecae", "generate")
    assert downstream.run_downstream(cfg)["rows"] == sec["rows"]
    args = ["study", "downstream", "--run", str(run_dir), "--arch", "small", "--steps", "4"]
    args += ["--sets", "T", "T+classic", "T'", "T+mixup", "--train-fraction", "1.0", "0.5"]
    args += ["--check-sets", "X'", "X'1+T0", "T'confirmed", "X'->T", "--check-fractions", "1"]
    args += ["--gen-ratio", "0.5", "--filter-confidence", "0.5", "--batch-size", "8"]
    args += ["--device", "cpu", "--no-progress"]
    assert main([*args, "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "training fraction 0.5" in out and "Δ vs T+classic" in out and "mde=" in out
    assert out.startswith("In the i.i.d. regime")
    # a third seed with no time left: stopped before its first sub-run, exit status 75
    assert main([*args, "--seeds", "3", "--max-minutes", "0.000001"]) == 75
    assert "run the same command again" in capsys.readouterr().out
    assert not (
        run_dir / "studies" / "downstream" / "iid" / "fraction_0.5" / "small" / "T" / "seed_2"
    ).exists()
    # other settings on the same sub-runs are refused, not mixed in
    with pytest.raises(KecaeError, match="other settings"):
        downstream.run_downstream(kit.downstream_cfg(run_dir, lr=2e-3))


def test_a_stopped_study_writes_the_seeds_every_row_finished(run_dir, study, monkeypatch, kit):
    cfg, sec = study
    clock = {"t": 0.0}
    monkeypatch.setattr(downstream, "time", SimpleNamespace(perf_counter=lambda: clock["t"]))
    train = downstream.train_or_reuse

    def third_seed_runs_out(c):
        if c.seed == 2:
            clock["t"] = 1e9  # the time runs out during seed 2's first sub-run
        return train(c)

    monkeypatch.setattr(downstream, "train_or_reuse", third_seed_runs_out)
    assert downstream.run_downstream(dataclasses.replace(cfg, seeds=3, max_minutes=5)) is None
    part = json.loads((run_dir / "metrics.json").read_text())["downstream"]
    # seeds 0 and 1 are whole: their rows, paired statistics and answer, not seed 2's one row
    assert part["seeds"] == [0, 1] and part["rows"] == sec["rows"]
    assert part["answer"] == sec["answer"]
    assert "Written by --max-minutes from the seeds every row" in part["note"]
    assert "(small 2 of 3)" in part["note"]
    assert all("budget_checks" not in fr or not fr["budget_checks"] for fr in part["fractions"])
    # one whole seed is not enough for a paired statistic: nothing is written
    write_section(run_dir, "downstream", sec)
    clock["t"] = 0.0
    one = dataclasses.replace(cfg, first_seed=1, seeds=2, max_minutes=5)
    monkeypatch.setattr(
        downstream,
        "train_or_reuse",
        lambda c: (clock.update(t=1e9) if c.seed == 2 else None) or train(c),
    )
    assert downstream.run_downstream(one) is None
    assert json.loads((run_dir / "metrics.json").read_text())["downstream"] == sec
    monkeypatch.undo()
    kit.forbid(monkeypatch, "train_classifier", "train_kecae", "generate")
    downstream.run_downstream(cfg)  # the 2-seed section back for the tests that follow


def test_finished_only_trains_nothing(run_dir, study, monkeypatch, capsys, kit):
    cfg, sec = study
    kit.forbid(monkeypatch, "train_classifier", "train_kecae", "generate")
    # a third seed that never ran: left out, the section from the 2 whole seeds, exit 0
    written = downstream.run_downstream(dataclasses.replace(cfg, seeds=3, finished_only=True))
    assert written is not None and written["seeds"] == [0, 1] and written["rows"] == sec["rows"]
    assert "Written by --finished-only" in written["note"] and "(small 2 of 3)" in written["note"]
    # the budget check of seed 0 had finished: it stays
    assert [len(fr["budget_checks"]) for fr in written["fractions"]] == [1, 1]
    args = ["study", "downstream", "--run", str(run_dir), "--arch", "small", "--steps", "4"]
    args += ["--sets", "T", "T+classic", "T'", "T+mixup", "--train-fraction", "1.0", "0.5"]
    args += ["--check-sets", "X'", "X'1+T0", "T'confirmed", "X'->T", "--check-fractions", "1"]
    args += ["--gen-ratio", "0.5", "--filter-confidence", "0.5", "--batch-size", "8"]
    args += ["--device", "cpu", "--no-progress", "--finished-only"]
    assert main([*args, "--seeds", "3"]) == 0
    assert "these 2 seeds find" in capsys.readouterr().out
    # no seed finished from seed 2 on: nothing to write
    assert main([*args, "--seeds", "2", "--first-seed", "2"]) == 75
    assert "no classifier has 2 finished seeds" in capsys.readouterr().out
    downstream.run_downstream(cfg)  # the 2-seed section back for the tests that follow


def test_whole_seeds_are_counted_per_classifier():
    cfg = downstream.DownstreamConfig(
        run="r",
        archs=["small", "resnet18"],
        check_arch=["small"],
        train_fractions=[1.0],
        check_fractions=[1.0],
        training_sets=["T", "T'"],
        check_sets=["X'"],
        seeds=5,
    )

    def runs(*seeds: int) -> list[dict]:
        return [{"seed": s} for s in seeds]

    results = {
        ("small", 1.0, "T"): runs(0, 1, 2, 3, 4),
        ("small", 1.0, "T+classic"): runs(0, 1, 2, 3, 4),
        ("small", 1.0, "T'"): runs(0, 1, 2, 4),  # seed 3 missing: the first 3 are whole
        ("small", 1.0, "X'"): runs(0, 1, 2, 3, 4),
        ("resnet18", 1.0, "T"): runs(0, 1, 2, 3),
        ("resnet18", 1.0, "T'"): runs(0, 1),
    }
    assert downstream.whole_seeds(cfg, results) == {"small": 3, "resnet18": 2}
    del results[("resnet18", 1.0, "T'")]
    assert downstream.whole_seeds(cfg, results)["resnet18"] == 0


def test_check_sets_train_only_for_the_check_archs():
    cfg = downstream.DownstreamConfig(
        run="r",
        archs=["small", "resnet18"],
        check_arch=["small"],
        train_fractions=[0.1, 1.0],
        check_fractions=[1.0],
        training_sets=["T", "T'"],
        check_sets=["X'", "X'2+T2"],
    )
    # the label check is compared with T and T+classic, so the small CNN trains both baselines
    assert cfg.rows_at(1.0, "small") == ["T", "T+classic", "T'", "X'", "X'2+T2"]
    assert cfg.rows_at(1.0, "resnet18") == ["T", "T'"]
    assert cfg.rows_at(0.1, "small") == cfg.rows_at(0.1, "resnet18") == ["T", "T'"]
    assert cfg.rows_at(1.0) == cfg.rows_at(1.0, "small")  # every row some classifier trains
    every = dataclasses.replace(cfg, check_arch=[])
    assert every.rows_at(1.0, "resnet18") == every.rows_at(1.0, "small")


def test_config_checks_and_missing_inputs(tmp_path, run_dir, kit):
    for bad, match in (
        ({"train_fractions": [0.0]}, "train-fraction"),
        ({"check_fractions": [1.5]}, "check-fractions"),
        ({"gen_ratio": 0.0}, "gen-ratio"),
        ({"steps": [1, 2, 3]}, "one per fraction"),
        ({"check_sets": ["Z"]}, "check-sets"),
        ({"check_arch": ["resnet18"]}, "--check-arch .* is not among --arch"),
    ):
        with pytest.raises(ValueError, match=match):
            downstream.DownstreamConfig(run="r", archs=["small"], **bad)
    with pytest.raises(KecaeError, match="--data"):
        downstream.run_downstream(
            downstream.DownstreamConfig(run=str(tmp_path), archs=["small"], device="cpu")
        )
    with pytest.raises(KecaeError, match="not a `kecae phantoms` data set"):
        downstream.run_downstream(kit.downstream_cfg(run_dir, site_bias=0.85))
    assert main(["study", "downstream", "--run", str(run_dir), "--train-fraction", "2"]) == 2
    assert main(["study", "sampling", "--run", str(tmp_path), "--sizes", "0", "-5"]) == 2
