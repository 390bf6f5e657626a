"""The training tests share a learnable data set and a supervisor trained on it (built once for
the folder's tests), and ``kecae_args``, the command line of a short KECAE run."""

from __future__ import annotations

from pathlib import Path

import pytest

from kecae.cli import main


@pytest.fixture(scope="package")
def tree(tmp_path_factory, learnable_tree) -> Path:
    return learnable_tree(tmp_path_factory.mktemp("data"), {"train": 24, "val": 8, "test": 8})


@pytest.fixture(scope="package")
def supervisor(tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sup")
    rc = main(
        [
            "train-classifier",
            "--data",
            str(tree),
            "--out",
            str(out),
            "--arch",
            "small",
            "--image-size",
            "32",
            "--epochs",
            "4",
            "--batch-size",
            "16",
            "--lr",
            "3e-3",
            "--no-progress",
        ]
    )
    assert rc == 0
    return out / "best.pt"


def _kecae_args(tree: Path, sup: Path, out: Path, steps: int) -> list[str]:
    return [
        "train",
        "--data",
        str(tree),
        "--out",
        str(out),
        "--supervisor",
        str(sup),
        "--preset",
        "tiny",
        "--max-steps",
        str(steps),
        "--num-pairs",
        "200",
        "--batch-size",
        "8",
        "--log-every",
        "2",
        "--sample-every",
        "3",
        "--ckpt-every",
        "100",
        "--seed",
        "3",
        "--no-progress",
        "--device",
        "cpu",
    ]


@pytest.fixture(scope="session")
def kecae_args():
    """``kecae_args(tree, supervisor, out, steps)``: a tiny, seeded ``kecae train`` line."""
    return _kecae_args
