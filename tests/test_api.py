"""The Python API (kecae.api): kecae.load(checkpoint).exchange(...) on paths, PIL images,
arrays and tensors of any size, with training's preprocessing; `import kecae` stays free of
torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import kecae
from kecae.cli import main
from kecae.errors import KecaeError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, learnable_tree) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("api")
    data = learnable_tree(root / "data", {"train": 8, "val": 4, "test": 4}, size=40, seed=5)
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
                str(root / "k"),
                "--supervisor",
                str(root / "sup" / "best.pt"),
                "--preset",
                "tiny",
                "--max-steps",
                "2",
                "--num-pairs",
                "40",
                "--batch-size",
                "8",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    return {"data": data, "ckpt": root / "k" / "checkpoints" / "last.pt"}


def test_readme_example(trained, tmp_path, monkeypatch):
    """The README's Python example, run as written there (its file names pointed at real ones)."""
    readme = (REPO / "README.md").read_text()
    code = readme.split("## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 10
    healthy = sorted((trained["data"] / "train" / "0").glob("*.png"))[0]
    early_oa = sorted((trained["data"] / "train" / "2").glob("*.png"))[0]
    code = (
        code.replace("runs/demo/kecae/checkpoints/last.pt", str(trained["ckpt"]))
        .replace('"healthy.png"', repr(str(healthy)))
        .replace('"early_oa.png"', repr(str(early_oa)))
    )
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    x1_ex, x2_ex = scope["x1_ex"], scope["x2_ex"]
    assert isinstance(x1_ex, Image.Image) and x1_ex.size == (40, 40) and x1_ex.mode == "L"
    assert x2_ex.size == (40, 40) and scope["model"].image_size == 32
    assert Image.open(tmp_path / "healthy_with_oa_key.png").size == (40, 40)
    assert scope["recon"].shape == (40, 40) and scope["recon"].dtype == np.uint8
    assert scope["h_key"].ndim == 1


def test_same_preprocessing_as_training_and_same_images_as_the_model(trained):
    """An input goes through exactly the cached training preprocessing; at the model's own size
    the output is the model's exchange itself."""
    from kecae.data import load_image_set

    model = kecae.load(trained["ckpt"], device="cpu")
    train0 = load_image_set(trained["data"], size=32, split="train", grades=(0,), progress=False)
    path = train0.paths[3]
    assert torch.equal(model._prepare(path).x[0, 0], torch.from_numpy(np.array(train0.images[3])))

    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (32, 32), dtype=np.uint8) for _ in range(2))
    out_a, _out_b = model.exchange(a, b)
    assert out_a.dtype == np.uint8 and out_a.shape == (32, 32)
    xa = torch.from_numpy(a.astype(np.float32) / 255 * 2 - 1)[None, None]
    xb = torch.from_numpy(b.astype(np.float32) / 255 * 2 - 1)[None, None]
    with torch.no_grad():
        ya, _yb = model.model.exchange(xa, xb)
    want = np.round((ya[0, 0].numpy() + 1) / 2 * 255).astype(int)
    assert np.abs(out_a.astype(int) - want).max() <= 1


def test_any_size_and_kind_comes_back_as_given(trained):
    model = kecae.load(trained["ckpt"], device="cpu")
    rng = np.random.default_rng(1)
    wide = rng.random((40, 60))  # float in [0, 1], not square: centre square 40 x 40
    other = torch.from_numpy(rng.random((1, 50, 50)).astype(np.float32))
    out_w, out_t = model.exchange(wide, other)
    assert out_w.shape == (40, 60) and out_w.dtype == np.float32
    assert np.allclose(out_w[:, :10], wide[:, :10]) and np.allclose(out_w[:, 50:], wide[:, 50:])
    assert not np.allclose(out_w[:, 10:50], wide[:, 10:50])  # the square was exchanged
    assert isinstance(out_t, torch.Tensor) and out_t.shape == (1, 50, 50)
    assert float(out_t.min()) >= 0.0 and float(out_t.max()) <= 1.0
    pil16 = Image.fromarray((rng.random((36, 36)) * 65535).astype(np.uint16))
    rec = model.reconstruct(pil16)
    assert isinstance(rec, Image.Image) and rec.size == (36, 36)
    hk, hn = model.encode(pil16)
    assert hk.ndim == hn.ndim == 1 and hk.size > 0
    with pytest.raises(KecaeError, match="cannot use a list as an image"):
        model.exchange([1, 2], wide)
    with pytest.raises(KecaeError, match="NaN"):
        model.exchange(np.full((32, 32), np.nan), wide)


def test_import_kecae_does_not_import_torch():
    code = "import sys, kecae; assert 'torch' not in sys.modules; kecae.load; print('ok')"
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
