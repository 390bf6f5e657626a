"""Augmentation studies: each writes its metrics.json section with the report's shapes, keeps the
other sections, resumes from finished sub-runs, and its means/stds are the per-seed runs'."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

import kecae.studies as S
from kecae.cli import main
from kecae.generation import GenerateConfig, generate
from kecae.utils import KecaeError

from test_training import write_learnable_tree

SMALL = dict(epochs=1, patience=1, batch_size=8, seeds=2, device="cpu", progress=False)


def downstream_cfg(run: Path, **kw) -> S.DownstreamConfig:
    return S.DownstreamConfig(run=str(run), archs=["small"], pairs=10, **{**SMALL, **kw})


def sampling_cfg(run: Path) -> S.SamplingConfig:
    return S.SamplingConfig(run=str(run), arch="small", sizes=[8, 0, 3],
                            **{**SMALL, "epochs": 2, "patience": 5})


def lambda_cfg(run: Path, **kw) -> S.LambdaGridConfig:
    return S.LambdaGridConfig(**{**dict(run=str(run), lambda1=[1e-2, 1.0], lambda2=[1e-3, 0.5],
                                        kecae_steps=2, images=12, device="cpu", progress=False),
                                 **kw})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread for this module: its tensors are tiny, and on a shared 2-core machine
    two threads contending with other processes made these runs ~8x slower (measured)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run_dir(one_thread, tmp_path_factory) -> Path:
    """A tiny run folder: data, supervisor, a 2-step tiny KECAE, 6 generated pairs, and a
    metrics.json section that the studies must keep."""
    root = tmp_path_factory.mktemp("study")
    data = write_learnable_tree(root / "data", {"train": 10, "val": 6, "test": 6}, seed=2)
    run = root / "run"
    assert main(["train-classifier", "--data", str(data), "--out", str(run / "supervisor"),
                 "--arch", "small", "--image-size", "32", "--epochs", "1", "--batch-size", "8",
                 "--no-progress", "--device", "cpu"]) == 0
    assert main(["train", "--data", str(data), "--out", str(run / "kecae"), "--supervisor",
                 str(run / "supervisor" / "best.pt"), "--preset", "tiny", "--max-steps", "2",
                 "--num-pairs", "50", "--batch-size", "8", "--no-progress", "--device", "cpu"]) == 0
    generate(GenerateConfig(checkpoint=str(run / "kecae" / "checkpoints" / "last.pt"),
                            data=str(data), out=str(run / "generated"), pairs=6, progress=False,
                            device="cpu"))
    (run / "metrics.json").write_text(json.dumps({"separability": {"svm_hk_accuracy": 0.75}}))
    return run


def _forbid(monkeypatch, *names: str) -> None:
    """Make the named kecae.studies callables fail: a resumed study must not call them."""
    for name in names:
        def fail(*args, _name=name, **kwargs):
            raise AssertionError(f"{_name} called on a finished study")
        monkeypatch.setattr(S, name, fail)


def _run_metrics(folder: Path) -> list[dict]:
    return [json.loads((folder / f"seed_{s}" / "metrics.json").read_text()) for s in (0, 1)]


def test_downstream_section_statistics_and_resume(run_dir, monkeypatch, capsys):
    sec = S.run_downstream(downstream_cfg(run_dir))
    assert [r["training_set"] for r in sec["rows"]] == ["T", "T+classic", "T'"]
    keys = {"model", "training_set", "accuracy_mean", "accuracy_std", "precision_mean",
            "precision_std", "recall_mean", "recall_std", "auc_mean", "auc_std", "n_seeds",
            "n_train_real", "n_train_generated"}
    root = run_dir / "studies" / "downstream" / "small"
    per = {name: _run_metrics(root / folder) for name, (folder, _, _) in S.TRAINING_SETS.items()}
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
    _forbid(monkeypatch, "train_classifier")
    assert main(["study", "downstream", "--run", str(run_dir), "--arch", "small", "--pairs", "10",
                 "--epochs", "1", "--patience", "1", "--batch-size", "8", "--seeds", "2",
                 "--device", "cpu", "--no-progress"]) == 0
    assert "T+classic" in capsys.readouterr().out
    assert json.loads((run_dir / "metrics.json").read_text())["downstream"] == sec
    # other settings on the same sub-runs are refused, not mixed in
    with pytest.raises(KecaeError, match="other settings"):
        S.run_downstream(downstream_cfg(run_dir, epochs=2))


def test_sampling_first_pairs_curves_and_resume(run_dir, monkeypatch):
    cfg = sampling_cfg(run_dir)
    sec = S.run_sampling(cfg)
    root = run_dir / "studies" / "sampling"
    # 8 pairs > the 6 of RUN/generated: generated once, N = 3 takes its first 3 pairs
    assert sec["N"] == [0, 3, 8] and Path(sec["generated_from"]) == root / "gen_8"
    rows = list(csv.DictReader(open(root / "first_3_pairs.csv")))
    assert sorted(int(r["pair_index"]) for r in rows) == [0, 0, 1, 1, 2, 2]
    # paths inside the run folder are relative to the manifest's folder (the run may move)
    assert all(not Path(r["path"]).is_absolute() and (root / r["path"]).is_file() for r in rows)
    for k, n in enumerate(sec["N"]):
        ms = _run_metrics(root / f"N_{n}")
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

    _forbid(monkeypatch, "train_classifier", "generate")
    assert S.run_sampling(cfg) == sec
    # a smaller study reuses RUN/generated (same checkpoint and pair seed, enough pairs)
    _forbid(monkeypatch, "train_classifier", "generate")
    with pytest.raises(AssertionError, match="train_classifier"):
        S.run_sampling(S.SamplingConfig(run=str(run_dir), arch="small", sizes=[5], **SMALL))
    assert not (root / "gen_5").exists()
    assert Path(list(csv.DictReader(open(root / "first_5_pairs.csv")))[0]["path"]).is_relative_to(
        run_dir / "generated")


def test_lambda_grid_shapes_values_and_resume(run_dir, monkeypatch):
    cfg = lambda_cfg(run_dir)
    sec = S.run_lambda_grid(cfg)
    assert sec["lambda1"] == [1e-2, 1.0] and sec["lambda2"] == [1e-3, 0.5]
    for key in ("svm_hk_accuracy", "svm_hn_accuracy", "final_mse"):
        assert np.shape(sec[key]) == (2, 2)
    assert all(0 <= a <= 1 for row in sec["svm_hk_accuracy"] for a in row)
    assert sec["steps"] == 2 and sec["n_images"] == 12
    # one cell recomputed by hand from its checkpoint: same trainer settings, same SVM number
    from kecae.evaluation.metrics import svm_separability
    from kecae.inference import encode, load_kecae
    from kecae.training.checkpoint import load_checkpoint

    cell = run_dir / "studies" / "lambda_grid" / "l1_1_l2_0.001"
    ckpt = load_checkpoint(cell / "checkpoints" / "last.pt", kind="kecae")
    tc = ckpt["train_config"]
    assert ckpt["step"] == 2 and tc["preset"] == "tiny"
    assert (tc["lambda_sup"], tc["lambda_lda"]) == (1.0, 1e-3)
    assert tc["supervisor"] == str((run_dir / "supervisor" / "best.pt").resolve())
    images, labels = S._test_latent_sample(tc["data"], 32, 12, tc["seed"], None)
    hk, _ = encode(load_kecae(str(cell / "checkpoints" / "last.pt"))[0], images)
    expected = svm_separability(hk, labels, seed=tc["seed"])["mean"]
    assert sec["svm_hk_accuracy"][1][0] == pytest.approx(expected)
    assert "separability" in json.loads((run_dir / "metrics.json").read_text())

    _forbid(monkeypatch, "train_kecae", "encode")
    assert S.run_lambda_grid(cfg) == sec
    with pytest.raises(KecaeError, match="kecae-steps 2"):  # fewer steps than a cell holds
        S.run_lambda_grid(lambda_cfg(run_dir, kecae_steps=1))


def test_report_shows_the_three_studies(run_dir):
    from kecae.report import write_report

    # finished by the tests above (then these calls only read), or computed here when run alone
    S.run_downstream(downstream_cfg(run_dir))
    S.run_sampling(sampling_cfg(run_dir))
    S.run_lambda_grid(lambda_cfg(run_dir))
    page = write_report(run_dir).read_text()
    assert "Table II" in page and "Fig. 3" in page and "Fig. 5b" in page
    assert "Not computed: downstream" not in page
    assert page.count("data:image/png;base64,") >= 2  # the λ grid and the sampling curve
    assert "T+classic" in page and "Could not draw" not in page


@pytest.mark.parametrize("cls, values, match", [
    (S.DownstreamConfig, dict(run="r", seeds=0), "seeds"),
    (S.DownstreamConfig, dict(run="r", archs=["nope"]), "architecture"),
    (S.DownstreamConfig, dict(run="r", training_sets=["T''"]), "training set"),
    (S.DownstreamConfig, dict(run=""), "run folder"),
    (S.SamplingConfig, dict(run="r", sizes=[0, -5]), "sizes"),
    (S.SamplingConfig, dict(run="r", sizes=[5, 5]), "distinct"),
    (S.LambdaGridConfig, dict(run="r", lambda1=[]), "lambda1"),
    (S.LambdaGridConfig, dict(run="r", kecae_steps=0), "kecae_steps"),
])
def test_bad_arguments_raise(cls, values, match):
    with pytest.raises(ValueError, match=match):
        cls(**values)


def test_cli_unset_options_keep_the_dataclass_defaults():
    from kecae.cli import build_parser
    from kecae.studies_cli import _COMMON, _given

    args = build_parser().parse_args(["study", "downstream", "--run", "r"])
    assert S.DownstreamConfig(**_given(args, *_COMMON, "generated", "pairs", archs="arch",
                                       training_sets="sets")) == S.DownstreamConfig(run="r")
    args = build_parser().parse_args(["study", "sampling", "--run", "r", "--sizes", "0", "7",
                                      "--no-progress", "--epochs", "2"])
    got = S.SamplingConfig(**_given(args, *_COMMON, "sizes", "arch", "checkpoint", "gen_seed"))
    assert got == S.SamplingConfig(run="r", sizes=[0, 7], progress=False, epochs=2)


def test_missing_inputs_are_user_errors(tmp_path, run_dir):
    with pytest.raises(KecaeError, match="--data"):
        S.run_downstream(S.DownstreamConfig(run=str(tmp_path), archs=["small"], **SMALL))
    with pytest.raises(KecaeError, match="kecae generate"):
        S.run_downstream(S.DownstreamConfig(run=str(run_dir), archs=["small"], **SMALL,
                                            generated=str(tmp_path / "none")))
    assert main(["study", "sampling", "--run", str(tmp_path), "--sizes", "0", "-5"]) == 2


def test_write_section_and_paired_difference(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"quality": {"recon_ssim": 0.9}}))
    S.write_section(tmp_path, "downstream", {"x": [1.0, math.nan], "n": np.int64(3)})
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == {"quality": {"recon_ssim": 0.9}, "downstream": {"x": [1.0, None], "n": 3}}
    d = S.paired_difference([0.8, 0.9, 0.7], [0.75, 0.8, 0.7])
    assert d["values"] == pytest.approx([0.05, 0.1, 0.0])
    assert d["mean"] == pytest.approx(0.05) and d["std"] == pytest.approx(0.05)
    # paired t: t = mean / (std / sqrt(n)) = sqrt(3); two-sided p from Student t with 2 dof
    from scipy import stats

    assert d["p_value"] == pytest.approx(2 * stats.t.sf(math.sqrt(3), 2))
    single = S.paired_difference([0.6], [0.5])
    assert single["std"] == 0.0 and math.isnan(single["p_value"])
    with pytest.raises(ValueError, match="equal-length"):
        S.paired_difference([0.5, 0.6], [0.5])
