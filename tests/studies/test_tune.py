"""`kecae tune` (kecae.studies.tune): the objective by hand, trials on validation pairs in their
own folders, a rerun that continues the Optuna study (and re-runs a trial cut short), and the
best trial against the paper's λ and the run's own settings on the test split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kecae.cli import main
from kecae.registry import SEARCH_SPACE, TUNE_PARAMS
from kecae.studies import tune
from kecae.studies.tune_objective import objective_terms, tune_objective
from kecae.studies.tune_table import params_text

TINY = ["--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """Phantoms, a supervisor and a judge, and a 2-step tiny KECAE with λ1 = 0.1 (so the paper's
    λ is a row of its own)."""
    run = tmp_path_factory.mktemp("tune_run")
    data = run / "data"
    args = ["phantoms", str(data), "--kl0", "60", "--kl2", "40", "--size", "64", "--seed", "5"]
    assert main([*args, "--no-progress"]) == 0
    for name, arch, seed in (("supervisor", "small", "0"), ("judge", "siamese", "1")):
        args = ["train-classifier", "--data", str(data), "--out", str(run / name)]
        args += ["--arch", arch, "--image-size", "32", "--epochs", "1", "--batch-size", "16"]
        assert main([*args, "--seed", seed, *TINY]) == 0
    args = ["train", "--data", str(data), "--out", str(run / "kecae")]
    args += ["--supervisor", str(run / "supervisor" / "best.pt"), "--preset", "tiny"]
    args += ["--max-steps", "2", "--num-pairs", "40", "--batch-size", "4", "--lambda-sup", "0.1"]
    assert main([*args, *TINY]) == 0
    return run


def _args(run: Path, trials: int, *extra: str) -> list[str]:
    return [
        "tune",
        "--run",
        str(run),
        "--trials",
        str(trials),
        "--param",
        "lambda_sup",
        "lambda_lda",
        "--startup-trials",
        "1",
        "--eval-pairs",
        "10",
        "--separability-images",
        "20",
        *extra,
        *TINY,
    ]


def test_objective_by_hand():
    metrics = {
        "exchange_success": {
            "judge_agreement_kl0_to_kl2": 0.8,
            "judge_agreement_kl2_to_kl0": 0.6,
        },
        "fidelity": {
            "key_transfer_median": 1.4,  # clipped to 1
            "key_transfer_median_kl2_to_kl0": -0.2,  # clipped to 0
            "nonkey_ssim_median": 0.9,
        },
        "plausibility": {"ratio_to_real": None},  # not computed: 0
        "separability": {"svm_hk_accuracy": 0.9, "svm_hn_accuracy": 0.7},  # 0.9 - 0.2
    }
    terms = objective_terms(metrics)
    assert terms == pytest.approx(
        {
            "agreement KL-0→KL-2": 0.8,
            "agreement KL-2→KL-0": 0.6,
            "key transfer KL-0→KL-2": 1.0,
            "key transfer KL-2→KL-0": 0.0,
            "non-key SSIM": 0.9,
            "plausible X′ / real": 0.0,
            "separability": 0.7,
        }
    )
    assert tune_objective(metrics) == pytest.approx(4.0 / 7)
    # without ground truth (real data) the three fidelity terms are left out
    del metrics["fidelity"]
    assert tune_objective(metrics) == pytest.approx((0.8 + 0.6 + 0.0 + 0.7) / 4)
    # the CLI's list is generated from the search space, so its ranges cannot drift
    assert list(TUNE_PARAMS) == list(SEARCH_SPACE)
    assert TUNE_PARAMS["lr"].description == "Adam learning rate: log-uniform 0.0001 … 0.003"
    assert TUNE_PARAMS["width"].description.endswith("one of 0.125, 0.25")


def test_params_text_takes_every_kind_of_setting():
    # a categorical setting (sup_target) and an integer (warp_grid) beside floats
    text = params_text({"lambda_sup": 0.044303752, "warp_grid": 16, "sup_target": "donor"})
    assert text == "lambda_sup 0.0443, warp_grid 16, sup_target donor"


def test_run_settings_keep_what_lies_in_the_search_space():
    from kecae.training.config import KECAETrainConfig

    base = KECAETrainConfig(
        data="d", out="o", preset="cpu", lambda_sup=0.1, lambda_lda=0.0, lambda_disp=0.5, lr=1e-3
    )
    space = ["lambda_sup", "lambda_lda", "lambda_disp", "lr", "warp_grid", "width"]
    inputs = tune._Inputs(base=base, judge="j", space=space)
    # lambda_disp 0.5 lies outside its range (1e-3 … 1e-1): left to the sampler
    assert tune.run_settings(inputs) == {
        "lambda_sup": 0.1,
        "lambda_lda": 0.0,
        "lr": 1e-3,
        "warp_grid": 32,
        "width": 0.125,
    }


def test_trial_config_and_key():
    from kecae.training.config import KECAETrainConfig

    base = KECAETrainConfig(model={"depth": 4})
    cfg = tune.trial_config(base, {"width": 0.25, "lambda_sup": 0.3}, "out")
    assert cfg.model == {"depth": 4, "width": 0.25} and cfg.lambda_sup == 0.3
    assert cfg.out == "out" and base.model == {"depth": 4}
    assert tune.trial_key({"a": 1, "b": 2}) == tune.trial_key({"b": 2, "a": 1})


def test_tune_trials_resume_and_final_comparison(run, monkeypatch, capsys):
    import optuna

    from kecae.checkpoint import load_checkpoint

    # one trial, no comparison yet
    assert main(_args(run, 1, "--no-compare")) == 0
    storage = run / "studies" / "tune" / "optuna.sqlite3"
    section = json.loads((run / "metrics.json").read_text())["tune"]
    assert len(section["trials"]) == 1 and section["final"] == []
    first = section["trials"][0]
    assert first["state"] == "COMPLETE" and set(first["params"]) == {"lambda_sup", "lambda_lda"}
    # a new study starts where the run is: its first trial takes the run's own settings
    run_cfg = yaml.safe_load((run / "kecae" / "config.yaml").read_text())
    assert first["params"] == {k: run_cfg[k] for k in ("lambda_sup", "lambda_lda")}
    folder = run / first["folder"]
    # the trial: the run's recipe with its settings, evaluated on validation pairs
    cfg = yaml.safe_load((folder / "kecae" / "config.yaml").read_text())
    assert cfg["lambda_sup"] == first["params"]["lambda_sup"] and cfg["preset"] == "tiny"
    assert load_checkpoint(folder / "kecae" / "checkpoints" / "last.pt")["step"] == 2
    trial_metrics = json.loads((folder / "metrics.json").read_text())
    assert trial_metrics["tune_evaluation"]["split"] == "val"
    assert first["objective"] == pytest.approx(tune_objective(trial_metrics))
    stamp = (folder / "kecae" / "checkpoints" / "last.pt").stat().st_mtime_ns

    # a trial cut short (left RUNNING by a killed run) is run again with the same settings
    study = optuna.load_study(study_name="kecae-tune", storage=f"sqlite:///{storage}")
    study.enqueue_trial({"lambda_sup": 0.5, "lambda_lda": 1e-4})
    cut = study.ask()  # a killed run had drawn these settings and started training
    for name in ("lambda_sup", "lambda_lda"):
        SEARCH_SPACE[name].suggest(cut, name)
    assert cut.params == {"lambda_sup": 0.5, "lambda_lda": 1e-4}

    # the rerun continues the study up to 2 finished trials, then compares on the test split
    assert main(_args(run, 2)) == 0
    out = capsys.readouterr().out
    section = json.loads((run / "metrics.json").read_text())["tune"]
    states = [t["state"] for t in section["trials"]]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"]
    assert section["trials"][2]["params"] == {"lambda_sup": 0.5, "lambda_lda": 1e-4}
    assert (folder / "kecae" / "checkpoints" / "last.pt").stat().st_mtime_ns == stamp
    best = max(
        (t for t in section["trials"] if t["objective"] is not None), key=lambda t: t["objective"]
    )
    assert section["best_trial"] == best["number"] and section["best_params"] == best["params"]
    rows = {r["name"]: r for r in section["final"]}
    assert list(rows) == ["best", "paper", "run"]
    assert rows["paper"]["params"] == {"lambda_sup": 0.01, "lambda_lda": 0.001}
    assert rows["run"]["checkpoint"] == "kecae/checkpoints/last.pt"  # the run's own, reused
    assert rows["best"]["val_objective"] == pytest.approx(best["objective"])
    for r in rows.values():
        assert 0 <= r["test_objective"] <= 1 and r["targets_total"] >= 1
    final = run / "studies" / "tune" / "final"
    paper_cfg = yaml.safe_load((final / "paper" / "kecae" / "config.yaml").read_text())
    assert paper_cfg["lambda_sup"] == 0.01 and paper_cfg["max_steps"] == 2
    test_metrics = json.loads((final / "paper" / "test" / "metrics.json").read_text())
    assert test_metrics["tune_evaluation"]["split"] == "test"
    assert "best trial vs the paper's λ" in out and "objective: mean of 7 terms" in out

    # everything finished: a rerun trains and evaluates nothing
    import kecae.evaluation.evaluate as evaluate_module
    import kecae.training.kecae_trainer as trainer

    def fail(*args, **kwargs):
        raise AssertionError("called on a finished study")

    monkeypatch.setattr(trainer, "train_kecae", fail)
    monkeypatch.setattr(evaluate_module, "evaluate", fail)
    assert main(_args(run, 2)) == 0
    assert json.loads((run / "metrics.json").read_text())["tune"]["final"] == section["final"]
    # other settings on the same study are refused
    capsys.readouterr()
    assert main(_args(run, 2, "--eval-pairs", "11")) == 2
    assert "tuning study made with other settings" in capsys.readouterr().err

    assert main(["report", "--run", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "Tuning λ1, λ2 and the exchange options" in page and "Could not draw" not in page
