"""Checkpoints (kecae.checkpoint): paths stored relative inside the run folder, clear errors
for a missing or damaged file."""

from __future__ import annotations

import pytest
import torch

from kecae.checkpoint import load_checkpoint
from kecae.errors import KecaeError


def test_checkpoint_paths_are_stored_relative_inside_the_run_folder(tmp_path):
    """Inside a run root (a folder with run.yaml) paths are stored relative to the checkpoint's
    folder and read back absolute; outside it they stay absolute."""
    from kecae.checkpoint import save_checkpoint

    (tmp_path / "run.yaml").write_text("data: data\n")
    cfg = {
        "data": str(tmp_path / "data"),
        "supervisor": str(tmp_path / "sup" / "best.pt"),
        "out": str(tmp_path / "kecae"),
        "cache_dir": None,
        "augment_dirs": ["/elsewhere/gen"],
    }
    path = save_checkpoint(
        tmp_path / "kecae" / "checkpoints" / "last.pt",
        {"kind": "kecae", "model": {}, "model_config": {}, "train_config": cfg},
    )
    raw = torch.load(path, weights_only=True)["train_config"]
    assert raw["data"] == "../../data" and raw["out"] == ".." and raw["cache_dir"] is None
    assert raw["supervisor"] == "../../sup/best.pt" and raw["augment_dirs"] == ["/elsewhere/gen"]
    assert load_checkpoint(path)["train_config"] == cfg


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    from kecae.checkpoint import load_checkpoint as load

    with pytest.raises(KecaeError, match="does not exist"):
        load(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(KecaeError, match="cannot read checkpoint"):
        load(tmp_path / "junk.pt")
