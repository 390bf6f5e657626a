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


def test_a_torch_module_that_takes_batches(trained):
    model = kecae.load(trained["ckpt"].parent.parent, device="cpu")  # the `kecae train` folder
    assert isinstance(model, torch.nn.Module) and not model.training
    assert model.to("cpu") is model and model.eval() is model and model.grades == (0, 2)
    assert sum(p.numel() for p in model.parameters()) > 0
    rng = torch.Generator().manual_seed(0)
    x1, x2 = torch.rand(3, 1, 32, 32, generator=rng), torch.rand(3, 1, 32, 32, generator=rng)
    with torch.no_grad():
        y1, y2 = model(x1, x2)  # forward is the exchange
    assert y1.shape == y2.shape == (3, 1, 32, 32) and y1.dtype == torch.float32
    assert float(y1.min()) >= 0 and float(y1.max()) <= 1
    # the batch equals the model's exchange image by image, and the single-image API
    with torch.no_grad():
        want, _ = model.model.exchange(x1 * 2 - 1, x2 * 2 - 1)
    assert torch.allclose(y1, (want + 1) / 2, atol=1e-6)
    one, _ = model.exchange(x1[1, 0].numpy(), x2[1, 0].numpy())
    assert np.abs(one - y1[1, 0].numpy()).max() < 1e-5
    # (C, H, W) and (H, W) come back in their shape; RGB as grey in every channel
    rgb = x1[0].expand(3, -1, -1)
    z1, z2 = model.exchange(rgb, x2[0, 0])
    assert z1.shape == (3, 32, 32) and z2.shape == (32, 32)
    assert torch.allclose(z1[0], z1[2]) and torch.allclose(z1[0], y1[0, 0], atol=1e-5)
    # another size: training's preprocessing image by image, the input's size back
    big1, big2 = torch.rand(2, 1, 40, 48), torch.rand(2, 1, 40, 48)
    b1, _ = model.exchange(big1, big2)
    assert b1.shape == (2, 1, 40, 48)
    assert torch.equal(b1[:, :, :, :4], big1[:, :, :, :4])  # outside the centred square: kept
    # at the model's size gradients flow to the inputs (no_grad is the caller's choice)
    x = x1.clone().requires_grad_(True)
    model(x, x2)[0].sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    with pytest.raises(KecaeError, match="as many images"):
        model.exchange(x1, x2[:2])
    with pytest.raises(KecaeError, match=r"\(B, C, H, W\) with C = 1 or 3"):
        model.exchange(torch.rand(2, 5, 32, 32), x2[:2])


def test_saved_images_carry_generates_marks(trained, tmp_path):
    from kecae.api import save_png

    model = kecae.load(trained["ckpt"], device="cpu")
    healthy = sorted((trained["data"] / "train" / "0").glob("*.png"))[0]
    early_oa = sorted((trained["data"] / "train" / "2").glob("*.png"))[0]
    x1_ex, x2_ex = model.exchange(healthy, early_oa)
    x1_ex.save(tmp_path / "a.png")
    x2_ex.save(tmp_path / "b.png")
    with Image.open(tmp_path / "a.png") as img:
        text = dict(img.text)
    assert text["kecae:synthetic"] == "true" and text["kecae:direction"] == "kl0_to_kl2"
    assert text["kecae:recipient"] == healthy.name and text["kecae:donor"] == early_oa.name
    assert text["kecae:checkpoint_sha256"] == model.checkpoint_sha256
    assert "not a real patient image" in text["Description"]
    with Image.open(tmp_path / "b.png") as img:
        assert img.text["kecae:direction"] == "kl2_to_kl0"
        assert img.text["kecae:recipient"] == early_oa.name
    # the same keys as an image kecae generate writes
    from kecae.generated_files import png_marks

    assert set(text) == set(png_marks(0, "kl0_to_kl2", "a", "b", "h"))
    # a tensor result, saved through the API, carries them too
    t1, _ = model.exchange(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))
    save_png(t1[0], tmp_path / "t.png", model.marks(0, "x1", "x2"))
    with Image.open(tmp_path / "t.png") as img:
        assert img.text["kecae:synthetic"] == "true" and img.size == (32, 32)
    with pytest.raises(KecaeError, match="holds no KECAE checkpoint"):
        kecae.load(tmp_path)
