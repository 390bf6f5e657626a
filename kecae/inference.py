"""Rebuild trained models from their checkpoints and run them over image arrays in batches.

Generation and evaluation call these; nothing here trains. Image arrays are (N, S, S) float32 in
[-1, 1] (the layout of :class:`kecae.data.ImageSet`), possibly memory-mapped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from kecae.training.checkpoint import load_checkpoint, load_weights
from kecae.utils import KecaeError


def build_from_config(path: str, build: Callable[[], nn.Module], what: str) -> nn.Module:
    """``build()``; a ``model_config`` that builds no model is a :class:`KecaeError` naming the
    checkpoint (a damaged or hand-edited file, or one from an incompatible kecae version)."""
    try:
        return build()
    except KecaeError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise KecaeError(f"{path}: its model_config does not describe a {what} this kecae can "
                         f"build ({type(exc).__name__}: {exc}); the file is damaged, edited or "
                         "from another kecae version: use another checkpoint or retrain") from exc


def load_classifier(path: str, device: str | torch.device = "cpu"
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """A classifier in eval mode and its checkpoint (config, metrics), from the checkpoint alone."""
    from kecae.models.classifiers import build_classifier

    ckpt = load_checkpoint(path, kind="classifier")
    model = build_from_config(path, lambda: build_classifier(**ckpt["model_config"]),
                              "classifier")
    load_weights(model, ckpt["model"], path)
    return model.to(device).eval(), ckpt


def load_kecae(path: str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """A KECAE model in eval mode, and its checkpoint, from the checkpoint alone."""
    from kecae.models.kecae import KECAE, KECAEConfig

    ckpt = load_checkpoint(path, kind="kecae")
    model = build_from_config(path, lambda: KECAE(KECAEConfig(**ckpt["model_config"])), "KECAE")
    load_weights(model, ckpt["model"], path)
    return model.to(device).eval(), ckpt


def batched(images: np.ndarray, fn: Callable[[torch.Tensor], torch.Tensor | tuple],
            batch_size: int = 256, device: str | torch.device = "cpu") -> Any:
    """Apply ``fn`` to (B, 1, S, S) tensors cut from ``images``; the numpy results concatenated."""
    outs: list[Any] = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size],
                                                      dtype=np.float32))
            y = fn(x[:, None].to(device))
            outs.append(tuple(t.float().cpu().numpy() for t in y) if isinstance(y, tuple)
                        else y.float().cpu().numpy())
    if not outs:
        raise ValueError("no images to process")
    if isinstance(outs[0], tuple):
        return tuple(np.concatenate(parts) for parts in zip(*outs, strict=True))
    return np.concatenate(outs)


def classify(model: nn.Module, images: np.ndarray, batch_size: int = 256,
             device: str | torch.device = "cpu") -> np.ndarray:
    """Class probabilities (N, 2): column 1 is P(KL-2)."""
    return batched(images, lambda x: torch.softmax(model(x), dim=1), batch_size, device)


def classifier_features(model: nn.Module, images: np.ndarray, batch_size: int = 256,
                        device: str | torch.device = "cpu") -> np.ndarray:
    """Penultimate features (N, F) from ``model.forward_features``."""
    return batched(images, model.forward_features, batch_size, device)


def encode(model: nn.Module, images: np.ndarray, batch_size: int = 128,
           device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Flattened key and non-key latents (N, M) of each image: ``(h_key, h_nonkey)``."""
    def fn(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hk, hn = model.encode(x)
        return hk.flatten(1), hn.flatten(1)

    return batched(images, fn, batch_size, device)
