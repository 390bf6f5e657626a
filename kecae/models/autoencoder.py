"""The Key-Exchange Convolutional Auto-Encoder (KECAE).

Two encoder branches with the same layout and no shared weights map an image to a key latent hK
(the features that carry the KL grade) and a non-key latent hN (everything else). One decoder maps
a latent back to an image. A pair (X1 KL-0, X2 KL-2) gives four outputs (Algorithm 1):

    X̂1 = D(hN1 + hK1)   X̂2 = D(hN2 + hK2)   X'1 = D(hN1 + hK2)   X'2 = D(hN2 + hK1)

X'1 is the healthy knee carrying the KL-2 key features of X2 (label KL-2), X'2 the reverse.
Latents are feature maps (B, C, h, w); their flattening is the paper's feature "vector".

Beyond the paper (options of :class:`KECAEConfig`, all off in the ``paper`` preset):

- ``depth``: fewer stride-2 blocks give a spatial latent (4×4 at 64 px with depth 4), so the
  non-key map can keep where things are;
- ``key_pool="mean"``: the key map is averaged over the grid, a position-free key vector
  (B, C, 1, 1) added at every position, so it can only carry *what* (the grade), not *where*
  (the anatomy); ``key_pool="max"`` takes each channel's largest value over the grid instead,
  so a local sign (one margin's spur) is not diluted by the places that lack it, and
  ``key_pool="attn"`` weighs the places by a learned softmax (a 1×1 conv of the key map, zero at
  the start: the mean);
- ``exchange``: how X' is made from the recipient. ``"decode"`` is the paper's D(h').
  ``"residual"`` edits the real recipient, X'1 = X1 + blur(D(h'1) − D(h1)), so its pixels outside
  the edit stay its own. ``"warp"`` moves the recipient's pixels: a zero-initialised head on the
  decoder predicts a smooth displacement field u(h) (a ``warp_grid``² grid, tanh-bounded to
  ``warp_max_px``, upsampled bilinearly) and X'1 = warp(X1, u(h'1) − u(h1)): joint-space narrowing
  is bones moving closer, and sharp edges move instead of blurring. With ``warp_residual`` a
  blurred residual D(h'1) − warp(D(h1)) adds what a warp cannot make (new bone: osteophytes).
- ``edit`` (warp exchange): an appearance edit that can also remove, X' = (1 − m)·warp(X) + m·G
  with a soft mask m and a sharp full-resolution appearance G predicted by a small head
  (:mod:`kecae.models.edit`); the mask's price is a set of loss terms.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from kecae.models.edit import (
    EDIT_APPEARANCES,
    EditHead,
    compose,
    gaussian_blur,
    square_size_px,
    warp_images,
)
from kecae.models.inpaint import Inpainter, fill, random_masks

#: How the key map enters the exchange (see the module docstring).
KEY_POOLS = ("none", "mean", "max", "attn")
#: How an exchanged image is made from the recipient (see the module docstring).
EXCHANGES = ("decode", "residual", "warp")
#: What the warp's tanh bounds (``KECAEConfig.warp_bound``).
WARP_BOUNDS = ("field", "change")

#: Below this size more than three of the seven blocks would run on a 1×1 map, where a 3×3
#: stride-2 convolution only sees its centre tap: the auto-encoder degenerates into an MLP.
MIN_IMAGE_SIZE = 16


@dataclass(frozen=True)
class KECAEConfig:
    """Everything needed to rebuild a KECAE model (stored whole in its checkpoints)."""

    image_size: int = 299  # side of the square input and output, px (paper: 299)
    width: float = 1.0  # channel multiplier applied to encoder_channels (1.0: the paper's 32…2048)
    encoder_channels: tuple[int, ...] = (
        32,
        64,
        128,
        256,
        512,
        1024,
        2048,
    )  # per block, before width
    in_channels: int = 1  # grey radiographs
    negative_slope: float = (
        0.2  # LeakyReLU slope of every block and of the Kaiming init (paper: 0.2)
    )
    min_channels: int = (
        4  # floor of each scaled channel count, so tiny widths keep every block alive
    )
    depth: int = 7  # stride-2 blocks per branch and in the decoder: the first `depth` channels
    key_pool: str = "none"  # "none" (paper: key map like the non-key one), "mean" / "max" / "attn"
    # the key branch's own channel multiplier (0: ``width``); a 1×1 conv maps a wider branch's last
    # block to the latent's channels, so hK still adds to hN
    key_width: float = 0.0
    exchange: str = (
        "decode"  # "decode" (paper: X' = D(h')), "residual" or "warp" (module docstring)
    )
    warp_grid: int = 8  # warp: side of the displacement grid (taken at this decoder resolution)
    warp_max_px: float = 3.0  # warp: bound of each predicted displacement component, px
    # warp: what tanh bounds. "field": each decoded field u(h), so the exchange's change
    # u(h') − u(h) reaches ±2·warp_max_px only where u(h) sits at 0, and not at all (no range, no
    # gradient) where u(h) is pinned at a bound; "change": the change itself,
    # warp_max_px·tanh(r(h') − r(h)) of the raw head outputs r, so every place of the recipient can
    # move ±warp_max_px whatever its own field
    warp_bound: str = "field"
    warp_residual: bool = False  # warp: also add the blurred residual for what a warp cannot make
    residual_blur_px: float = 1.0  # residual edits: Gaussian blur sd, px (0: none)
    edit: bool = False  # warp: also X' = (1 − m)·warp(X) + m·G, a masked appearance edit
    edit_channels: int = 8  # edit: features of the edit head's full-resolution convolutions
    edit_appearance: str = "free"  # edit: G = warp(X) + δ ("free"), + D(h') − warp(D(h))
    # ("decoded"), the opening ("open") or erosion ("erode") of warp(X): these remove, never draw;
    # the donor image aligned to warp(X) ("donor", tile by tile too: "donor_local"): its margin,
    # spur or none, under the mask; the healthy inpainter's fill of warp(X) under it ("healthy")
    edit_square_frac: float = 0.08  # edit "open" / "erode": the square's side, share of the side
    edit_mask_grid: int = 0  # edit: the mask on a grid × grid grid of smooth cells (0: per pixel)
    inpaint_channels: int = 8  # edit "healthy": features of the inpainter's first level
    # edit "healthy": gradients flow through the inpainter's fill to the mask and warp(X) (true),
    # or the fill is a constant of the step and the mask learns through the composition alone
    # (false: no backward through the inpainter for X', ~25 % of a step on a CPU)
    inpaint_fill_grad: bool = True
    # edit "healthy", training only: the fill is drawn under the mask and random boxes (the
    # inpainter's training masks), so where the mask has not opened the fill still shows what a
    # healthy margin would look like there, and the mask can learn whether it helps
    inpaint_explore: bool = False

    def __post_init__(self) -> None:
        # Checkpoints and YAML give lists; the config must stay hashable and comparable.
        object.__setattr__(self, "encoder_channels", tuple(int(c) for c in self.encoder_channels))
        if self.key_pool not in KEY_POOLS:
            raise ValueError(f"key_pool={self.key_pool!r} must be one of {list(KEY_POOLS)}")
        if not self.key_width >= 0:
            raise ValueError(
                f"key_width={self.key_width!r} must be >= 0 (0: the key branch as wide as the rest)"
            )
        if self.exchange not in EXCHANGES:
            raise ValueError(f"exchange={self.exchange!r} must be one of {list(EXCHANGES)}")
        if not isinstance(self.warp_grid, int) or self.warp_grid < 2:
            raise ValueError(f"warp_grid={self.warp_grid!r} must be an int >= 2 (e.g. 8)")
        if not (math.isfinite(self.warp_max_px) and self.warp_max_px > 0):
            raise ValueError(f"warp_max_px={self.warp_max_px!r} must be a positive number of px")
        if self.warp_bound not in WARP_BOUNDS:
            raise ValueError(
                f"warp_bound={self.warp_bound!r} must be one of {list(WARP_BOUNDS)} ('field': "
                "each decoded field bounded; 'change': the exchange's change bounded)"
            )
        if not (math.isfinite(self.residual_blur_px) and self.residual_blur_px >= 0):
            raise ValueError(f"residual_blur_px={self.residual_blur_px!r} must be >= 0 px")
        for flag in ("edit", "inpaint_fill_grad", "inpaint_explore"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag}={getattr(self, flag)!r} must be true or false")
        if self.edit_appearance not in EDIT_APPEARANCES:
            raise ValueError(
                f"edit_appearance={self.edit_appearance!r} must be one of {list(EDIT_APPEARANCES)}"
            )
        if not (
            isinstance(self.edit_square_frac, (int, float))
            and not isinstance(self.edit_square_frac, bool)
            and 0 < self.edit_square_frac <= 0.5
        ):
            raise ValueError(
                f"edit_square_frac={self.edit_square_frac!r} must be a share of the image side in "
                "(0, 0.5] (e.g. 0.08: a 5 px square at 64 px)"
            )
        if self.inpaint_explore and not (self.edit and self.edit_appearance == "healthy"):
            raise ValueError(
                "inpaint_explore=true explores the healthy fill: it needs edit=true and "
                "edit_appearance='healthy'"
            )
        if self.edit and self.exchange != "warp":
            raise ValueError(
                f"edit=True needs exchange='warp' (got {self.exchange!r}): the edit composes "
                "over the moved recipient"
            )
        for name in ("edit_channels", "inpaint_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be an int >= 1 (e.g. 8)")
        grid = self.edit_mask_grid
        if not isinstance(grid, int) or isinstance(grid, bool) or grid < 0:
            raise ValueError(
                f"edit_mask_grid={grid!r} must be an int >= 0 (0: a mask value per pixel; "
                "e.g. 8: smooth cells of 8 px at 64 px)"
            )
        if self.exchange == "warp" and self.depth < 2:
            raise ValueError(
                "exchange='warp' needs depth >= 2: the displacement head reads an "
                "intermediate decoder block"
            )
        if not isinstance(self.image_size, int) or isinstance(self.image_size, bool):
            raise ValueError(f"image_size={self.image_size!r} must be an int (pixels), e.g. 128")
        if self.image_size < MIN_IMAGE_SIZE:
            raise ValueError(
                f"image_size={self.image_size} is too small for "
                f"{len(self.encoder_channels)} stride-2 blocks: use >= "
                f"{MIN_IMAGE_SIZE} (e.g. 64, 128 or the paper's 299)"
            )
        if not (
            isinstance(self.width, (int, float)) and math.isfinite(self.width) and self.width > 0
        ):
            raise ValueError(
                f"width={self.width!r} must be a positive number "
                "(1.0 = paper channels, 0.25 = a quarter of them)"
            )
        if not self.encoder_channels or min(self.encoder_channels) < 1:
            raise ValueError(
                f"encoder_channels={self.encoder_channels!r} must be a non-empty "
                "tuple of positive ints, e.g. (32, 64, 128, 256, 512, 1024, 2048)"
            )
        if not isinstance(self.depth, int) or not 1 <= self.depth <= len(self.encoder_channels):
            raise ValueError(
                f"depth={self.depth!r} must be an int in [1, "
                f"{len(self.encoder_channels)}] (the number of encoder_channels); "
                "e.g. 4 gives a 4×4 latent at 64 px, 7 is the paper"
            )
        if self.in_channels < 1:
            raise ValueError(f"in_channels={self.in_channels!r} must be >= 1 (1 for grey X-rays)")
        if self.min_channels < 1:
            raise ValueError(f"min_channels={self.min_channels!r} must be >= 1")
        if not 0 <= self.negative_slope < 1:
            raise ValueError(
                f"negative_slope={self.negative_slope!r} must be in [0, 1) (paper: 0.2)"
            )

    @property
    def num_blocks(self) -> int:
        """Blocks per encoder branch (and in the decoder); 7 in the paper."""
        return self.depth

    @property
    def channels(self) -> tuple[int, ...]:
        """Encoder channels of the ``depth`` blocks after ``width`` and ``min_channels``."""
        return self._scaled_channels(self.width)

    @property
    def key_channels(self) -> tuple[int, ...]:
        """Channels of the key branch's blocks: ``channels``, or scaled by ``key_width``."""
        return self._scaled_channels(self.key_width) if self.key_width else self.channels

    def _scaled_channels(self, width: float) -> tuple[int, ...]:
        """``encoder_channels`` of the ``depth`` blocks times ``width``, floored at
        ``min_channels``."""
        return tuple(
            max(self.min_channels, round(c * width)) for c in self.encoder_channels[: self.depth]
        )

    @property
    def spatial_sizes(self) -> tuple[int, ...]:
        """(s0, …, s_n): the side of the input and of each encoder block's output."""
        return encoder_sizes(self.image_size, self.num_blocks)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of hK and hN for one image."""
        s = self.spatial_sizes[-1]
        return (self.channels[-1], s, s)

    @property
    def latent_dim(self) -> int:
        """M, the number of elements of one flattened (non-key) latent vector."""
        return math.prod(self.latent_shape)

    @property
    def key_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of hK: the latent's shape, or (C, 1, 1) for a position-free key."""
        c, h, w = self.latent_shape
        return (c, 1, 1) if self.key_pool != "none" else (c, h, w)

    @property
    def warp_tap(self) -> int:
        """Index of the decoder block whose output feeds the displacement head: the first block
        whose output side reaches ``warp_grid`` (or the last one before the image)."""
        sides = list(reversed(self.spatial_sizes[:-1]))  # output side of each decoder block
        for k, side in enumerate(sides[:-1]):
            if side >= self.warp_grid:
                return k
        return len(sides) - 2


