"""Rebuild trained models from their checkpoints and run them over image arrays in batches.

Every batched forward pass of kecae -- the trainers' validation, generation, evaluation, the
studies -- goes through :func:`batched`; nothing here trains. Image arrays are (N, S, S) float32
in [-1, 1] (the layout of :class:`kecae.data.ImageSet`), possibly memory-mapped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch import nn

from kecae.checkpoint import load_checkpoint, load_weights
from kecae.device import autocast
from kecae.errors import KecaeError
from kecae.models.autoencoder import KECAE, KECAEConfig
from kecae.runfolder import KECAERun, RunLayout

if TYPE_CHECKING:
    from kecae.models.autoencoder import KECAE
    from kecae.models.classifiers import Classifier

# The classifiers (torchvision) are imported when a classifier is loaded: loading a KECAE alone
# (kecae.load) does without them.

M = TypeVar("M", bound=nn.Module)


def build_from_config(path: str, build: Callable[[], M], what: str) -> M:
    """``build()``; a ``model_config`` that builds no model is a :class:`KecaeError` naming the
    checkpoint (a damaged or hand-edited file, or one from an incompatible kecae version)."""
    try:
        return build()
    except KecaeError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise KecaeError(
            f"{path}: its model_config does not describe a {what} this kecae can "
            f"build ({type(exc).__name__}: {exc}); the file is damaged, edited or "
            "from another kecae version: use another checkpoint or retrain"
        ) from exc


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The KECAE checkpoint of a run folder (``RUN/kecae/checkpoints/last.pt``), of a KECAE
    training folder (``FOLDER/checkpoints/last.pt``), or the file itself."""
    p = Path(path).expanduser()
    if p.is_dir():
        for candidate in (RunLayout(p).kecae.last, KECAERun(p).last):
            if candidate.is_file():
                return candidate
        raise KecaeError(
            f"{p} holds no KECAE checkpoint (looked for kecae/checkpoints/last.pt and "
            "checkpoints/last.pt): pass a run folder of `kecae run` / `kecae demo`, the --out "
            "of `kecae train`, or a checkpoint file"
        )
    return p


def load_classifier(
    path: str, device: str | torch.device = "cpu"
) -> tuple[Classifier, dict[str, Any]]:
    """A classifier in eval mode and its checkpoint (config, metrics), from the checkpoint alone."""
    from kecae.models.classifiers import build_classifier

    ckpt = load_checkpoint(path, kind="classifier")
    model = build_from_config(path, lambda: build_classifier(**ckpt["model_config"]), "classifier")
    load_weights(model, ckpt["model"], path)
    return model.to(device).eval(), ckpt


def load_kecae(path: str, device: str | torch.device = "cpu") -> tuple[KECAE, dict[str, Any]]:
    """A KECAE model in eval mode, and its checkpoint, from the checkpoint alone."""

    ckpt = load_checkpoint(path, kind="kecae")
    model = build_from_config(path, lambda: KECAE(KECAEConfig(**ckpt["model_config"])), "KECAE")
    load_weights(model, ckpt["model"], path)
    return model.to(device).eval(), ckpt


def batched(
    fn: Callable[..., Any],
    *arrays: np.ndarray,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    amp: bool = False,
) -> Any:
    """``fn`` applied, without gradients, to aligned (B, 1, S, S) float32 tensors cut from the
    (N, S, S) ``arrays`` (one tensor per array, the same rows of each); its results -- a tensor,
    a tuple or a dict of tensors -- come back as numpy arrays concatenated over the batches.
    ``amp``: bf16 autocast on a GPU (a no-op on the CPU)."""
    if not arrays or len(arrays[0]) == 0:
        raise ValueError("no images to process")
    device = torch.device(device)
    outs: list[Any] = []
    with torch.no_grad():
        for start in range(0, len(arrays[0]), batch_size):
            xs = [
                torch.from_numpy(np.array(a[start : start + batch_size], dtype=np.float32))[
                    :, None
                ].to(device)
                for a in arrays
            ]
            with autocast(device, amp):
                y = fn(*xs)
            outs.append(_to_numpy(y))
    first = outs[0]
    if isinstance(first, dict):
        return {k: np.concatenate([o[k] for o in outs]) for k in first}
    if isinstance(first, tuple):
        return tuple(np.concatenate(parts) for parts in zip(*outs, strict=True))
    return np.concatenate(outs)


def _to_numpy(y: Any) -> Any:
    if isinstance(y, dict):
        return {k: v.float().cpu().numpy() for k, v in y.items()}
    if isinstance(y, tuple):
        return tuple(t.float().cpu().numpy() for t in y)
    return y.float().cpu().numpy()


def classify(
    model: Classifier,
    images: np.ndarray,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    amp: bool = False,
) -> np.ndarray:
    """Class probabilities (N, 2) of a classifier in eval mode: column 1 is P(KL-2)."""
    return batched(
        lambda x: torch.softmax(model(x).float(), dim=1),
        images,
        batch_size=batch_size,
        device=device,
        amp=amp,
    )


def classifier_features(
    model: Classifier, images: np.ndarray, batch_size: int = 256, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Penultimate features (N, F) from ``model.forward_features``."""
    return batched(model.forward_features, images, batch_size=batch_size, device=device)


def encode(
    model: KECAE, images: np.ndarray, batch_size: int = 128, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Flattened key and non-key latents (N, M) of each image: ``(h_key, h_nonkey)``."""

    def fn(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hk, hn = model.encode(x)
        return hk.flatten(1), hn.flatten(1)

    return batched(fn, images, batch_size=batch_size, device=device)


def exchange(
    model: KECAE,
    x1: np.ndarray,
    x2: np.ndarray,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """X'1 and X'2 (N, S, S) of the aligned pairs (x1[k], x2[k]) (Algorithm 1)."""

    def fn(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1_ex, x2_ex = model.exchange(a, b)  # (B, 1, S, S) each
        return x1_ex[:, 0], x2_ex[:, 0]

    return batched(fn, x1, x2, batch_size=batch_size, device=device)
