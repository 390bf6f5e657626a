"""The healthy inpainter of the edit appearance ``"healthy"``: what a knee of the lower grade
would show where a mask hides the image.

A warp cannot delete a bony spur, and pasting another knee's margin leaves seams where the pasted
region ends across the recipient's outline. This network fills a masked region from the image
around it, and it learns that only from real knees of the lower grade (X1 of every training pair,
under random masks: :func:`inpaint_loss`). Under the edit's mask it therefore continues the
recipient's own outline the way a healthy margin runs, with no spur, and the filled region meets
the rest of the image on the recipient's own edges. It is trained by its own loss term alone: the
exchange uses it with its weights detached (:func:`fill`), so the supervisor and the
discriminator move the mask, never what the inpainter draws.

The network is a small U-Net at full resolution (two stride-2 levels, dilated convolutions at the
bottom; no normalisation layers, so it behaves the same in training and evaluation): input the
masked image and the mask (B, 2, S, S), output the whole image (B, 1, S, S) in [-1, 1].
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn
from torch.func import functional_call

from kecae.models.edit import gaussian_blur

#: Random training masks (:func:`random_masks`): boxes per image, each side's share of the image
#: side, and where their centres lie by default (a share of the side from each edge). The
#: margins where spurs grow lie near the image's sides (the plateau corners ~10 px from the edge
#: at 64 px): with centres in the middle 60 % (0.2) the inpainter rarely saw a masked margin, and
#: under a ground-truth spur mask its fill was still called a spur on 50.5 % of 200 KL-2 phantoms
#: (26.5 % with 0.05, trained the same 2,000 steps; the spur-free twin pasted there: 14.5 %).
MASK_BOXES = (1, 3)
MASK_SIDE = (0.08, 0.3)
MASK_CENTRE_MARGIN = 0.05
#: Soft mask edges: sd of the Gaussian blur as a share of the side (the edit's masks are soft).
MASK_SOFTNESS = 0.015


def _conv(
    c_in: int, c_out: int, negative_slope: float, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation),
        nn.LeakyReLU(negative_slope),
    )


class Inpainter(nn.Module):
    """(masked image, mask) → the whole image: ``forward(x, mask)`` with x, mask (B, 1, S, S).

    The network sees x · (1 − m) and m; its output replaces x only where the caller's composition
    says so (the training loss scores it under the mask). Levels of ``channels``, 2·``channels``
    and 4·``channels`` features at S, S/2 and S/4 px; receptive field ~60 px at 64 px.
    """

    def __init__(self, channels: int, negative_slope: float = 0.2) -> None:
        super().__init__()
        if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
            raise ValueError(f"inpaint_channels={channels!r} must be an int >= 1 (e.g. 8)")
        c, a = channels, negative_slope
        self.enc0 = nn.Sequential(_conv(2, c, a), _conv(c, c, a))
        self.enc1 = nn.Sequential(_conv(c, 2 * c, a, stride=2), _conv(2 * c, 2 * c, a))
        self.bottom = nn.Sequential(
            _conv(2 * c, 4 * c, a, stride=2),
            _conv(4 * c, 4 * c, a, dilation=2),
            _conv(4 * c, 4 * c, a, dilation=4),
            _conv(4 * c, 4 * c, a),
        )
        self.dec1 = nn.Sequential(_conv(6 * c, 2 * c, a), _conv(2 * c, 2 * c, a))
        self.dec0 = nn.Sequential(_conv(3 * c, c, a), nn.Conv2d(c, 1, 3, padding=1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, S, S) in [-1, 1] and masks (B, 1, S, S) in [0, 1] → (B, 1, S, S)."""
        inp = torch.cat([x * (1 - mask), mask], 1)
        last = cast(nn.Conv2d, self.dec0[1])
        if last.weight.is_contiguous(memory_format=torch.channels_last):
            inp = inp.contiguous(memory_format=torch.channels_last)  # the model runs NHWC
        f0 = self.enc0(inp)  # (B, c, S, S)
        f1 = self.enc1(f0)  # (B, 2c, S/2, S/2)
        f2 = self.bottom(f1)  # (B, 4c, S/4, S/4)
        up1 = nn.functional.interpolate(f2, size=f1.shape[-2:], mode="nearest")
        g1 = self.dec1(torch.cat([up1, f1], 1))  # (B, 2c, S/2, S/2)
        up0 = nn.functional.interpolate(g1, size=f0.shape[-2:], mode="nearest")
        return torch.tanh(self.dec0(torch.cat([up0, f0], 1)))  # (B, 1, S, S)