def encoder_sizes(image_size: int, num_blocks: int) -> tuple[int, ...]:
    """Spatial sides through the encoder: s0 = S, s_{k+1} = floor((s_k − 1) / 2) + 1.

    That is the output size of Conv2d(kernel 3, stride 2, padding 1).
    """
    sizes = [image_size]
    for _ in range(num_blocks):
        sizes.append((sizes[-1] - 1) // 2 + 1)
    return tuple(sizes)


def decoder_paddings(image_size: int, num_blocks: int) -> list[tuple[int, int]]:
    """(padding, output_padding) of each ConvTranspose2d(kernel 4, stride 2), first block first.

    Decoder block k maps s_{k+1} back to s_k, where out = 2·in + 2 − 2p + op with op ∈ {0, 1}.
    With d = 2·in + 2 − out, p = ceil(d / 2) and op = 2p − d. Since in = ceil(out / 2), d is 2
    for an even target (p=1, op=0) and 3 for an odd one (p=2, op=1).
    """
    sizes = encoder_sizes(image_size, num_blocks)
    pads = []
    for k in reversed(range(num_blocks)):
        inp, out = sizes[k + 1], sizes[k]
        d = 2 * inp + 2 - out
        p = -(-d // 2)
        op = 2 * p - d
        if p < 0 or op not in (0, 1) or p > 3:  # p <= kernel − 1 keeps the conv defined
            raise ValueError(
                f"cannot map {inp} back to {out} px with a 4×4 stride-2 "
                "transposed convolution; choose another image_size"
            )
        pads.append((p, op))
    return pads


class KECAEOutput(NamedTuple):
    """The four images and four latents of one forward pass on a batch of pairs."""

    x1_hat: torch.Tensor  # (B, 1, S, S) reconstruction of X1 from hN1 + hK1
    x2_hat: torch.Tensor  # (B, 1, S, S) reconstruction of X2 from hN2 + hK2
    x1_ex: torch.Tensor  # (B, 1, S, S) X'1: X1 with X2's key features (label Y2)
    x2_ex: torch.Tensor  # (B, 1, S, S) X'2: X2 with X1's key features (label Y1)
    hk1: torch.Tensor  # (B, C, h, w) key latent of X1 ((B, C, 1, 1) when position-free)
    hn1: torch.Tensor  # (B, C, h, w) non-key latent of X1
    hk2: torch.Tensor  # (B, C, h, w) key latent of X2
    hn2: torch.Tensor  # (B, C, h, w) non-key latent of X2
    disp1: torch.Tensor | None = None  # (B, 2, g, g) warp of X'1 in px (x, y); warp exchange only
    disp2: torch.Tensor | None = None  # (B, 2, g, g) warp of X'2 in px
    flow1: torch.Tensor | None = (
        None  # (B, 2, g, g) u(hN1 + hK1), the field of the recipient's own key
    )
    flow2: torch.Tensor | None = None  # (B, 2, g, g) u(hN2 + hK2)
    mask1: torch.Tensor | None = None  # (B, 1, S, S) edit mask of X'1 in [0, 1]; edit only
    mask2: torch.Tensor | None = None  # (B, 1, S, S) edit mask of X'2
    mask_self: torch.Tensor | None = (
        None  # (2·ceil(B/2), 1, S, S) masks of the no-exchange control of every other pair
    )


def _encoder_branch(config: KECAEConfig, channels: tuple[int, ...] | None = None) -> nn.Sequential:
    """``depth`` blocks of Conv2d 3×3 stride 2 → BatchNorm (all but the first) → LeakyReLU, with
    ``channels`` (default: ``config.channels``); a 1×1 conv to the latent's channels follows when
    the last block has another count."""
    blocks: list[nn.Module] = []
    c_in = config.in_channels
    for k, c_out in enumerate(channels or config.channels):
        use_bn = k > 0
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=not use_bn)]
        if use_bn:  # BN's shift makes a conv bias redundant
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.LeakyReLU(config.negative_slope))
        blocks.append(nn.Sequential(*layers))
        c_in = c_out
    if c_in != config.channels[-1]:
        blocks.append(nn.Conv2d(c_in, config.channels[-1], 1))
    return nn.Sequential(*blocks)


