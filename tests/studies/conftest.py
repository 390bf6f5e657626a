"""The studies' tests share one tiny run folder (``run_dir``, built once for the folder's tests,
which run in file order: the report test last) and the small settings of ``kit``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kecae.cli import main
from kecae.generation import GenerateConfig, generate
from kecae.studies.downstream import DownstreamConfig
from kecae.studies.lambda_grid import LambdaGridConfig
from kecae.studies.sampling import SamplingConfig

SMALL = dict(epochs=1, patience=1, batch_size=8, seeds=2, device="cpu", progress=False)

#: What a resumed study must not call again, by the name the tests use.
CALLABLES = {
    "train_classifier": "kecae.training.classifier_trainer.train_classifier",
    "generate": "kecae.generation.generate",
    "train_kecae": "kecae.training.kecae_trainer.train_kecae",
    "encode": "kecae.inference.encode",
}


def downstream_cfg(run: Path, **kw: Any) -> DownstreamConfig:
    """Half and all of the training patients, 4 steps per row; T' draws one generated image
    per two real ones; at 1.0 also the label check (X', X'1 + real KL-0), the supervisor's
    filter and pre-training."""
    small = {k: v for k, v in SMALL.items() if k not in ("epochs", "patience")}
    return DownstreamConfig(
        run=str(run),
        archs=["small"],
        training_sets=["T", "T+classic", "T'", "T+mixup"],
        check_sets=["X'", "X'1+T0", "T'confirmed", "X'->T"],
        train_fractions=[1.0, 0.5],
        check_fractions=[1.0],
        steps=[4],
        gen_ratio=0.5,
        filter_confidence=0.5,
        **{**small, **kw},
    )


def sampling_cfg(run: Path) -> SamplingConfig:
    return SamplingConfig(
        run=str(run), arch="small", sizes=[8, 0, 3], **{**SMALL, "epochs": 2, "patience": 5}
    )


def lambda_cfg(run: Path, **kw: Any) -> LambdaGridConfig:
    return LambdaGridConfig(
        **{
            **dict(
                run=str(run),
                lambda1=[1e-2, 1.0],
                lambda2=[1e-3, 0.5],
                kecae_steps=2,
                images=12,
                device="cpu",
                progress=False,
            ),
            **kw,
        }
    )


def forbid(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make the named callables fail: a resumed study must not call them."""
    for name in names:

        def fail(*args: Any, _name: str = name, **kwargs: Any) -> None:
            raise AssertionError(f"{_name} called on a finished study")

        monkeypatch.setattr(CALLABLES[name], fail)


def run_metrics(folder: Path) -> list[dict]:
    return [json.loads((folder / f"seed_{s}" / "metrics.json").read_text()) for s in (0, 1)]


class StudyKit:
    """The helpers above, handed to the tests by the ``kit`` fixture."""

    SMALL = SMALL
    downstream_cfg = staticmethod(downstream_cfg)
    sampling_cfg = staticmethod(sampling_cfg)
    lambda_cfg = staticmethod(lambda_cfg)
    forbid = staticmethod(forbid)
    run_metrics = staticmethod(run_metrics)


@pytest.fixture(scope="session")
def kit() -> type[StudyKit]:
    return StudyKit


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """One torch thread for these tests: their tensors are tiny, and on a shared 2-core machine
    two threads contending with other processes made these runs ~8x slower (measured)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="package")
def run_dir(one_thread, tmp_path_factory, learnable_tree) -> Path:
    """A tiny run folder: data, supervisor, a 2-step tiny KECAE, 6 generated pairs, and a
    metrics.json section that the studies must keep."""
    root = tmp_path_factory.mktemp("study")
    data = learnable_tree(root / "data", {"train": 10, "val": 6, "test": 6}, seed=2)
    run = root / "run"
    assert (
        main(
            [
                "train-classifier",
                "--data",
                str(data),
                "--out",
                str(run / "supervisor"),
                "--arch",
                "small",
                "--image-size",
                "32",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--out",
                str(run / "kecae"),
                "--supervisor",
                str(run / "supervisor" / "best.pt"),
                "--preset",
                "tiny",
                "--max-steps",
                "2",
                "--num-pairs",
                "50",
                "--batch-size",
                "8",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    generate(
        GenerateConfig(
            checkpoint=str(run / "kecae" / "checkpoints" / "last.pt"),
            data=str(data),
            out=str(run / "generated"),
            pairs=6,
            progress=False,
            device="cpu",
        )
    )
    (run / "metrics.json").write_text(json.dumps({"separability": {"svm_hk_accuracy": 0.75}}))
    return run
