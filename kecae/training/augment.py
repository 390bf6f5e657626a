"""The augmentations a user would pick instead of KECAE: classic (flips, small rotations,
intensity changes) and the mixing ones, mixup and CutMix; and random warps of the kind KECAE's
warp exchange makes, for a supervisor that should not read a warp's traces as a grade. Applied on
the batch tensor with a seeded generator, so runs are reproducible."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from kecae.models.edit import warp_images


def classic_augment(
    x: torch.Tensor,
    generator: torch.Generator,
    max_degrees: float = 7.0,
    flip_p: float = 0.5,
    contrast: float = 0.1,
    brightness: float = 0.1,
    gamma: float = 0.15,
) -> torch.Tensor:
    """Randomly flip, rotate and change the intensity of a batch.

    x: (B, 1, S, S) in [-1, 1] -> (B, 1, S, S) in [-1, 1]. A horizontal flip turns a left knee
    into a right one, which keeps the KL grade.
    """
    b = x.shape[0]
    u = lambda: torch.rand(b, generator=generator)  # noqa: E731 (one uniform draw per image)
    # geometry: one affine grid for flip + rotation
    angle = (u() * 2 - 1) * math.radians(max_degrees)
    flip = torch.where(u() < flip_p, -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, torch.zeros(b)], 1),
            torch.stack([sin * flip, cos, torch.zeros(b)], 1),
        ],
        1,
    )  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # intensity in [0, 1]: gamma, then contrast and brightness
    y = ((x + 1) / 2).clamp(0, 1)
    g = torch.exp((u() * 2 - 1) * gamma).to(x)[:, None, None, None]
    c = (1 + (u() * 2 - 1) * contrast).to(x)[:, None, None, None]
    d = ((u() * 2 - 1) * brightness).to(x)[:, None, None, None]
    y = ((y.clamp_min(1e-6) ** g - 0.5) * c + 0.5 + d).clamp(0, 1)
    return y * 2 - 1


#: ``--augment warp``: the bound of each displacement component as a share of the image side
#: (3 px at 64 px, the ``cpu`` preset's ``warp_max_px``), and the sides of the coarse grids a
#: batch's fields are drawn on (32 is the preset's ``warp_grid``: the finest, foldable fields).
WARP_MAX_SHARE = 3 / 64
WARP_GRIDS = (4, 8, 16, 32)


def warp_augment(
    x: torch.Tensor,
    generator: torch.Generator,
    max_share: float = WARP_MAX_SHARE,
    grids: tuple[int, ...] = WARP_GRIDS,
    p: float = 0.5,
) -> torch.Tensor:
    """Move the pixels of a random share ``p`` of a batch along random displacement fields, the
    labels kept: the traces a warp leaves (stretched or torn bone margins, a joint locally wider or
    narrower) then occur on both grades. Measured on a supervisor (docs/ablation.md, "Folds in the
    exchange's field"), it did not do what it was tried for: trained so, the supervisor answered
    less to spurs, not more, and passed more of the X'2 that kept one; no preset uses it.

    One grid side per batch from ``grids`` (at most the image side); per image an amplitude
    a ~ U(0, max_share · S) px and a field a · tanh(N(0, 1)) on that grid, upsampled bilinearly
    (:func:`kecae.models.edit.warp_images`). x: (B, 1, S, S) in [-1, 1] -> the same shape.
    """
    b, _, h, _ = x.shape
    g = min(grids[int(torch.randint(len(grids), (1,), generator=generator))], h)
    on = (torch.rand(b, generator=generator) < p).float()
    amp = torch.rand(b, generator=generator) * max_share * h * on
    field = amp.view(b, 1, 1, 1) * torch.tanh(torch.randn(b, 2, g, g, generator=generator))
    warped = warp_images(x, field.to(x.device)).to(x.dtype)
    return torch.where(on.view(b, 1, 1, 1).bool().to(x.device), warped, x)


# ---------------------------------------------------------------------------------------------
# Mixing augmentations: mixup and CutMix, the other baselines a user reaches for
# ---------------------------------------------------------------------------------------------

#: Beta(α, α) parameters of the mixing weight: mixup's 0.2 (Zhang et al. 2018, ImageNet) and
#: CutMix's 1.0 (Yun et al. 2019, a uniform box area).
MIXUP_ALPHA, CUTMIX_ALPHA = 0.2, 1.0


class MixedBatch(NamedTuple):
    """A mixed batch: images ``x``, the two label vectors and the weight of the first."""

    x: torch.Tensor  # (B, 1, S, S)
    y_a: torch.Tensor  # (B,) labels of the images themselves
    y_b: torch.Tensor  # (B,) labels of the images mixed in
    lam: float  # weight of y_a in the loss


def mixup(x: torch.Tensor, y: torch.Tensor, lam: float, perm: torch.Tensor) -> MixedBatch:
    """mixup: ``lam · x + (1 − lam) · x[perm]``, labels weighted the same way.

    x: (B, 1, S, S), y: (B,), perm: (B,) a permutation of the batch -> :class:`MixedBatch`.
    """
    return MixedBatch(lam * x + (1 - lam) * x[perm], y, y[perm], float(lam))


def cutmix(
    x: torch.Tensor, y: torch.Tensor, box: tuple[int, int, int, int], perm: torch.Tensor
) -> MixedBatch:
    """CutMix: the rows ``top:bottom`` and columns ``left:right`` of each image replaced by the
    same box of image ``perm[i]``; the weight of y_a is the share of pixels left untouched.

    x: (B, 1, S, S), y: (B,), box: (top, bottom, left, right), perm: (B,) -> :class:`MixedBatch`.
    """
    top, bottom, left, right = box
    mixed = x.clone()
    mixed[:, :, top:bottom, left:right] = x[perm][:, :, top:bottom, left:right]
    area = (bottom - top) * (right - left)
    return MixedBatch(mixed, y, y[perm], 1.0 - area / (x.shape[-2] * x.shape[-1]))


def mixed_cross_entropy(logits: torch.Tensor, batch: MixedBatch) -> torch.Tensor:
    """``lam · CE(logits, y_a) + (1 − lam) · CE(logits, y_b)``: the loss of a mixed batch."""
    return batch.lam * F.cross_entropy(logits, batch.y_a) + (1 - batch.lam) * F.cross_entropy(
        logits, batch.y_b
    )


def mix_batch(
    kind: str, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
) -> MixedBatch:
    """One seeded draw of ``kind`` ("mixup" or "cutmix") for a batch: the weight from
    Beta(α, α) (one per batch, as both papers do), a permutation of the batch and, for CutMix, a
    box of area 1 − weight centred uniformly and clipped to the image."""
    # Beta draws with a NumPy generator seeded from the torch one: reproducible under the seed
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    if kind == "mixup":
        return mixup(x, y, float(rng.beta(MIXUP_ALPHA, MIXUP_ALPHA)), perm)
    if kind != "cutmix":
        raise ValueError(f"kind must be 'mixup' or 'cutmix', got {kind!r}")
    lam = float(rng.beta(CUTMIX_ALPHA, CUTMIX_ALPHA))
    h, w = x.shape[-2:]
    cut_h, cut_w = round(h * math.sqrt(1 - lam)), round(w * math.sqrt(1 - lam))
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + (cut_h + 1) // 2, h)
    left, right = max(cx - cut_w // 2, 0), min(cx + (cut_w + 1) // 2, w)
    return cutmix(x, y, (top, bottom, left, right), perm)
