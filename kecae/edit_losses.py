"""The losses of the exchange's appearance edit (:mod:`kecae.models.edit`): the price of its
masks (:func:`mask_terms`) and a grade-conditional patch discriminator on crops around the
exchange's change; also the L1 price of intensity edits and the supervisor's perturbation.
:mod:`kecae.losses` puts them in its table.

The frozen supervisor rewards whatever cue it learned; it may accept an X'2 that keeps a bony spur
because its joint space is wide. A discriminator trained along with KECAE asks for the look of
the intended grade itself: crops of X'2 must be indistinguishable from crops of real KL-0 knees
and crops of X'1 from crops of real KL-2 knees (the co-occurrence idea of the Swapping
Autoencoder, conditioned on the grade).

The crops are located without any ground truth: at the centre of mass of the change |X' − X|
that the exchange made to each recipient (where the key acts: the joint), and the real crops are
cut at the same places from the real images of the batch, X1 (KL-0) at X'1's place and X2 (KL-2)
at X'2's, so where a crop sits tells the discriminator nothing about its grade.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from kecae.models.autoencoder import KECAEOutput
from kecae.models.edit import compose, gaussian_blur, warp_images

#: Share of the image the weights of the change |X' − X| are spread over uniformly, so that a
#: recipient the exchange has not yet changed gives a crop at the image centre.
_UNIFORM_SHARE = 1e-3


class PatchDiscriminator(nn.Module):
    """Crops (B, 1, k, k) and claimed grades (B,) class indices → a realness logit per crop (B,).

    Two 4×4 stride-2 and two 3×3 convolutions with spectral normalisation (a bounded adversary:
    its logits cannot explode), one output map per grade; the logit is the mean over positions of
    the claimed grade's map (a PatchGAN score, conditioned by choosing the map).
    """

    def __init__(self, channels: int = 16, num_classes: int = 2, negative_slope: float = 0.2):
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            spectral_norm(nn.Conv2d(1, c, 4, stride=2, padding=1)),
            nn.LeakyReLU(negative_slope),
            spectral_norm(nn.Conv2d(c, 2 * c, 4, stride=2, padding=1)),
            nn.LeakyReLU(negative_slope),
            spectral_norm(nn.Conv2d(2 * c, 4 * c, 3, padding=1)),
            nn.LeakyReLU(negative_slope),
            spectral_norm(nn.Conv2d(4 * c, num_classes, 3, padding=1)),
        )

    def forward(self, crops: torch.Tensor, grade: torch.Tensor) -> torch.Tensor:
        maps = self.net(crops)  # (B, K, k/4, k/4)
        return maps[torch.arange(crops.shape[0], device=crops.device), grade].mean((1, 2))  # (B,)


def change_corners(changed: torch.Tensor, base: torch.Tensor, size: int) -> torch.Tensor:
    """Top-left corners (B, 2) as (row, col) of ``size``-px crops centred on the centre of mass of
    |changed − base| (both (B, 1, S, S)), rounded and kept inside the image. No gradient."""
    with torch.no_grad():
        s = changed.shape[-1]
        if not 1 <= size <= s:
            raise ValueError(f"crop size {size} px must be in [1, {s}] (the image side)")
        w = (changed - base).abs().float()[:, 0]  # (B, S, S)
        w = w + _UNIFORM_SHARE * w.sum((1, 2), keepdim=True).clamp_min(1e-12) / (s * s)
        w = w / w.sum((1, 2), keepdim=True)
        pos = torch.arange(s, dtype=w.dtype, device=w.device)
        centre = torch.stack([(w.sum(2) * pos).sum(1), (w.sum(1) * pos).sum(1)], dim=1)  # (B, 2)
        corner = torch.round(centre - (size - 1) / 2).long()
        return corner.clamp(0, s - size)


def crop(x: torch.Tensor, corners: torch.Tensor, size: int) -> torch.Tensor:
    """Crops (B, 1, size, size) of images ``x`` (B, 1, S, S) at ``corners`` (B, 2) (row, col);
    differentiable in ``x``."""
    b = x.shape[0]
    offsets = torch.arange(size, device=x.device)
    rows = (corners[:, 0:1] + offsets)[:, :, None]  # (B, k, 1)
    cols = (corners[:, 1:2] + offsets)[:, None, :]  # (B, 1, k)
    return x[torch.arange(b, device=x.device)[:, None, None], 0, rows, cols][:, None]


def crop_side(image_size: int, share: float) -> int:
    """The crop side in px: ``share`` of the image side, at least 8 px (two stride-2 blocks)."""
    return max(8, min(image_size, round(share * image_size)))


def patch_crops(
    out_x1_ex: torch.Tensor,
    out_x2_ex: torch.Tensor,
    x1: torch.Tensor,
    x2: torch.Tensor,
    share: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(crops of X'1, of X'2, of X1 at X'1's place, of X2 at X'2's place), (B, 1, k, k) each."""
    size = crop_side(x1.shape[-1], share)
    c1 = change_corners(out_x1_ex, x1, size)
    c2 = change_corners(out_x2_ex, x2, size)
    return (
        crop(out_x1_ex, c1, size),
        crop(out_x2_ex, c2, size),
        crop(x1, c1, size),
        crop(x2, c2, size),
    )


