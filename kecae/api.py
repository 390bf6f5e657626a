"""The Python API: a trained KECAE as a ``torch.nn.Module``, and the key exchange on your own
images.

    import kecae

    model = kecae.load("runs/demo")               # a run folder, a KECAE run or its checkpoint
    x1_ex, x2_ex = model.exchange("healthy.png", "early_oa.png")
    x1_ex.save("healthy_with_oa_key.png")   # X'1: the healthy knee, KL-2 key features (marked)

    model.to("cuda").eval()                       # an nn.Module: .to(), .eval(), no_grad()
    with torch.no_grad():
        y1, y2 = model(x1, x2)                    # (B, C, H, W) float tensors in [0, 1]

**Tensors** of shape (H, W), (C, H, W) or (B, C, H, W) (C = 1, or 3 for RGB saved from a grey
radiograph; floats in [0, 1], uint8 in 0-255) come back as float tensors of the same shape on
the same device. At the model's own side they never leave the device and stay differentiable;
at another size each image goes through training's preprocessing (below) on the CPU.

**Paths, PIL images and numpy arrays** go through the preprocessing of training (grey, centred
square crop, Lanczos resize to the model's side, [-1, 1]); the result is resized back and put in
place of the cropped square, so it has the input's size, and comes back as the input's kind: a
PIL image (8-bit grey) for a path or a PIL image, an array of the input's dtype for an array.

A PIL image it returns carries the text chunks that mark every image ``kecae generate`` writes
(``kecae:synthetic``, the direction, recipient, donor and the checkpoint's SHA-256), and its
``save`` writes them into a PNG; :func:`save_png` does the same for an array or a tensor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from torch import nn

from kecae.data.catalog import grades_of
from kecae.data.readers import image_to_grey, preprocess, read_image
from kecae.device import select_device
from kecae.errors import KecaeError
from kecae.files import file_sha256
from kecae.generated_files import directions, png_marks
from kecae.inference import find_checkpoint, load_kecae
from kecae.models.autoencoder import KECAE

#: What :meth:`KECAEModel.exchange` accepts for an image.
ImageLike = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor

#: BT.601 luma weights: RGB saved from a grey radiograph back to grey, as files are read.
_LUMA = (0.299, 0.587, 0.114)


@dataclass
class _Prepared:
    """An input image read and preprocessed, with what is needed to give the result back."""

    x: torch.Tensor  # (1, 1, S, S) in [-1, 1]
    grey: np.ndarray  # (H, W) float in [0, 1]: the input as read
    box: tuple[int, int, int]  # top, left, side of the centred square the model saw
    source: Any  # the input itself (its kind, dtype and shape decide the output's)
    name: str  # how the image is named in the marks (its file name, or its kind)


def _grey(image: ImageLike) -> np.ndarray:
    """Any accepted single image -> (H, W) float64 grey in [0, 1]."""
    if isinstance(image, (str, os.PathLike)):
        return np.asarray(read_image(image), dtype=np.float64)
    if isinstance(image, Image.Image):
        return image_to_grey(image)
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        a = np.squeeze(image)
        if a.ndim == 3 and a.shape[0] in (3, 4) and a.shape[-1] not in (3, 4):
            a = np.moveaxis(a, 0, -1)  # (C, H, W) -> (H, W, C)
        if a.ndim == 3 and a.shape[-1] in (3, 4):  # RGB(A) saved from a grey radiograph
            a = a[..., :3].astype(np.float64) @ np.array(_LUMA)
            a = a / 255.0 if image.dtype == np.uint8 else a
        elif a.ndim != 2:
            raise KecaeError(
                "an image must be (H, W), (C, H, W) with C = 1 or 3, or (H, W, 3); got shape "
                f"{image.shape} (a batch (B, C, H, W) is taken as a torch tensor)"
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


def _name(image: ImageLike) -> str:
    if isinstance(image, (str, os.PathLike)):
        return Path(image).name
    return f"a {type(image).__name__} given to kecae.load(...).exchange"


class _MarkedImage(Image.Image):
    """A PIL image whose ``save`` writes its kecae marks into a PNG (Pillow's ``pnginfo``)."""

    def save(self, fp: Any, format: str | None = None, **params: Any) -> None:
        marks = {str(k): v for k, v in self.info.items() if isinstance(v, str)}
        is_png = (format or "").upper() == "PNG" or (
            format is None
            and isinstance(fp, (str, os.PathLike))
            and str(fp).lower().endswith(".png")
        )
        if is_png and "pnginfo" not in params and marks:
            params["pnginfo"] = _pnginfo(marks)
        super().save(fp, format, **params)


def _pnginfo(marks: dict[str, str]) -> PngInfo:
    info = PngInfo()
    for key, value in marks.items():
        info.add_text(key, value)
    return info


def save_png(image: Any, path: str | os.PathLike, marks: dict[str, str]) -> Path:
    """Write an exchanged image (a PIL image, an array or a tensor in [0, 1], any of the
    shapes :meth:`KECAEModel.exchange` returns for one image) as an 8-bit grey PNG carrying
    ``marks`` (:meth:`KECAEModel.marks`)."""
    if isinstance(image, Image.Image):
        img = image.convert("L")
    else:
        a = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        grey = _grey(a)
        img = Image.fromarray(np.round(grey * 255.0).astype(np.uint8), mode="L")
    Image.Image.save(img, path, format="PNG", pnginfo=_pnginfo(marks))
    return Path(path)


class KECAEModel(nn.Module):
    """A trained KECAE ready to exchange key features between knee radiographs.

    An ``nn.Module`` (``.to()``, ``.eval()``, ``torch.no_grad()``): the trained network is its
    submodule ``model``; ``forward(x1, x2)`` is :meth:`exchange`. It starts in eval mode.
    """

    def __init__(self, model: KECAE, checkpoint: dict[str, Any], path: Path) -> None:
        super().__init__()
        self.model = model
        self.checkpoint, self.path = checkpoint, path
        self._sha256: str | None = None
        self.eval()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "auto") -> KECAEModel:
        """Rebuild the model from a run folder or a ``kecae train`` checkpoint alone
        (``weights_only`` load)."""
        ckpt_path = find_checkpoint(path)
        model, ckpt = load_kecae(str(ckpt_path), select_device(device))
        return cls(model, ckpt, ckpt_path)

    @property
    def device(self) -> torch.device:
        """Where the model's weights are (follows ``.to()``)."""
        return next(self.model.parameters()).device

    @property
    def image_size(self) -> int:
        """The side the model works at, px (inputs of any size are resized to it)."""
        return int(self.checkpoint["model_config"]["image_size"])

    @property
    def grades(self) -> tuple[int, int]:
        """The KL grades it exchanges: X1 of the first, X2 of the second (default (0, 2))."""
        return grades_of(self.checkpoint.get("train_config"))

    @property
    def checkpoint_sha256(self) -> str:
        """SHA-256 of the checkpoint file (what generated images record)."""
        if self._sha256 is None:
            self._sha256 = file_sha256(self.path)
        return self._sha256

    def marks(self, direction: int, recipient: str, donor: str) -> dict[str, str]:
        """The PNG text chunks of an exchanged image: ``direction`` 0 for X'1 (the lower grade's
        knee given the higher grade's key), 1 for X'2; as ``kecae generate`` writes them."""
        marks = png_marks(0, directions(self.grades)[direction], recipient, donor, "")
        marks["kecae:pair"] = "none (kecae.load(...).exchange)"
        marks["kecae:checkpoint_sha256"] = self.checkpoint_sha256
        return marks

    # -- one image of any kind -----------------------------------------------------------------

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
            _name(image),
        )

    def _finish(self, y: torch.Tensor, p: _Prepared, marks: dict[str, str] | None = None) -> Any:
        """Model output (1, 1, S, S) -> the input's size and kind."""
        full = self._paste(y[0, 0], p.grey, p.box)
        src = p.source
        if isinstance(src, (str, os.PathLike, Image.Image)):
            img = Image.fromarray(np.round(full * 255.0).astype(np.uint8), mode="L")
            if marks:
                img.__class__ = _MarkedImage  # same object, a save() that writes the marks
                img.info.update(marks)
            return img
        if isinstance(src, torch.Tensor):
            out = torch.from_numpy(full.astype(np.float32))
            out = out.expand(src.shape[-3], *out.shape) if src.ndim == 3 else out
            return out.reshape(src.shape).to(src.device)
        if src.dtype == np.uint8:
            return np.round(full * 255.0).astype(np.uint8).reshape(_shape2(src))
        if src.dtype == np.uint16:
            return np.round(full * 65535.0).astype(np.uint16).reshape(_shape2(src))
        return full.astype(np.float32).reshape(_shape2(src))

    @staticmethod
    def _paste(y: torch.Tensor, grey: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
        """(S, S) output in [-1, 1] resized into the centred square of ``grey``."""
        square = ((y.detach().float().cpu().numpy() + 1.0) / 2.0).clip(0.0, 1.0)
        top, left, side = box
        if side != square.shape[0]:
            square = np.asarray(
                Image.fromarray(square.astype(np.float32)).resize(
                    (side, side), resample=Image.Resampling.LANCZOS
                ),
                dtype=np.float64,
            ).clip(0, 1)
        full = grey.copy()
        full[top : top + side, left : left + side] = square
        return full

    # -- tensors: (H, W), (C, H, W), (B, C, H, W) ----------------------------------------------

    def _batch(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """A tensor of any accepted shape -> (B, C, H, W) float in [0, 1], and its shape."""
        shape = tuple(x.shape)
        if x.ndim == 2:
            x = x[None, None]
        elif x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] not in (1, 3, 4):
            raise KecaeError(
                f"a tensor image must be (H, W), (C, H, W) or (B, C, H, W) with C = 1 or 3; got "
                f"shape {shape}"
            )
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return x, shape

    def _exchange_tensors(
        self, x1: torch.Tensor, x2: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        (a, shape1), (b, shape2) = self._batch(x1), self._batch(x2)
        if a.shape[0] != b.shape[0]:
            raise KecaeError(
                f"x1 and x2 must hold as many images: batch {a.shape[0]} and {b.shape[0]}"
            )
        s = self.image_size
        if a.shape[-2:] == b.shape[-2:] == (s, s):
            # the model's own size: on the device, differentiable
            ya, yb = self.model.exchange(self._to_model(a), self._to_model(b))
            return self._from_model(ya, x1, shape1), self._from_model(yb, x2, shape2)
        # another size: training's preprocessing image by image (Lanczos, on the CPU)
        outs1, outs2 = [], []
        for i in range(a.shape[0]):
            p, q = self._prepare(a[i]), self._prepare(b[i])
            with torch.no_grad():
                ya, yb = self.model.exchange(p.x, q.x)
            outs1.append(torch.from_numpy(self._paste(ya[0, 0], p.grey, p.box)))
            outs2.append(torch.from_numpy(self._paste(yb[0, 0], q.grey, q.box)))
        return self._restack(outs1, x1, a, shape1), self._restack(outs2, x2, b, shape2)

    def _to_model(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) in [0, 1] -> (B, 1, S, S) in [-1, 1] on the model's device."""
        if x.shape[1] > 1:
            luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device)
            x = torch.einsum("bchw,c->bhw", x[:, :3], luma)[:, None]
        return (x.clamp(0, 1) * 2 - 1).to(self.device)

    @staticmethod
    def _from_model(y: torch.Tensor, src: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """(B, 1, S, S) in [-1, 1] -> ``src``'s shape (grey in every channel), in [0, 1]."""
        channels = 1 if src.ndim == 2 else src.shape[-3]
        out = ((y + 1) / 2).clamp(0, 1).expand(-1, channels, -1, -1)
        return out.reshape(shape).to(src.device)

    @staticmethod
    def _restack(
        outs: list[torch.Tensor], src: torch.Tensor, batch: torch.Tensor, shape: tuple[int, ...]
    ) -> torch.Tensor:
        out = torch.stack(outs).float()[:, None]  # (B, 1, H, W)
        return out.expand(-1, batch.shape[1], -1, -1).reshape(shape).to(src.device)

    # -- the API -------------------------------------------------------------------------------

    def exchange(self, x1: ImageLike, x2: ImageLike) -> tuple[Any, Any]:
        """The key exchange of Algorithm 1: ``(X'1, X'2)``.

        ``x1`` is the knee of the lower grade (X1, KL-0 by default), ``x2`` of the higher (X2,
        KL-2). X'1 is x1 given x2's key features (labelled with x2's grade), X'2 the reverse.
        Two tensors are a batch (see the module docstring); any other pair is one image each,
        of any size and kind, each coming back as it was given.
        """
        if (
            isinstance(x1, torch.Tensor)
            and isinstance(x2, torch.Tensor)
            and (x1.ndim == 4 or x2.ndim == 4)
        ):
            return self._exchange_tensors(x1, x2)
        a, b = self._prepare(x1), self._prepare(x2)
        with torch.no_grad():
            y1, y2 = self.model.exchange(a.x, b.x)  # (1, 1, S, S) each
        return (
            self._finish(y1, a, self.marks(0, a.name, b.name)),
            self._finish(y2, b, self.marks(1, b.name, a.name)),
        )

    def forward(self, x1: ImageLike, x2: ImageLike) -> tuple[Any, Any]:
        """:meth:`exchange` (so ``model(x1, x2)`` works as for any module)."""
        return self.exchange(x1, x2)

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

    def extra_repr(self) -> str:
        low, high = self.grades
        return (
            f"checkpoint={str(self.path)!r}, image_size={self.image_size}, "
            f"grades=(KL-{low}, KL-{high})"
        )


def _shape2(src: np.ndarray) -> tuple[int, ...]:
    """The output shape for an array input: its own, less a colour axis."""
    shape = src.shape
    return shape[:-1] if len(shape) == 3 and shape[-1] in (3, 4) else shape


def load(path: str | os.PathLike, device: str = "auto") -> KECAEModel:
    """A trained KECAE from a run folder (``kecae run`` / ``kecae demo``), a ``kecae train``
    folder or a checkpoint file, e.g. ``kecae.load("runs/demo")`` (see :class:`KECAEModel`)."""
    return KECAEModel.from_checkpoint(path, device)


__all__ = ["ImageLike", "KECAEModel", "find_checkpoint", "load", "save_png"]