def _decoder(config: KECAEConfig) -> nn.Sequential:
    """``depth`` blocks of ConvTranspose2d 4×4 stride 2 → BN → LeakyReLU; the last ends in tanh."""
    chans = [*reversed(config.channels), config.in_channels]  # 2048w → … → 32w → 1
    blocks = []
    for k, (p, op) in enumerate(decoder_paddings(config.image_size, config.num_blocks)):
        last = k == config.num_blocks - 1
        conv = nn.ConvTranspose2d(
            chans[k], chans[k + 1], 4, stride=2, padding=p, output_padding=op, bias=last
        )
        if last:
            blocks.append(nn.Sequential(conv, nn.Tanh()))
        else:
            blocks.append(
                nn.Sequential(
                    conv, nn.BatchNorm2d(chans[k + 1]), nn.LeakyReLU(config.negative_slope)
                )
            )
    return nn.Sequential(*blocks)


class KECAE(nn.Module):
    """Key-exchange auto-encoder: ``encode``, ``decode``, ``exchange``, the training ``forward``."""

    def __init__(self, config: KECAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or KECAEConfig()
        # K branch: grade-carrying features
        self.key_encoder = _encoder_branch(self.config, self.config.key_channels)
        self.nonkey_encoder = _encoder_branch(self.config)  # N branch: anatomy, pose, exposure…
        self.key_attention: nn.Conv2d | None = None
        if self.config.key_pool == "attn":
            self.key_attention = nn.Conv2d(self.config.channels[-1], 1, 1)
        self.decoder = _decoder(self.config)  # shared by all four outputs
        self.warp_head: nn.Conv2d | None = None
        if self.config.exchange == "warp":
            tap_channels = list(reversed(self.config.channels))[self.config.warp_tap + 1]
            self.warp_head = nn.Conv2d(tap_channels, 2, 3, padding=1)  # → (dx, dy) before tanh
        self.edit_head: EditHead | None = None
        if self.config.edit:
            self.edit_head = EditHead(
                self.config.edit_channels,
                self.config.negative_slope,
                square_size_px(self.config.image_size, self.config.edit_square_frac),
                max(1, round(0.15 * self.config.image_size)),  # "donor": largest shift, 15 %
                self.config.edit_mask_grid,
            )
        self.inpainter: Inpainter | None = None
        if self.config.edit and self.config.edit_appearance == "healthy":
            self.inpainter = Inpainter(self.config.inpaint_channels, self.config.negative_slope)
        self.init_weights()

    def init_weights(self) -> None:
        """Kaiming-normal convolutions (LeakyReLU slope, fan-in), zero biases, BN at identity.
        The displacement head starts at zero, so a new model's exchange moves nothing, and the key's
        attention pooling at zero, so it starts as the mean."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(
                    m.weight, a=self.config.negative_slope, mode="fan_in", nonlinearity="leaky_relu"
                )
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.warp_head is not None:
            assert self.warp_head.bias is not None  # built with one
            nn.init.zeros_(self.warp_head.weight)
            nn.init.zeros_(self.warp_head.bias)
        if self.key_attention is not None:
            assert self.key_attention.bias is not None  # built with one
            nn.init.zeros_(self.key_attention.weight)
            nn.init.zeros_(self.key_attention.bias)
        if self.edit_head is not None:
            self.edit_head.reset_output()

    def _check_images(self, x: torch.Tensor, name: str) -> None:
        c, s = self.config.in_channels, self.config.image_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}; this model expects "
                f"(B, {c}, {s}, {s}): resize the images or build the model with "
                f"image_size={x.shape[-1]}"
            )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 1, S, S) in [-1, 1] → (h_key, h_nonkey): (B, C, h, w) each, or a
        (B, C, 1, 1) key when ``key_pool`` pools it (added at every position of h_nonkey)."""
        self._check_images(x, "x")
        hk = self.key_encoder(x)  # (B, C, h, w)
        if self.config.key_pool == "mean":
            hk = hk.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1): what, not where
        elif self.config.key_pool == "max":
            hk = hk.amax(dim=(2, 3), keepdim=True)  # (B, C, 1, 1): the strongest sign anywhere
        elif self.key_attention is not None:  # "attn": a learned weight per place, summing to 1
            w = torch.softmax(self.key_attention(hk).flatten(1), dim=1)  # (B, h·w)
            hk = (hk.flatten(2) * w[:, None]).sum(dim=2)[..., None, None]
        return hk, self.nonkey_encoder(x)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Latent (B, C, h, w) → images (B, 1, S, S) in [-1, 1]."""
        return self.decode_with_displacement(h)[0]

    def decode_with_displacement(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Latent (B, C, h, w) → (images (B, 1, S, S), displacement u(h) (B, 2, g, g) in px or
        None without a displacement head). With ``warp_bound="change"`` u(h) is the head's raw
        output, unbounded and unitless: only the tanh of a difference of two is in px."""
        if tuple(h.shape[1:]) != self.config.latent_shape:
            raise ValueError(
                f"latent has shape {tuple(h.shape)}; expected "
                f"(B, {', '.join(map(str, self.config.latent_shape))})"
            )
        if self.warp_head is None:
            return self.decoder(h), None
        tap = self.config.warp_tap
        disp = None
        for k, block in enumerate(self.decoder):
            h = block(h)
            if k == tap:  # (B, C_k, g', g') with g' the first decoder side >= warp_grid
                u = self.warp_head(h)  # (B, 2, g', g')
                if u.shape[-1] != self.config.warp_grid:
                    u = nn.functional.interpolate(
                        u, size=(self.config.warp_grid,) * 2, mode="bilinear", align_corners=False
                    )
                disp = u if self.config.warp_bound == "change" else self.bounded(u)
        return h, disp

    def bounded(self, u: torch.Tensor) -> torch.Tensor:
        """warp_max_px · tanh(u): a field of raw head outputs in px, each component bounded."""
        return self.config.warp_max_px * torch.tanh(u)

    def exchanged(
        self,
        x: torch.Tensor,
        hat: torch.Tensor,
        dec_ex: torch.Tensor,
        u_hat: torch.Tensor | None,
        u_ex: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """X' of recipients ``x`` from their decodes D(h) = ``hat`` and D(h') = ``dec_ex``."""
        x_ex, disp, _ = self.exchanged_with_mask(x, hat, dec_ex, u_hat, u_ex)
        return x_ex, disp

    def exchanged_with_mask(
        self,
        x: torch.Tensor,
        hat: torch.Tensor,
        dec_ex: torch.Tensor,
        u_hat: torch.Tensor | None,
        u_ex: torch.Tensor | None,
        donor: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(X', its displacement (B, 2, g, g) or None, its edit mask (B, 1, S, S) or None);
        ``donor``: the images whose keys X' has (edit "donor"; None: the recipients)."""
        cfg = self.config
        if cfg.exchange == "decode":
            return dec_ex, None, None
        if cfg.exchange == "residual":
            edit = gaussian_blur(dec_ex - hat, cfg.residual_blur_px)
            return (x + edit).clamp(-1, 1), None, None
        assert u_hat is not None and u_ex is not None
        # (B, 2, g, g) px: what the donor's key changes in the recipient's field
        disp = self.bounded(u_ex - u_hat) if cfg.warp_bound == "change" else u_ex - u_hat
        moved = warp_images(x, disp)
        if cfg.warp_residual:
            edit = gaussian_blur(dec_ex - warp_images(hat, disp), cfg.residual_blur_px)
            moved = moved + edit
        if self.edit_head is None:
            return moved.clamp(-1, 1), disp, None
        inpainter = self.inpainter
        appearance, mask = self.edit_head(
            moved,
            dec_ex,
            warp_images(hat, disp),
            cfg.edit_appearance,
            donor,
            None if inpainter is None else self.healthy_fill,
        )  # (B, 1, S, S) each
        return compose(moved, appearance, mask), disp, mask

    def healthy_fill(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Edit "healthy": the inpainter's fill of ``x`` under ``mask`` (B, 1, S, S) each, with
        gradient to both or none (``inpaint_fill_grad``); in training with ``inpaint_explore``
        the inpainter hides the union of the mask and random boxes."""
        if self.inpainter is None:
            raise ValueError("healthy_fill needs a model with edit_appearance=healthy")
        hidden = mask
        if self.training and self.config.inpaint_explore:
            boxes = random_masks(x.shape[0], x.shape[-1], device=x.device).to(mask.dtype)
            hidden = torch.maximum(mask, boxes)
        return fill(self.inpainter, x, hidden, self.config.inpaint_fill_grad)

    def exchange(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Key-exchanged images (X'1, X'2), each (B, 1, S, S): X1 given X2's key and the reverse.

        ``exchange(x, x)`` is the no-exchange control: the same pipeline with the recipient's
        own key (the reconstruction for ``"decode"``, the recipient itself otherwise)."""
        out = self(x1, x2)
        return out.x1_ex, out.x2_ex

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> KECAEOutput:
        """Algorithm 1 on a batch of pairs: X1, X2 (B, 1, S, S) → four images and four latents.

        Each image is encoded once (one call per branch on the 2B images) and the four latents are
        decoded in one call on 4B latents, so in train mode BatchNorm normalises over all of them.
        """
        self._check_pair(x1, x2)
        b = x1.shape[0]
        hk, hn = self.encode(torch.cat([x1, x2]))  # (2B, C, h, w) each (hk (2B, C, 1, 1) pooled)
        hk1, hk2 = hk.split(b)
        hn1, hn2 = hn.split(b)
        h = torch.cat([hn1 + hk1, hn2 + hk2, hn1 + hk2, hn2 + hk1])  # (4B, C, h, w)
        dec, u = self.decode_with_displacement(h)
        x1_hat, x2_hat, d1_ex, d2_ex = dec.split(b)  # (B, 1, S, S) each
        u1, u2, u1_ex, u2_ex = u.split(b) if u is not None else (None,) * 4
        x1_ex, disp1, m1 = self.exchanged_with_mask(x1, x1_hat, d1_ex, u1, u1_ex, x2)
        x2_ex, disp2, m2 = self.exchanged_with_mask(x2, x2_hat, d2_ex, u2, u2_ex, x1)
        m_self = None
        if self.edit_head is not None and self.training:
            # the no-exchange control (own key: no displacement, D(h') = D(h)), whose mask the
            # loss prices so that exchange(X, X) stays the recipient; every other pair's images
            # are enough for that price and halve its cost
            x, hat = control_pairs(x1, x2), control_pairs(x1_hat, x2_hat)
            m_self = self.edit_head(x, hat, hat, self.config.edit_appearance)[1]
        return KECAEOutput(
            x1_hat, x2_hat, x1_ex, x2_ex, hk1, hn1, hk2, hn2, disp1, disp2, u1, u2, m1, m2, m_self
        )

    def _check_pair(self, x1: torch.Tensor, x2: torch.Tensor) -> None:
        self._check_images(x1, "x1")
        self._check_images(x2, "x2")
        if x1.shape[0] != x2.shape[0]:
            raise ValueError(
                f"x1 and x2 must hold the same number of images (pairs), got "
                f"{x1.shape[0]} and {x2.shape[0]}"
            )


def control_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The no-exchange control's images in training: the first and second images of every
    other pair, cat([a[::2], b[::2]]) (``KECAEOutput.mask_self`` is their mask)."""
    return torch.cat([a[::2], b[::2]])


def replace_config(config: KECAEConfig, **overrides) -> KECAEConfig:
    """``dataclasses.replace`` answering an unknown field with a ValueError listing the fields."""
    names = [f.name for f in dataclasses.fields(KECAEConfig)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"unknown KECAE config field(s) {unknown}; choose from {names}")
    return dataclasses.replace(config, **overrides)