def generator_term(
    disc: PatchDiscriminator, fake1: torch.Tensor, fake2: torch.Tensor
) -> torch.Tensor:
    """Non-saturating adversarial loss of the exchange: softplus(−D(crop X'1, KL-2)) and
    softplus(−D(crop X'2, KL-0)), each a batch mean, averaged. A scalar."""
    b = fake1.shape[0]
    hi = torch.ones(b, dtype=torch.long, device=fake1.device)
    lo = torch.zeros_like(hi)
    return 0.5 * (F.softplus(-disc(fake1, hi)).mean() + F.softplus(-disc(fake2, lo)).mean())


def discriminator_term(
    disc: PatchDiscriminator,
    fake1: torch.Tensor,
    fake2: torch.Tensor,
    real1: torch.Tensor,
    real2: torch.Tensor,
) -> torch.Tensor:
    """The discriminator's loss: real crops (X1 as KL-0, X2 as KL-2) called real, the detached
    exchanged crops (X'1 claiming KL-2, X'2 claiming KL-0) called generated; the mean of the
    real part and the generated part, each averaged over its two directions. A scalar."""
    b = fake1.shape[0]
    hi = torch.ones(b, dtype=torch.long, device=fake1.device)
    lo = torch.zeros_like(hi)
    real = F.softplus(-disc(real1, lo)).mean() + F.softplus(-disc(real2, hi)).mean()
    fake = F.softplus(disc(fake1.detach(), hi)).mean() + F.softplus(disc(fake2.detach(), lo)).mean()
    return 0.25 * (real + fake)


def mask_terms(
    mask_ex: torch.Tensor, mask_self: torch.Tensor | None, free_area: float
) -> dict[str, torch.Tensor]:
    """The price of the edit's soft masks (GANimation's pattern, with a free share).

    - ``mask_area``: mean over images of relu(mean(m) − ``free_area``): a mask may cover
      ``free_area`` of the image (a spur, a joint margin) free of charge, so the price never
      drives it to zero where the edit is needed;
    - ``mask_tv``: total variation, mean |∂m/∂y| + mean |∂m/∂x| (one region, not speckle);
    - ``mask_self``: mean of the no-exchange control's mask (own key: nothing to edit), left out
      when ``mask_self`` is None.
    Shapes: ``mask_ex`` (N, 1, S, S) the masks of X'1 and X'2, ``mask_self`` (M, 1, S, S).
    """
    area = F.relu(mask_ex.mean((1, 2, 3)) - free_area).mean()
    tv = (mask_ex[..., 1:, :] - mask_ex[..., :-1, :]).abs().mean() + (
        mask_ex[..., :, 1:] - mask_ex[..., :, :-1]
    ).abs().mean()
    values = {"mask_area": area, "mask_tv": tv}
    if mask_self is not None:
        values["mask_self"] = mask_self.mean()
    return values


def control_change_term(
    x: torch.Tensor, appearance: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean absolute change the edit makes to its no-exchange control: |compose(X, G, m) − X|
    over the images ``x`` (M, 1, S, S) given their own key, with the control's appearance G and
    mask m (each (M, 1, S, S)). Unlike the control mask's mean it costs nothing where G keeps X
    (a healthy fill over a healthy margin), and all the more where the fill changes the knee."""
    return (compose(x, appearance, mask) - x).abs().mean()


def intensity_edit_term(out: KECAEOutput, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Mean absolute intensity change of X' that moving pixels does not explain: |X' − warp(X, d)|
    for a warp exchange (its residual part), |X' − X| otherwise. An L1 penalty keeps such edits
    sparse: pixels change only where the geometry cannot do it (new or removed bone)."""
    base1, base2 = x1, x2
    if out.disp1 is not None and out.disp2 is not None:
        base1, base2 = warp_images(x1, out.disp1), warp_images(x2, out.disp2)
    return 0.5 * ((out.x1_ex - base1).abs().mean() + (out.x2_ex - base2).abs().mean())


def perturb_for_supervisor(
    x: torch.Tensor, strength: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random sub-pixel shift (up to ``strength`` px each way, per image) and a Gaussian blur of
    sd drawn in [0, ``strength``] px (per batch): a change the supervisor should not care about,
    which destroys pixel-period patterns that fool a fixed classifier. 0: identity."""
    if strength <= 0:
        return x
    b = x.shape[0]
    shift = (torch.rand(b, 2, 1, 1, generator=generator) * 2 - 1).to(x) * strength
    sigma = float(torch.rand(1, generator=generator)) * strength
    return gaussian_blur(warp_images(x, shift), sigma)
