"""The settings a run folder evaluates with by default, and the name of an evaluation written
beside the run's own (the end-to-end reuse is in tests/test_own_data.py)."""

from __future__ import annotations

import json

import yaml

from kecae.evaluation.evaluate import EvaluateConfig
from kecae.evaluation.rerun import beside_name, run_defaults, settings_of


def test_run_defaults_are_the_pipelines(tmp_path):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"seed": 3, "device": "cpu"}))
    (tmp_path / "data_check.json").write_text(json.dumps({"eval_pairs": 42}))
    assert run_defaults(tmp_path) == {
        "cache_dir": str(tmp_path / ".kecae_cache"),
        "seed": 3,
        "device": "cpu",
        "pairs": 42,
    }
    # an --eval-pairs given to kecae run wins over the pre-flight's number
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"seed": 3, "eval_pairs": 7}))
    assert run_defaults(tmp_path)["pairs"] == 7


def test_a_folder_made_by_hand_only_keeps_its_cache(tmp_path):
    assert run_defaults(tmp_path) == {"cache_dir": str(tmp_path / ".kecae_cache")}


def test_beside_names_say_what_differs(tmp_path):
    own = settings_of(EvaluateConfig(run=str(tmp_path), pairs=400))
    other = settings_of(EvaluateConfig(run=str(tmp_path), pairs=500, seed=1, split="val"))
    assert beside_name(other, own) == "pairs500-seed1-split_val"
    judge = settings_of(EvaluateConfig(run=str(tmp_path), pairs=400, judge="/x/judge2/best.pt"))
    assert beside_name(judge, own) == "judge_best"
    quantile = settings_of(EvaluateConfig(run=str(tmp_path), pairs=400, plausibility_quantile=0.95))
    assert beside_name(quantile, own) == "quantile0.95"
