"""Classic augmentation, the baseline a user would pick instead of KECAE: flips, small rotations,
intensity changes. Applied on the batch tensor with a seeded generator, so runs are reproducible."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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
