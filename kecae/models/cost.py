"""What a KECAE costs: its parameters, and the FLOPs of a training pair and of auto-encoding one
image, counted by ``torch.utils.flop_counter`` on the meta device (no memory, no compute)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from kecae.models.autoencoder import KECAE, KECAEConfig


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``model`` (optionally only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _count_flops(fn: Callable[[], None]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def flops_per_pair(config: KECAEConfig, backward: bool = False) -> int:
    """FLOPs (2 per multiply-add) of one training pair: forward, or forward + backward.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (no memory, no
    compute), batch 1 pair: two branches on two images plus four decodes. Only convolutions and
    matrix products are counted (not BatchNorm, activations, the loss or the optimiser).
    """
    with torch.device("meta"):
        model = KECAE(config).eval()  # eval: batch 1 is fine for BN, which is not counted anyway
        x1 = torch.zeros(1, config.in_channels, config.image_size, config.image_size)
        x2 = torch.zeros_like(x1)

    def run() -> None:
        out = model(x1, x2)
        if backward:
            sum(t.sum() for t in out[:4]).backward()

    return _count_flops(run)


def flops_per_image(config: KECAEConfig) -> int:
    """Forward FLOPs of auto-encoding one image: both encoder branches plus one decode."""
    with torch.device("meta"):
        model = KECAE(config).eval()
        x = torch.zeros(1, config.in_channels, config.image_size, config.image_size)

    def run() -> None:
        hk, hn = model.encode(x)
        model.decode(hk + hn)

    return _count_flops(run)
