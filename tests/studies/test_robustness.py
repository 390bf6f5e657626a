"""`kecae study robustness` (kecae.studies.robustness): the run's recipe trained afresh per seed,
every metric over the seeds with its worst seed, resumable, on a tiny demo run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from kecae.cli import main
from kecae.results import Robustness, format_value, is_finite, lookup
from kecae.studies.robustness import format_robustness, metric_over_seeds


def test_metric_over_seeds_mean_std_and_worst_by_hand():
    # 0.8, (none), 0.6: mean 0.7, sample std sqrt(0.02) = 0.1414; higher is better: 0.6 at seed 7
    m = metric_over_seeds("x", "s.k", "num", "high", [0.8, None, 0.6], [5, 6, 7])
    assert m.mean == pytest.approx(0.7) and m.std == pytest.approx(math.sqrt(0.02))
    assert (m.worst, m.worst_seed) == (0.6, 7)
    low = metric_over_seeds("x", "s.k", "num", "low", [0.8, math.nan, 0.6], [5, 6, 7])
    assert (low.worst, low.worst_seed, low.values[1]) == (0.8, 5, None)
    info = metric_over_seeds("x", "s.k", "pct", "info", [0.1, 0.2], [0, 1])
    assert info.worst is None and info.worst_seed is None
    # a missed target without a number (a -inf median, written as null) is the worst of all
    miss = metric_over_seeds(
        "t", "s.k", "num", "high", [0.9, None, 0.5], [0, 1, 2], ">= 0.7", [True, False, False]
    )
    assert (miss.worst, miss.worst_seed) == (None, 1)
    one = metric_over_seeds("x", "s.k", "num", "high", [0.3], [0])
    assert one.std is None and one.mean == 0.3
    assert (format_value(82.0, "int"), format_value(0.125, "pct")) == ("82", "12.5")
    assert (format_value(0.1234, "num"), format_value(None, "pct")) == ("0.123", "—")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("robustness") / "demo"
    args = ["demo", "--out", str(out), "--kl0", "50", "--kl2", "34", "--phantom-size", "64"]
    args += ["--preset", "tiny", "--classifier-epochs", "1", "--kecae-steps", "2"]
    args += ["--gen-pairs", "4", "--eval-pairs", "12", "--device", "cpu"]
    assert main(args) == 0
    return out


def _config(folder: Path) -> dict:
    return yaml.safe_load((folder / "config.yaml").read_text())


def test_robustness_fresh_runs_summary_and_resume(demo, kit, monkeypatch, capsys):
    args = ["study", "robustness", "--run", str(demo), "--seeds", "2", "--no-progress"]
    args += ["--device", "cpu"]
    study = demo / "studies" / "robustness"

    # --max-minutes stops between sub-runs: exit 75, no section yet
    assert main([*args, "--max-minutes", "1e-9"]) == 75
    assert "robustness" not in json.loads((demo / "metrics.json").read_text())

    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| metric | target | mean ± std | worst (seed) | seed 0 | seed 1 |" in out
    sec = Robustness.from_dict(json.loads((demo / "metrics.json").read_text())["robustness"])
    assert sec.seeds == [0, 1] and sec.reused_seed == 0
    assert sec.eval_pairs == 12 and sec.recipe["kecae_steps"] == 2
    assert len(sec.seconds) == 2 and sec.seconds[1] > sec.seconds[0] > 0  # seed 1 trained

    # seed 0 is the run itself (its models reused, evaluated on the study's pairs); seed 1 a
    # fresh supervisor (seed 1), judge (seed 2) and KECAE (seed 1) with the run's recipe
    assert not (study / "seed_0" / "kecae").exists()
    sup, judge = _config(study / "seed_1" / "supervisor"), _config(study / "seed_1" / "judge")
    kecae = _config(study / "seed_1" / "kecae")
    run_sup, run_kecae = _config(demo / "supervisor"), _config(demo / "kecae")
    assert (sup["seed"], judge["seed"], kecae["seed"]) == (1, 2, 1)
    assert (sup["arch"], sup["epochs"]) == (run_sup["arch"], run_sup["epochs"])
    assert judge["arch"] == _config(demo / "judge")["arch"] != sup["arch"]
    assert (kecae["max_steps"], kecae["preset"]) == (run_kecae["max_steps"], "tiny")
    assert kecae["supervisor"] == "../supervisor/best.pt"  # its own seed's supervisor
    assert (study / "seed_1" / "generated" / "manifest.csv").is_file()

    # every row is the seeds' own metrics.json, summarised
    per_seed = [json.loads((study / f"seed_{s}" / "metrics.json").read_text()) for s in (0, 1)]
    for row in sec.metrics:
        for got, metrics in zip(row.values, per_seed, strict=True):
            want = lookup(metrics, row.metric)
            assert got == (float(want) if is_finite(want) else None)
    rows = {r.name: r for r in sec.metrics}
    hk, hn = rows["SVM on hK"], rows["SVM on hN"]
    a, b = hk.values
    assert hk.mean == pytest.approx((a + b) / 2)
    assert hk.std == pytest.approx(abs(a - b) / math.sqrt(2))
    assert (hk.worst, hk.worst_seed) == (min(a, b), [a, b].index(min(a, b)))
    assert hn.worst == max(hn.values)  # lower is better there
    assert hk.target == ">= 0.85" and hk.met == [v >= 0.85 for v in hk.values]
    met = [sum(t["met"] is True for t in m["targets"].values()) for m in per_seed]
    assert sec.targets_met == met and sec.worst_seed == [0, 1][met.index(min(met))]
    assert "SVM hK" not in rows  # the ablation's column of a target's metric is not repeated
    assert "judge test accuracy" in rows

    # a rerun trains, generates and evaluates nothing again
    kit.forbid(monkeypatch, "train_classifier", "generate", "train_kecae")

    def no_evaluate(*a, **k):
        raise AssertionError("evaluate called on a finished seed")

    monkeypatch.setattr("kecae.evaluation.evaluate.evaluate", no_evaluate)
    assert main(args) == 0
    monkeypatch.undo()

    # a seed killed after training is evaluated again without retraining
    (study / "seed_1" / "metrics.json").unlink()
    kit.forbid(monkeypatch, "train_classifier", "generate", "train_kecae")
    assert main(args) == 0
    assert (study / "seed_1" / "metrics.json").is_file()
    table = format_robustness(json.loads((demo / "metrics.json").read_text())["robustness"])
    assert table.count("\n") == 4 + len(sec.metrics)


def test_robustness_refuses_a_folder_without_a_run(tmp_path, capsys):
    assert main(["study", "robustness", "--run", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    for bad in (["--seeds", "0"], ["--max-minutes", "-1"], ["--eval-pairs", "0"]):
        assert main(["study", "robustness", "--run", str(tmp_path), *bad]) == 2


def test_robustness_report_table(demo):
    from kecae.report.load import load_run
    from kecae.report.robustness import robustness_section

    html = robustness_section(load_run(demo))
    sec = Robustness.from_dict(json.loads((demo / "metrics.json").read_text())["robustness"])
    assert "Worst (seed)" in html and "Seed 1" in html
    assert html.count("<tr>") >= len(sec.metrics)  # a row per metric
    assert f"worst seed {sec.worst_seed}" in html
