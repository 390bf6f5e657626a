"""The Python API: a trained KECAE from its checkpoint, and the key exchange on your own images.

    import kecae

    model = kecae.load("runs/demo/kecae/checkpoints/last.pt")
    x1_ex, x2_ex = model.exchange("healthy.png", "early_oa.png")
    x1_ex.save("healthy_with_oa_key.png")   # X'1: the healthy knee, KL-2 key features

Images are given as file paths (PNG, JPEG, TIFF, DICOM), PIL images, numpy arrays or torch
tensors, at any size. Each goes through the preprocessing of training (grey, centred square crop,
Lanczos resize to the model's side, [-1, 1]); the result is resized back and put in place of the
cropped square, so it has the input's size, and comes back as the input's kind: a PIL image (8-bit
grey) for a path or a PIL image, an array of the input's dtype for an array (floats in [0, 1]),
a float tensor in [0, 1] of the input's shape for a tensor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from kecae.data.readers import image_to_grey, preprocess, read_image
from kecae.device import select_device
from kecae.errors import KecaeError
from kecae.files import file_sha256
from kecae.inference import load_kecae
from kecae.models.autoencoder import KECAE

#: What :meth:`KECAEModel.exchange` accepts for an image.
ImageLike = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor


@dataclass
class _Prepared:
    """An input image read and preprocessed, with what is needed to give the result back."""

    x: torch.Tensor  # (1, 1, S, S) in [-1, 1]
    grey: np.ndarray  # (H, W) float in [0, 1]: the input as read
    box: tuple[int, int, int]  # top, left, side of the centred square the model saw
    source: Any  # the input itself (its kind, dtype and shape decide the output's)


def _grey(image: ImageLike) -> np.ndarray:
    """Any accepted input -> (H, W) float64 grey in [0, 1]."""
    if isinstance(image, (str, os.PathLike)):
        return np.asarray(read_image(image), dtype=np.float64)
    if isinstance(image, Image.Image):
        return image_to_grey(image)
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        a = np.squeeze(image)
        if a.ndim == 3 and a.shape[-1] in (3, 4):  # RGB(A) saved from a grey radiograph
            a = a[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
            a = a / 255.0 if image.dtype == np.uint8 else a
        elif a.ndim != 2:
            raise KecaeError(
                f"an image array must be (H, W), (1, H, W) or (H, W, 3); got shape {image.shape}"
            )
        elif a.dtype == np.uint8:
            a = a / 255.0
        elif a.dtype == np.uint16:
            a = a / 65535.0
        elif a.dtype == np.bool_:
            a = a.astype(np.float64)
        a = np.asarray(a, dtype=np.float64)
        if not np.isfinite(a).all():
            raise KecaeError("the image array holds NaN or infinite values")
        return np.clip(a, 0.0, 1.0)
    raise KecaeError(
        f"cannot use a {type(image).__name__} as an image: pass a file path, a PIL "
        "image, a numpy array or a torch tensor"
    )


class KECAEModel:
    """A trained KECAE ready to exchange key features between knee radiographs."""

    def __init__(
        self, model: KECAE, checkpoint: dict[str, Any], path: Path, device: torch.device
    ) -> None:
        self.model, self.checkpoint, self.path, self.device = model, checkpoint, path, device
        self._sha256: str | None = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "auto") -> KECAEModel:
        """Rebuild the model from a ``kecae train`` checkpoint alone (``weights_only`` load)."""
        dev = select_device(device)
        model, ckpt = load_kecae(str(path), dev)
        return cls(model, ckpt, Path(path), dev)

    @property
    def image_size(self) -> int:
        """The side the model works at, px (inputs of any size are resized to it)."""
        return int(self.checkpoint["model_config"]["image_size"])

    @property
    def checkpoint_sha256(self) -> str:
        """SHA-256 of the checkpoint file (what generated images record)."""
        if self._sha256 is None:
            self._sha256 = file_sha256(self.path)
        return self._sha256

    def _prepare(self, image: ImageLike) -> _Prepared:
        grey = _grey(image)
        h, w = grey.shape
        side = min(h, w)
        x = preprocess(grey, self.image_size, fit="crop")  # (S, S) in [-1, 1], as in training
        return _Prepared(
            torch.from_numpy(x)[None, None].to(self.device),
            grey,
            ((h - side) // 2, (w - side) // 2, side),
            image,
        )

    def _finish(self, y: torch.Tensor, p: _Prepared) -> Any:
        """Model output (1, 1, S, S) -> the input's size and kind."""
        square = ((y[0, 0].float().cpu().numpy() + 1.0) / 2.0).clip(0.0, 1.0)
        top, left, side = p.box
        if side != square.shape[0]:
            square = np.asarray(
                Image.fromarray(square.astype(np.float32)).resize(
                    (side, side), resample=Image.Resampling.LANCZOS
                ),
                dtype=np.float64,
            ).clip(0, 1)
        full = p.grey.copy()
        full[top : top + side, left : left + side] = square
        src = p.source
        if isinstance(src, (str, os.PathLike, Image.Image)):
            return Image.fromarray(np.round(full * 255.0).astype(np.uint8), mode="L")
        if isinstance(src, torch.Tensor):
            return (
                torch.from_numpy(full.astype(np.float32)).reshape(src.shape)
                if src.numel() == full.size
                else torch.from_numpy(full.astype(np.float32))
            )
        if src.dtype == np.uint8:
            return np.round(full * 255.0).astype(np.uint8).reshape(_shape2(src))
        if src.dtype == np.uint16:
            return np.round(full * 65535.0).astype(np.uint16).reshape(_shape2(src))
        return full.astype(np.float32).reshape(_shape2(src))

    @torch.no_grad()
    def exchange(self, healthy: ImageLike, oa: ImageLike) -> tuple[Any, Any]:
        """The key exchange of Algorithm 1 on one pair: ``(X'1, X'2)``.

        ``healthy`` (X1, a KL-0 knee) and ``oa`` (X2, a KL-2 knee) may differ in size and kind.
        X'1 is the healthy knee given the KL-2 key features (label KL-2), at ``healthy``'s size;
        X'2 the KL-2 knee given the healthy key (label KL-0), at ``oa``'s size.
        """
        a, b = self._prepare(healthy), self._prepare(oa)
        x1_ex, x2_ex = self.model.exchange(a.x, b.x)  # (1, 1, S, S) each
        return self._finish(x1_ex, a), self._finish(x2_ex, b)

    @torch.no_grad()
    def reconstruct(self, image: ImageLike) -> Any:
        """X̂: the image encoded and decoded with its own key (what the exchange starts from)."""
        p = self._prepare(image)
        return self._finish(self.model(p.x, p.x).x1_hat, p)

    @torch.no_grad()
    def encode(self, image: ImageLike) -> tuple[np.ndarray, np.ndarray]:
        """The flattened key and non-key latents ``(h_key, h_nonkey)`` of one image."""
        hk, hn = self.model.encode(self._prepare(image).x)
        return hk.flatten().float().cpu().numpy(), hn.flatten().float().cpu().numpy()

    def __repr__(self) -> str:
        return f"KECAEModel({str(self.path)!r}, image_size={self.image_size}, device={self.device})"


def _shape2(src: np.ndarray) -> tuple[int, ...]:
    """The output shape for an array input: its own, less a colour axis."""
    shape = src.shape
    return shape[:-1] if len(shape) == 3 and shape[-1] in (3, 4) else shape


def load(path: str | os.PathLike, device: str = "auto") -> KECAEModel:
    """A trained KECAE from its checkpoint file, e.g.
    ``kecae.load("runs/demo/kecae/checkpoints/last.pt")``
    (see :class:`KECAEModel`)."""
    return KECAEModel.from_checkpoint(path, device)
