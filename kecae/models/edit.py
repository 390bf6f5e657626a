"""The appearance edit of the warp exchange: what moving pixels cannot do (remove or add bone).

A warp moves the recipient's pixels, so it narrows or widens a joint space, but it cannot delete
a bony spur. The edit composes, per pixel,

    X' = (1 − m) · warp(X) + m · G

with a soft mask m ∈ [0, 1] and an appearance G = warp(X) + δ, both predicted at full resolution
by a small convolutional network (:class:`EditHead`) from three images: the moved recipient
warp(X), the decode of the exchanged latent D(h') and the moved decode of the recipient's own
latent warp(D(h)). The difference of the last two says where the donor's key changes the look;
warp(X) gives the sharp detail G starts from (no blur anywhere: inside the mask G is a full
resolution image, outside it X' is the moved recipient).

At initialisation δ = 0 (G is the moved recipient, so the edit changes nothing and a new model's
exchange is still the warp) and m = sigmoid(``EDIT_MASK_BIAS``) ≈ 0.12 everywhere, so the
supervisor's gradient reaches δ from the first step and the mask learns where δ helps. The
mask's price (its area above a free share of the image, its total variation, and its area on the
no-exchange control) is a set of loss terms (:func:`kecae.losses.mask_terms`), not part of the
model. The image operations of the warp exchange (:func:`warp_images`, :func:`gaussian_blur`)
live here too.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
from torch import nn


def gaussian_blur(x: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with sd ``sigma_px`` (reflect padding); 0 leaves
    the images as they are."""
    if sigma_px <= 0:
        return x
    r = max(1, math.ceil(3 * sigma_px))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma_px) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = nn.functional.pad(x, (r, r, r, r), mode="reflect")
    x = nn.functional.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return nn.functional.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _autocast_off(device_type: str) -> contextlib.AbstractContextManager[object]:
    """Autocast switched off, on a device that has it (the meta device of the FLOP count has
    none: ``torch.autocast("meta")`` is an error)."""
    if not torch.amp.is_autocast_available(device_type):
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)


def warp_images(x: torch.Tensor, disp_px: torch.Tensor) -> torch.Tensor:
    """Sample images (B, C, S, S) at p + d(p): ``disp_px`` (B, 2, g, g) holds (dx, dy) in pixels
    on a coarse grid, upsampled bilinearly to S × S. Border values extend outside the image."""
    b, _, h, w = x.shape
    # fp32 even under bf16 autocast: bf16 sampling coordinates (8 significant bits) would be off
    # by up to ~1 px at 299 px, more than the warp's whole few-pixel edit
    with _autocast_off(x.device.type):
        x, disp_px = x.float(), disp_px.float()
        d = nn.functional.interpolate(disp_px, size=(h, w), mode="bilinear", align_corners=False)
        scale = torch.tensor([2.0 / w, 2.0 / h], dtype=d.dtype, device=d.device).view(1, 2, 1, 1)
        theta = torch.eye(2, 3, dtype=x.dtype, device=x.device).expand(b, 2, 3)
        base = nn.functional.affine_grid(theta, [b, 1, h, w], align_corners=False)  # (B, S, S, 2)
        grid = base + (d * scale).permute(0, 2, 3, 1)
        return nn.functional.grid_sample(
            x, grid, mode="bilinear", padding_mode="border", align_corners=False
        )


#: Initial mask logit: sigmoid(-2) ≈ 0.12, small but with a gradient (a mask at 0 would never
#: learn: the trap of a residual priced so heavily that it is never used).
EDIT_MASK_BIAS = -2.0
#: Where the edit's appearance G comes from (see :meth:`EditHead.forward`).
EDIT_APPEARANCES = ("free", "decoded", "open", "erode", "donor", "donor_local", "healthy")
#: Bound of the appearance change δ in image units ([-1, 1] images): 2 can turn white to black.
EDIT_MAX_DELTA = 2.0


