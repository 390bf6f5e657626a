"""kecae.evaluation.evaluate: the sections in metrics.json's order with the targets last, the
report's arrays, the progress stages, and a run folder without a KECAE refused by name. (The
whole evaluation on a trained run: tests/test_pipeline.py.)"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from kecae.errors import KecaeError
from kecae.evaluation import evaluate as evaluate_module
from kecae.evaluation.config import EvaluateConfig
from kecae.evaluation.evaluate import STAGES, _in_order, _save_report_arrays, evaluate
from kecae.evaluation.inputs import Measured
from kecae.evaluation.summary import TARGETS
from kecae.results import JudgeSummary, Quality, Separability, SupervisorSummary
from kecae.runfolder import RunLayout


def _partial(cls, **values):
    return dataclasses.replace(cls.from_dict({}), **values)


def test_sections_in_order_then_the_targets():
    separability = _partial(Separability, svm_hk_accuracy=0.9, svm_hn_accuracy=0.7)
    judge = _partial(JudgeSummary, arch="small", test_accuracy=0.8)
    supervisor = _partial(SupervisorSummary, arch="siamese")
    quality = _partial(Quality, recon_psnr=24.0)
    # None: a section not computed on this data (fidelity, oracle, grade match off phantoms)
    out = _in_order(separability, None, judge, supervisor, None, quality, None, None)
    assert list(out) == ["separability", "judge", "supervisor", "quality", "targets"]
    assert out["separability"] == separability.to_dict()
    targets = out["targets"]
    assert list(targets) == [spec.name for spec in TARGETS]  # every target, in the report's order
    assert targets["SVM on hK"]["met"] is True and targets["SVM on hK"]["value"] == 0.9
    assert targets["SVM on hN"]["met"] is False  # <= 0.65 wanted
    key_transfer = "key transfer median, KL-0 -> KL-2 (refusals fail)"
    assert targets[key_transfer]["met"] is None and targets[key_transfer]["value"] is None
    assert json.loads(json.dumps(out)) == out  # plain JSON


def _measured(n: int) -> Measured:
    return Measured(
        ok=np.ones(n, bool),
        jsw=np.arange(n, dtype=np.float64),
        osteophytes=np.zeros(n, bool),
        joint_row=np.full(n, 16.0),
    )


@pytest.mark.parametrize("with_fidelity", [True, False])
def test_the_report_s_arrays(tmp_path, with_fidelity):
    layout = RunLayout(tmp_path)
    n, examples = 5, 3
    names = ("x1", "x2", "x1_hat", "x2_hat", "x1_ex", "x2_ex")
    images = {name: np.full((n, 8, 8), i, np.float64) for i, name in enumerate(names)}
    measured = {name: _measured(n) for name in ("x1", "x1_ex", "x2", "x2_ex")}
    fidelity = {"nonkey_ssim": np.linspace(0, 1, n)} if with_fidelity else {}
    _save_report_arrays(layout, images, measured, examples, fidelity)
    with np.load(layout.eval.examples) as ex:
        assert set(ex.files) == set(names) | {
            f"{q}_{name}" for q in ("jsw", "joint_row") for name in measured
        }
        assert ex["x1_ex"].shape == (examples, 8, 8) and ex["x1_ex"].dtype == np.float32
        assert ex["x2"][0, 0, 0] == 1  # each set under its own name
        assert list(ex["jsw_x2_ex"]) == [0, 1, 2]
    assert layout.eval.fidelity.is_file() == with_fidelity
    assert not list(layout.eval.folder.glob("*.tmp*"))  # written atomically


def test_the_progress_bar_counts_every_stage(tmp_path, monkeypatch):
    seen: list[str] = []

    def fake(cfg, layout, device, stage):
        for name in STAGES:
            seen.append(name)
            stage(name)
        return {"done": True}

    monkeypatch.setattr(evaluate_module, "_evaluate", fake)
    cfg = EvaluateConfig(run=str(tmp_path), progress=False, device="cpu")
    assert evaluate(cfg) == {"done": True}
    assert seen == list(STAGES) and len(set(STAGES)) == len(STAGES) == 8


def test_a_run_folder_without_kecae_is_refused_by_name(tmp_path):
    with pytest.raises(KecaeError, match=r"kecae/checkpoints/last\.pt does not exist"):
        evaluate(EvaluateConfig(run=str(tmp_path), progress=False, device="cpu"))
    assert not (tmp_path / "metrics.json").exists()  # nothing written
