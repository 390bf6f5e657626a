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


def test_an_unrecorded_evaluation_is_kept_before_it_is_replaced(tmp_path, capsys):
    """metrics.json written by an earlier kecae (targets, no settings record) is copied to
    RUN/evaluations/unrecorded/ once; a recorded one, or one without an evaluation, is not."""
    from kecae.evaluation.rerun import keep_unrecorded

    old = {"separability": {"svm_hk": 0.8}, "targets": {"t": {"met": True}}}
    (tmp_path / "metrics.json").write_text(json.dumps(old))
    copy = keep_unrecorded(tmp_path)
    assert copy == tmp_path / "evaluations" / "unrecorded" / "metrics.json"
    assert json.loads(copy.read_text()) == old
    assert "kept as" in capsys.readouterr().out
    # the first copy is never replaced by a later one
    (tmp_path / "metrics.json").write_text(json.dumps({**old, "targets": {"t": {"met": False}}}))
    assert keep_unrecorded(tmp_path) is None
    assert json.loads(copy.read_text()) == old

    recorded = tmp_path / "recorded"
    recorded.mkdir()
    (recorded / "metrics.json").write_text(json.dumps({**old, "evaluation": {"settings": {}}}))
    assert keep_unrecorded(recorded) is None
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "metrics.json").write_text(json.dumps({"run": {"seed": 0}}))
    assert keep_unrecorded(fresh) is None
    assert not (recorded / "evaluations").exists() and not (fresh / "evaluations").exists()