class EditHead(nn.Module):
    """(warp(X), D(h'), warp(D(h))) (B, 3, S, S) → (appearance G, mask m), each (B, 1, S, S).

    Four 3×3 convolutions at full resolution, dilations 1, 2, 4, 1 (receptive field 17 px), with
    ``channels`` features and LeakyReLU; the last one gives δ and the mask logit (with
    ``mask_grid`` > 0 the logit is averaged over each cell of a ``mask_grid`` × ``mask_grid`` grid
    and interpolated back bilinearly, so the mask cannot be thinner than a cell). Its output layer
    starts at zero weight (δ = 0, m = sigmoid(EDIT_MASK_BIAS)) so a new model's edit is the
    identity.
    """

    def __init__(
        self,
        channels: int,
        negative_slope: float = 0.2,
        square_px: int = 5,
        max_shift_px: int = 10,
        mask_grid: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"edit_channels={channels!r} must be an int >= 1 (e.g. 8)")
        if not isinstance(mask_grid, int) or isinstance(mask_grid, bool) or mask_grid < 0:
            raise ValueError(f"edit_mask_grid={mask_grid!r} must be an int >= 0 (0: per pixel)")
        self.mask_grid = mask_grid  # > 0: the mask's logit averaged on a grid × grid grid
        self.square_px = square_px  # the square of appearances "open" and "erode"
        self.max_shift_px = max_shift_px  # appearance "donor": the alignment's largest shift
        layers: list[nn.Module] = []
        c_in = 3
        for dilation in (1, 2, 4):
            layers += [
                nn.Conv2d(c_in, channels, 3, padding=dilation, dilation=dilation),
                nn.LeakyReLU(negative_slope),
            ]
            c_in = channels
        self.features = nn.Sequential(*layers)
        self.out = nn.Conv2d(channels, 2, 3, padding=1)  # → (δ before tanh, mask logit)

    def reset_output(self) -> None:
        """The identity edit: δ = 0 and a uniform small mask (called after the model's init)."""
        assert self.out.bias is not None  # built with one
        nn.init.zeros_(self.out.weight)
        with torch.no_grad():
            self.out.bias.copy_(torch.tensor([0.0, EDIT_MASK_BIAS]))

    def _target(
        self, moved: torch.Tensor, appearance: str, donor: torch.Tensor | None
    ) -> torch.Tensor | None:
        if appearance == "open":
            return open_images(moved, self.square_px)
        if appearance == "erode":
            return erode_images(moved, self.square_px)
        if appearance in ("donor", "donor_local"):
            aligned = align_donor(moved if donor is None else donor, moved, self.max_shift_px)
            return refine_donor(aligned, moved) if appearance == "donor_local" else aligned
        return None

    def forward(
        self,
        moved: torch.Tensor,
        dec_ex: torch.Tensor,
        dec_moved: torch.Tensor,
        appearance: str = "free",
        donor: torch.Tensor | None = None,
        fill: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Appearance G and mask m, each (B, 1, S, S); inputs (B, 1, S, S) each.

        ``appearance="free"``: G = warp(X) + δ with δ from the head. ``"decoded"``: G = warp(X) +
        D(h') − warp(D(h)), the change the decoder itself makes when the key is exchanged (kept
        sharp: no blur), so the edit can only place, by its mask, what the auto-encoder learned
        from real images; the head then predicts the mask alone. ``"open"``: G = the grey-scale
        opening of warp(X) (:func:`open_images`), the recipient with every bright structure
        narrower than ``square_px`` taken away and the tissue around it in its place.
        ``"erode"``: G = its grey-scale erosion (:func:`erode_images`), every bone edge moved
        inward by ``square_px // 2`` px, so that a mask over a marginal bulge shaves it back to
        the outline around it. For both the mask decides where (a spur the donor's key lacks), and
        G cannot brighten a pixel, so the edit can remove bone but never draw any. ``"donor"``:
        G = the donor image ``donor`` (B, 1, S, S) aligned to warp(X) (:func:`align_donor`: the
        shift, and mirror, that matches it best), so the mask can put the donor's own margin,
        spur or none, in place of the recipient's: it can remove and add bone, and what it adds
        is real (``donor=None``: the recipient is its own donor, the no-exchange control).
        ``"donor_local"``: that aligned donor moved again, tile by tile (:func:`refine_donor`), so
        that its outline lies on the recipient's where the two knees differ in width or shape. For
        these the head reads (warp(X), D(h') − warp(D(h)), warp(X) − G): where the key
        changes the look, and what G would change. ``"healthy"``: G = ``fill(warp(X), m)``, what
        the healthy inpainter (:mod:`kecae.models.inpaint`) draws where the mask hides warp(X):
        a margin continued from the recipient's own outline the way a knee of the lower grade
        runs. G depends on the mask, so the head predicts the mask from the inputs of ``"free"``
        and G follows; ``fill=None`` gives G = warp(X) (the control, whose mask alone is priced).
        """
        removed = self._target(moved, appearance, donor)  # G of "open"/"erode"/"donor*" or None
        if removed is not None:
            x = torch.cat([moved, dec_ex - dec_moved, moved - removed], dim=1)  # (B, 3, S, S)
        else:
            x = torch.cat([moved, dec_ex, dec_moved], dim=1)
        if self.out.weight.is_contiguous(memory_format=torch.channels_last):
            # the model runs NHWC (KECAETrainConfig.channels_last); grid_sample returns NCHW,
            # and NCHW convolutions at full resolution are ~3x slower on a CPU
            x = x.contiguous(memory_format=torch.channels_last)
        f = self.features(x)  # (B, c, S, S)
        raw = self.out(f)  # (B, 2, S, S)
        logit = raw[:, 1:]  # (B, 1, S, S)
        if self.mask_grid and self.mask_grid < logit.shape[-1]:
            # one logit per cell, bilinear between the cells' centres: the mask is a union of
            # smooth blobs at least a cell across (the shape of the inpainter's training masks)
            cells = nn.functional.adaptive_avg_pool2d(logit, self.mask_grid)
            logit = nn.functional.interpolate(
                cells, size=logit.shape[-2:], mode="bilinear", align_corners=False
            )
        mask = torch.sigmoid(logit)  # (B, 1, S, S) in (0, 1)
        if appearance == "healthy":
            return (moved if fill is None else fill(moved, mask)), mask
        if removed is not None:
            return removed, mask
        if appearance == "decoded":
            return moved + dec_ex - dec_moved, mask
        return moved + EDIT_MAX_DELTA * torch.tanh(raw[:, :1]), mask  # G = warp(X) + δ


def erode_images(x: torch.Tensor, size_px: int) -> torch.Tensor:
    """Grey-scale erosion of (B, C, H, W) by a ``size_px`` square (odd, >= 3): each pixel the
    minimum of the square around it (the image edge ignored). Every bright region loses
    ``size_px // 2`` px along its whole outline; never brighter than the input."""
    if size_px < 3 or size_px % 2 == 0:
        raise ValueError(f"square size {size_px!r} must be an odd number of px >= 3")
    return -nn.functional.max_pool2d(-x, size_px, stride=1, padding=size_px // 2)


def open_images(x: torch.Tensor, size_px: int) -> torch.Tensor:
    """Grey-scale morphological opening of (B, C, H, W) by a ``size_px`` square (odd, >= 3):
    an erosion (the window's minimum) then a dilation (its maximum), both with stride 1 and the
    image edge ignored. It removes every bright structure narrower than the square (a marginal
    spur) and keeps broader bone and soft tissue where they are: the result is never brighter
    than the input, and it is the input wherever the square fits inside the bright region."""
    return nn.functional.max_pool2d(
        erode_images(x, size_px), size_px, stride=1, padding=size_px // 2
    )


def square_size_px(image_size: int, frac: float) -> int:
    """The side of the opening's / erosion's square for images of ``image_size`` px: the odd
    number of px nearest to ``frac`` of the side, at least 3 (5 px at 64 px and frac 0.08, 23 px
    at 299 px)."""
    return max(3, 2 * round((frac * image_size - 1) / 2) + 1)


def align_donor(donor: torch.Tensor, recipient: torch.Tensor, max_shift_px: int) -> torch.Tensor:
    """Each donor (B, 1, S, S) moved onto its recipient (B, 1, S, S): of the donor and its
    left-right mirror (a knee of the other side), shifted by whole pixels up to ``max_shift_px``
    each way, the one whose zero-mean image correlates best with the recipient's; border values
    extend outside the image. The choice carries no gradient; the result is the donor's pixels
    (no interpolation, no blur)."""
    with torch.no_grad(), _autocast_off(recipient.device.type):
        r = recipient.float() - recipient.float().mean((2, 3), keepdim=True)
        cands = torch.stack([donor, donor.flip(-1)], 1).float()  # (B, 2, 1, S, S)
        d = cands - cands.mean((3, 4), keepdim=True)
        s = r.shape[-1]
        n = 2 * s  # zero-padded FFT: no wrap-around for shifts below S
        fr = torch.fft.rfft2(r[:, None], s=(n, n))
        fd = torch.fft.rfft2(d, s=(n, n))
        corr = torch.fft.irfft2(fr.conj() * fd, s=(n, n))[:, :, 0]  # (B, 2, n, n): Σ r(p)d(p+s)
        k = min(int(max_shift_px), s - 1)
        idx = torch.arange(-k, k + 1, device=r.device) % n
        win = corr[:, :, idx][:, :, :, idx]  # (B, 2, 2k+1, 2k+1) over (dy, dx)
        best = win.flatten(1).argmax(1)  # (B,)
        side = 2 * k + 1
        mirror = best // (side * side)
        dy = (best % (side * side)) // side - k
        dx = best % side - k
        disp = torch.stack([dx, dy], 1).to(r.dtype)[:, :, None, None]  # (B, 2, 1, 1) px
        chosen = cands[torch.arange(r.shape[0], device=r.device), mirror]  # (B, 1, S, S)
    return warp_images(chosen, disp).to(donor.dtype)


#: :func:`refine_donor`: the side (px) its search works at, the tiles per side, the largest shift
#: of a tile as a share of the side, and the price of a shift (per px², in mean squared image
#: units per pixel: a flat tile stays where it is, an edge off by one pixel costs more).
REFINE_SIDE = 64
REFINE_GRID = 8
REFINE_SHIFT_FRAC = 0.05
REFINE_SHIFT_PRICE = 1e-3


def refine_donor(donor: torch.Tensor, recipient: torch.Tensor) -> torch.Tensor:
    """An aligned donor (B, 1, S, S) moved, tile by tile, onto its recipient (B, 1, S, S).

    The image is cut into ``REFINE_GRID`` × ``REFINE_GRID`` cells; each cell takes the
    whole-pixel shift, up to ``REFINE_SHIFT_FRAC`` of the side each way, that minimises the mean
    squared difference to the recipient over the 3 × 3 cells around it plus
    ``REFINE_SHIFT_PRICE`` · |shift|²; the shifts, bilinear between the cells' centres, move the
    donor (:func:`warp_images`). Two knees aligned as a whole still differ in width and in where
    each margin lies; moved this way the donor's outline lies on the recipient's, so that a mask
    that pastes the donor's margin leaves no edge off the outline. The search runs at
    ``REFINE_SIDE`` px (larger images are shrunk for it and their shifts scaled back);
    neighbouring shifts differ by at most twice the bound, less than a cell, so the moved donor
    never folds. No gradient.
    """
    with torch.no_grad(), _autocast_off(recipient.device.type):
        s = recipient.shape[-1]
        d, r = donor.float(), recipient.float()
        n = REFINE_SIDE
        if s != n:
            d = nn.functional.interpolate(d, size=(n, n), mode="area" if s > n else "bilinear")
            r = nn.functional.interpolate(r, size=(n, n), mode="area" if s > n else "bilinear")
        k = max(1, round(REFINE_SHIFT_FRAC * n))
        shifts = [(dx, dy) for dy in range(-k, k + 1) for dx in range(-k, k + 1)]
        padded = nn.functional.pad(d, (k, k, k, k), mode="replicate")
        cell = n // REFINE_GRID
        cost = []
        for dx, dy in shifts:  # one shift at a time: (B, 1, n, n) each, never (B, m, n, n)
            diff = padded[:, :, k + dy : k + dy + n, k + dx : k + dx + n] - r  # donor at p + shift
            cost.append(nn.functional.avg_pool2d(diff * diff, cell))  # (B, 1, g, g) per cell
        around = nn.functional.avg_pool2d(
            torch.cat(cost, 1), 3, stride=1, padding=1, count_include_pad=False
        )  # (B, m, g, g): the 3 × 3 cells around each
        offsets = torch.tensor(shifts, dtype=r.dtype, device=r.device)  # (m, 2) as (dx, dy)
        price = REFINE_SHIFT_PRICE * (offsets**2).sum(1)  # (m,)
        best = (around + price[:, None, None]).argmin(1)  # (B, g, g)
        disp = offsets[best].permute(0, 3, 1, 2) * (s / n)  # (B, 2, g, g) px at full size
    return warp_images(donor.float(), disp).to(donor.dtype)


def compose(moved: torch.Tensor, appearance: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """X' = (1 − m)·warp(X) + m·G, clamped to the image range [-1, 1]. Shapes (B, 1, S, S)."""
    return ((1 - mask) * moved + mask * appearance).clamp(-1, 1)