def fill(
    inpainter: Inpainter, x: torch.Tensor, mask: torch.Tensor, grad: bool = True
) -> torch.Tensor:
    """The inpainter's image with its weights detached: gradients reach ``x`` and ``mask`` (the
    exchange's mask learns where a healthy margin helps), never the weights (trained by
    :func:`inpaint_loss` on real knees only). ``grad=False``: the fill is computed without
    gradient at all, a constant of the step; a mask composing it, (1 − m)·x + m·fill, still
    learns through the composition, and the step skips the inpainter's backward."""
    if not grad:
        with torch.no_grad():
            return inpainter(x, mask)
    params = {n: p.detach() for n, p in inpainter.named_parameters()}
    return functional_call(inpainter, params, (x, mask))


def random_masks(
    n: int,
    size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    centre_margin: float = MASK_CENTRE_MARGIN,
) -> torch.Tensor:
    """``n`` soft masks (n, 1, size, size) in [0, 1]: each the union of ``MASK_BOXES`` boxes of
    random sides (``MASK_SIDE`` of the image side) centred at least ``centre_margin`` of the side
    from each edge, edges blurred by ``MASK_SOFTNESS`` of the side. Drawn on the CPU from
    ``generator`` (reproducible whatever the device)."""
    if not 0 <= centre_margin < 0.5:
        raise ValueError(f"centre_margin={centre_margin!r} must be in [0, 0.5)")
    lo, hi = MASK_BOXES
    count = torch.randint(lo, hi + 1, (n,), generator=generator)
    k = hi
    sides = MASK_SIDE[0] + (MASK_SIDE[1] - MASK_SIDE[0]) * torch.rand(n, k, 2, generator=generator)
    centres = centre_margin + (1 - 2 * centre_margin) * torch.rand(n, k, 2, generator=generator)
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # pixel centres in (0, 1)
    lo_xy, hi_xy = centres - sides / 2, centres + sides / 2  # (n, k, 2) as (x, y)
    inside_x = (coords >= lo_xy[..., :1]) & (coords < hi_xy[..., :1])  # (n, k, size)
    inside_y = (coords >= lo_xy[..., 1:]) & (coords < hi_xy[..., 1:])  # (n, k, size)
    boxes = inside_y[..., :, None] & inside_x[..., None, :]  # (n, k, size, size)
    used = torch.arange(k)[None, :] < count[:, None]  # (n, k)
    hard = (boxes & used[..., None, None]).any(1, keepdim=True).float()  # (n, 1, size, size)
    return gaussian_blur(hard, MASK_SOFTNESS * size).clamp(0, 1).to(device)


def inpaint_loss(
    inpainter: nn.Module,
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    centre_margin: float = MASK_CENTRE_MARGIN,
) -> torch.Tensor:
    """L1 of the inpainter's fill against ``x`` (B, 1, S, S) under random masks
    (:func:`random_masks`, centres ``centre_margin`` of the side from the edges), weighted by the
    mask and averaged over the masked area: how far a hidden region of a real knee is from what
    the inpainter draws there."""
    mask = random_masks(x.shape[0], x.shape[-1], generator, x.device, centre_margin)
    mask = mask.to(x.dtype)
    out = inpainter(x, mask).float()
    weight = mask.float()
    return ((out - x.float()).abs() * weight).sum() / weight.sum().clamp_min(1.0)
