"""Generation (kecae.generation): layout, manifest back to the right source images, resume
after an interruption, refusal of a folder made by another checkpoint, T' usable by
train-classifier."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kecae.cli import main
from kecae.errors import KecaeError
from kecae.generation import GenerateConfig, generate


@pytest.fixture(scope="module")
def trained(tmp_path_factory, learnable_tree) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gen")
    data = learnable_tree(root / "data", {"train": 10, "val": 6, "test": 6}, seed=1)
    assert (
        main(
            [
                "train-classifier",
                "--data",
                str(data),
                "--out",
                str(root / "sup"),
                "--arch",
                "small",
                "--image-size",
                "32",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--no-progress",
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
                str(root / "k"),
                "--supervisor",
                str(root / "sup" / "best.pt"),
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
    return {"data": data, "ckpt": root / "k" / "checkpoints" / "last.pt", "root": root}


def test_layout_manifest_and_pair_mapping(trained, tmp_path):
    out = tmp_path / "g"
    assert (
        main(
            [
                "generate",
                "--checkpoint",
                str(trained["ckpt"]),
                "--data",
                str(trained["data"]),
                "--pairs",
                "7",
                "--out",
                str(out),
                "--batch-size",
                "3",
                "--no-progress",
            ]
        )
        == 0
    )
    assert len(list((out / "2").glob("*.png"))) == 7 and len(list((out / "0").glob("*.png"))) == 7
    rows = list(csv.DictReader((out / "manifest.csv").read_text().splitlines()))
    assert len(rows) == 14
    for r in rows:
        png = Image.open(out / r["path"])
        img = np.asarray(png)
        assert img.shape == (32, 32) and img.dtype == np.uint8
        # marked synthetic, with its pair, donor, recipient and checkpoint
        assert png.text["kecae:synthetic"] == "true" and png.text["kecae:pair"] == r["pair_index"]
        assert png.text["kecae:donor"] == r["donor_id"]
        assert png.text["kecae:recipient"] == r["recipient_id"]
        assert png.text["kecae:checkpoint_sha256"] == r["checkpoint_sha256"]
        assert r["split"] == "train" and len(r["checkpoint_sha256"]) == 64
        # the sources are train images of the right grades: recipient's grade is the other class
        assert "/train/" in r["recipient_path"] and "/train/" in r["donor_path"]
        want_recipient = "0" if r["direction"] == "kl0_to_kl2" else "2"
        assert Path(r["recipient_path"]).parent.name == want_recipient
        assert int(r["grade"]) == (2 if r["direction"] == "kl0_to_kl2" else 0)
    # pair k's image is exactly the model's exchange of the manifest's two source images
    import torch

    from kecae.data import preprocess, read_image
    from kecae.inference import load_kecae

    model, _ = load_kecae(str(trained["ckpt"]))
    r = next(r for r in rows if r["direction"] == "kl0_to_kl2" and r["pair_index"] == "4")
    x1 = torch.from_numpy(preprocess(read_image(r["recipient_path"]), 32))[None, None]
    x2 = torch.from_numpy(preprocess(read_image(r["donor_path"]), 32))[None, None]
    with torch.no_grad():
        x1_ex, _ = model.exchange(x1, x2)
    expected = np.clip((x1_ex[0, 0].numpy() + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    got = np.asarray(Image.open(out / r["path"]))
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    # the generated folder is a data set: it loads through its manifest as the train split
    from kecae.data import load_image_set

    s = load_image_set(out, size=32, split="train", progress=False)
    assert len(s.images) == 14 and sorted(set(s.grades.tolist())) == [0, 2]


def test_resume_after_interruption(trained, tmp_path, monkeypatch):
    out = tmp_path / "g"
    cfg = GenerateConfig(
        checkpoint=str(trained["ckpt"]),
        data=str(trained["data"]),
        out=str(out),
        pairs=9,
        batch_size=3,
        progress=False,
    )
    import kecae.generated_files as g

    real, calls = g._write_png, {"n": 0}

    def flaky(path, image, marks):  # the 8th image write dies mid-run
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        real(path, image, marks)

    monkeypatch.setattr(g, "_write_png", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate(cfg)
    assert not (out / "manifest.csv").exists()
    assert not list(out.rglob("*.tmp"))  # no half-written file left behind
    done_before = len(list(out.rglob("*.png")))
    monkeypatch.setattr(g, "_write_png", real)
    summary = generate(cfg)
    assert (
        summary["skipped_pairs"] >= 3 and summary["written_pairs"] + summary["skipped_pairs"] == 9
    )
    assert len(list(out.rglob("*.png"))) == 18 > done_before
    assert len(list(csv.DictReader((out / "manifest.csv").read_text().splitlines()))) == 18
    again = generate(cfg)
    assert again["written_pairs"] == 0 and again["skipped_pairs"] == 9


def test_refuses_folder_of_other_settings_and_too_many_pairs(trained, tmp_path):
    out = tmp_path / "g"
    cfg = GenerateConfig(
        checkpoint=str(trained["ckpt"]),
        data=str(trained["data"]),
        out=str(out),
        pairs=2,
        progress=False,
    )
    generate(cfg)
    meta = json.loads((out / "generation.json").read_text())
    meta["checkpoint_sha256"] = "0" * 64
    (out / "generation.json").write_text(json.dumps(meta))
    with pytest.raises(KecaeError, match=r"checkpoint_sha256 '0000.*another --out"):
        generate(cfg)
    with pytest.raises(KecaeError, match="at most 100"):
        generate(
            GenerateConfig(
                checkpoint=str(trained["ckpt"]),
                data=str(trained["data"]),
                out=str(tmp_path / "h"),
                pairs=101,
                progress=False,
            )
        )


def test_augmented_training_set(trained, tmp_path):
    out = tmp_path / "g"
    generate(
        GenerateConfig(
            checkpoint=str(trained["ckpt"]),
            data=str(trained["data"]),
            out=str(out),
            pairs=6,
            progress=False,
        )
    )
    assert (
        main(
            [
                "train-classifier",
                "--data",
                str(trained["data"]),
                "--augment-dir",
                str(out),
                "--out",
                str(tmp_path / "c"),
                "--arch",
                "small",
                "--image-size",
                "32",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--no-progress",
            ]
        )
        == 0
    )
    m = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert m["n_train_real"] == 20 and m["n_train_generated"] == 12


def test_folder_of_an_older_kecae_resumes_without_marks(trained, tmp_path):
    """Images written before the PNG marks existed (generation.json without "format") still
    count as done, on this rerun and the next; a folder of this kecae requires the marks."""
    out = tmp_path / "g"
    cfg = GenerateConfig(
        checkpoint=str(trained["ckpt"]),
        data=str(trained["data"]),
        out=str(out),
        pairs=2,
        progress=False,
    )
    generate(cfg)
    meta = json.loads((out / "generation.json").read_text())
    del meta["format"]
    (out / "generation.json").write_text(json.dumps(meta))
    for png in out.rglob("*.png"):  # the same pixels, no text chunks: what older kecae wrote
        Image.fromarray(np.asarray(Image.open(png))).save(png)
    for pairs, written in ((3, 1), (3, 0)):
        s = generate(GenerateConfig(**{**cfg.__dict__, "pairs": pairs}))
        assert (s["written_pairs"], s["skipped_pairs"]) == (written, pairs - written)
    meta = json.loads((out / "generation.json").read_text())
    meta["format"] = 2
    (out / "generation.json").write_text(json.dumps(meta))
    with pytest.raises(
        KecaeError, match=r"pair0000000_kl0to2\.png is not an image this generation"
    ):
        generate(GenerateConfig(**{**cfg.__dict__, "pairs": 3}))
