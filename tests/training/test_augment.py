"""The batch augmentations (kecae.training.augment): mixup and CutMix against hand computations,
their seeded draws, the classic augmentation's range, and the random warps' bound."""

from __future__ import annotations

import math

import pytest
import torch

from kecae.training.augment import (
    classic_augment,
    cutmix,
    mix_batch,
    mixed_cross_entropy,
    mixup,
    warp_augment,
)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    # image 0 is all 1, image 1 all -1; a 4 x 4 side
    x = torch.stack([torch.ones(1, 4, 4), -torch.ones(1, 4, 4)])
    return x, torch.tensor([0, 1])


def test_mixup_by_hand():
    x, y = _batch()
    out = mixup(x, y, 0.75, torch.tensor([1, 0]))
    # 0.75 * 1 + 0.25 * (-1) = 0.5 ; 0.75 * (-1) + 0.25 * 1 = -0.5
    assert torch.allclose(out.x[0], torch.full((1, 4, 4), 0.5))
    assert torch.allclose(out.x[1], torch.full((1, 4, 4), -0.5))
    assert out.y_a.tolist() == [0, 1] and out.y_b.tolist() == [1, 0] and out.lam == 0.75
    # the loss weighs the two labels: logits (0, log 3) give p(class 1) = 3/4
    logits = torch.tensor([[0.0, math.log(3)], [0.0, math.log(3)]])
    ce_0, ce_1 = -math.log(1 / 4), -math.log(3 / 4)  # CE against class 0 and class 1
    # y_a = (0, 1), y_b = (1, 0): both CE terms are the mean of ce_0 and ce_1
    want = 0.75 * (ce_0 + ce_1) / 2 + 0.25 * (ce_1 + ce_0) / 2
    assert mixed_cross_entropy(logits, out).item() == pytest.approx(want)
    one_sided = mixup(x, torch.tensor([0, 0]), 0.6, torch.tensor([1, 0]))
    assert mixed_cross_entropy(logits, one_sided).item() == pytest.approx(ce_0)


def test_cutmix_by_hand():
    x, y = _batch()
    out = cutmix(x, y, (1, 3, 0, 2), torch.tensor([1, 0]))
    want0 = torch.ones(4, 4)
    want0[1:3, 0:2] = -1
    assert torch.equal(out.x[0, 0], want0) and torch.equal(out.x[1, 0], -want0)
    assert out.lam == pytest.approx(1 - 4 / 16)  # a 2 x 2 box of a 4 x 4 image
    assert torch.equal(x[0], torch.ones(1, 4, 4))  # the input is left as it was


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mix_batch_is_seeded_and_consistent(kind):
    x = torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    a = mix_batch(kind, x, y, torch.Generator().manual_seed(3))
    b = mix_batch(kind, x, y, torch.Generator().manual_seed(3))
    assert torch.equal(a.x, b.x) and a.lam == b.lam and torch.equal(a.y_b, b.y_b)
    assert 0 <= a.lam <= 1 and sorted(a.y_b.tolist()) == sorted(y.tolist())
    if kind == "cutmix":  # lam is the share of pixels each image keeps of its own
        kept = (a.x == x).float().mean(dim=(1, 2, 3))
        moved = a.y_b != y
        assert torch.allclose(kept[moved], torch.full_like(kept[moved], a.lam), atol=1e-6)
    with pytest.raises(ValueError, match="mixup"):
        mix_batch("nope", x, y, torch.Generator())


def test_classic_augment_keeps_range():
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    out = classic_augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1


def test_warp_augment_moves_pixels_within_its_bound():
    # a horizontal ramp x = column / S: bilinear sampling reproduces a linear image exactly, so a
    # pixel's change is the ramp's slope (1/S per px) times its horizontal displacement, which the
    # field bounds by max_share * S px (the border rows and columns clamp: left out)
    s, max_share = 32, 3 / 64
    ramp = (torch.arange(s, dtype=torch.float32) / s).expand(s, s)
    x = ramp.expand(16, 1, s, s).contiguous()
    out = warp_augment(x, torch.Generator().manual_seed(0), max_share=max_share, p=1.0)
    assert out.shape == x.shape and out.dtype == x.dtype
    inner = (out - x)[..., 4:-4, 4:-4].abs()
    assert inner.max() <= max_share * s / s + 1e-5  # |dx| <= max_share * S px, slope 1/S
    assert (inner.flatten(1).max(1).values > 1e-3).sum() >= 12  # nearly every image moved
    # p = 0 draws the same fields and applies none: the batch comes back as it was, exactly
    same = warp_augment(x, torch.Generator().manual_seed(0), p=0.0)
    assert torch.equal(same, x)
    # seeded: the same generator state gives the same warps
    again = warp_augment(x, torch.Generator().manual_seed(0), max_share=max_share, p=1.0)
    assert torch.equal(again, out)


def test_warp_augment_leaves_the_undrawn_share_untouched():
    x = torch.rand(64, 1, 16, 16) * 2 - 1
    out = warp_augment(x, torch.Generator().manual_seed(3), p=0.5)
    moved = (out - x).flatten(1).abs().max(1).values > 0
    assert 16 <= int(moved.sum()) <= 48  # about half drawn
    assert torch.equal(out[~moved], x[~moved])
