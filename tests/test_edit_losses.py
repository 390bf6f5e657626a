"""The losses of the exchange's edit (kecae.edit_losses) by hand: the mask's price, the crops
around the change, the patch adversary's two losses; and their entries in the loss table (ramp,
logging, the discriminator's own optimiser)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kecae import edit_losses, losses
from kecae.edit_losses import (
    PatchDiscriminator,
    change_corners,
    crop,
    crop_side,
    discriminator_term,
    generator_term,
    mask_terms,
)
from kecae.errors import KecaeError
from kecae.losses import LossInputs, kecae_loss, logged_names
from kecae.models import KECAE, KECAEConfig
from kecae.training.config import LossSettings
from kecae.training.loss_modules import build_modules, own_optimizers, update_modules


def test_mask_terms_by_hand():
    # two 2×2 masks: means 0.5 and 0.125; free share 0.25 → relu(0.25, -0.125) → mean 0.125
    m = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]], [[[0.5, 0.0], [0.0, 0.0]]]])
    # |∂/∂y|: image 1 (0, 0), image 2 (0.5, 0) → mean 0.125; |∂/∂x|: (1, 1), (0.5, 0) → 0.625
    self_masks = torch.tensor([[[[0.2, 0.4], [0.0, 0.2]]]])
    got = mask_terms(m, self_masks, free_area=0.25)
    assert got["mask_area"].item() == pytest.approx(0.125)
    assert got["mask_tv"].item() == pytest.approx(0.125 + 0.625)
    assert got["mask_self"].item() == pytest.approx(0.2)
    assert "mask_self" not in mask_terms(m, None, 0.25)
    # a mask within its free share costs nothing
    assert mask_terms(m, None, free_area=0.5)["mask_area"].item() == 0.0


def test_change_corners_centre_the_crop_on_the_change_and_stay_inside():
    base = torch.zeros(2, 1, 16, 16)
    changed = base.clone()
    changed[0, 0, 3, 12] = 1.0  # one changed pixel at row 3, col 12
    changed[1, 0, 15, 0] = 1.0  # at the corner: the crop is pushed back inside
    corners = change_corners(changed, base, 8)
    # centre (3, 12) − 3.5 → (−0.5, 8.5), rounded to (−0, 8) (halves to even), clamped to [0, 8]
    assert corners.tolist() == [[0, 8], [8, 0]]
    # an unchanged recipient gives a centred crop
    assert change_corners(base, base, 8).tolist() == [[4, 4], [4, 4]]
    with pytest.raises(ValueError, match="crop size 17 px"):
        change_corners(changed, base, 17)


def test_crop_cuts_each_image_at_its_corner_and_passes_gradients():
    x = torch.arange(2 * 36, dtype=torch.float32).view(2, 1, 6, 6).requires_grad_()
    got = crop(x, torch.tensor([[1, 2], [4, 0]]), 2)
    assert got.shape == (2, 1, 2, 2)
    torch.testing.assert_close(got[0, 0], x[0, 0, 1:3, 2:4])
    torch.testing.assert_close(got[1, 0], x[1, 0, 4:6, 0:2])
    got.sum().backward()
    assert x.grad is not None and x.grad.sum().item() == 8
    assert crop_side(64, 0.5) == 32 and crop_side(16, 0.1) == 8


class _MeanDisc(nn.Module):
    """A stand-in discriminator: logit = mean of the crop, plus 1 when it claims KL-2."""

    def forward(self, crops: torch.Tensor, grade: torch.Tensor) -> torch.Tensor:
        return crops.mean((1, 2, 3)) + grade.float()


def test_generator_and_discriminator_terms_by_hand():
    disc = _MeanDisc()
    fake1 = torch.full((2, 1, 4, 4), 0.5)  # claims KL-2: logit 1.5
    fake2 = torch.full((2, 1, 4, 4), -1.0)  # claims KL-0: logit -1
    real1 = torch.zeros(2, 1, 4, 4)  # KL-0: logit 0
    real2 = torch.full((2, 1, 4, 4), 1.0)  # KL-2: logit 2
    sp = F.softplus
    t = torch.tensor
    want_g = 0.5 * (sp(t(-1.5)) + sp(t(1.0)))
    assert generator_term(disc, fake1, fake2).item() == pytest.approx(want_g.item())
    want_d = 0.25 * (sp(t(0.0)) + sp(t(-2.0)) + sp(t(1.5)) + sp(t(-1.0)))
    got = discriminator_term(disc, fake1, fake2, real1, real2)
    assert got.item() == pytest.approx(want_d.item())


def test_patch_discriminator_is_grade_conditional_and_bounded():
    torch.manual_seed(0)
    disc = PatchDiscriminator()
    crops = torch.randn(3, 1, 16, 16)
    lo, hi = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    a, b = disc(crops, lo), disc(crops, hi)
    assert a.shape == (3,) and not torch.allclose(a, b)
    # spectral normalisation: a 100× larger input cannot give an unbounded logit
    assert disc(crops * 100, lo).abs().max() < 100 * (a.abs().max() + 1)


def _edit_inputs(step: int = 0) -> tuple[LossInputs, KECAE]:
    torch.manual_seed(0)
    config = KECAEConfig(
        image_size=32, width=1 / 8, depth=3, exchange="warp", warp_grid=8, edit=True
    )
    model = KECAE(config)
    g = torch.Generator().manual_seed(1)
    x1, x2 = torch.rand(4, 1, 32, 32, generator=g) * 2 - 1, torch.rand(4, 1, 32, 32, generator=g)
    sup = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 2)).eval().requires_grad_(False)
    y1, y2 = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    return LossInputs(model(x1, x2), x1, x2, y1, y2, sup, model, g, step), model


def test_the_edit_terms_are_weighted_ramped_and_logged():
    settings = LossSettings(
        lambda_sup=0.0,
        lambda_lda=0.0,
        lambda_mask_area=2.0,
        lambda_mask_tv=3.0,
        lambda_mask_self=5.0,
        mask_free_area=0.0,
        lambda_patch_adv=4.0,
        adv_ramp=10,
    )
    config = _edit_inputs()[1].config
    modules = build_modules(settings, config)
    assert set(modules) == {"patch_disc"}
    for step, ramp in ((0, 0.0), (5, 0.5), (10, 1.0), (30, 1.0)):
        inp, _ = _edit_inputs(step)
        inp.modules = modules
        total, terms = kecae_loss(inp, settings)
        assert {"mask_area", "mask_tv", "mask_self", "patch_adv"} <= set(terms)
        want = (
            terms["mse"]
            + 2.0 * terms["mask_area"]
            + 5.0 * terms["mask_self"]
            + 3.0 * terms["mask_tv"]
            + 4.0 * ramp * terms["patch_adv"]
        )
        assert total.item() == pytest.approx(want.item(), rel=1e-6)
    for name in ("mask_area", "mask_tv", "mask_self", "patch_adv", "patch_d"):
        assert name in logged_names()
    # the discriminator has its own optimiser and one update step after the model's
    optimizers = own_optimizers(modules)
    before = [p.detach().clone() for p in modules["patch_disc"].parameters()]
    inp, _ = _edit_inputs(3)
    inp.modules = modules
    logged = update_modules(optimizers, inp, settings)
    assert set(logged) == {"patch_d"} and math.isfinite(float(logged["patch_d"]))
    after = list(modules["patch_disc"].parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_the_mask_terms_need_the_edit():
    settings = LossSettings(lambda_mask_area=1.0)
    inp, _ = _edit_inputs()
    inp.out = inp.out._replace(mask1=None, mask2=None)
    with pytest.raises(ValueError, match="edit=true"):
        kecae_loss(inp, settings)


@pytest.mark.parametrize(
    "settings, words",
    [
        (dict(mask_free_area=1.5), "--mask-free-area 1.5: must be a share of the image"),
        (dict(mask_free_area=-0.1), "--mask-free-area -0.1"),
        (dict(patch_crop=0.0), "--patch-crop 0.0: must be a share of the image side"),
        (dict(patch_crop=2.0), "--patch-crop 2.0"),
        (dict(adv_ramp=-1), "--adv-ramp -1: must be a whole number of steps"),
        (dict(lambda_patch_adv=-1.0), "--lambda-patch-adv -1.0"),
        (dict(lambda_mask_area=float("nan")), "--lambda-mask-area nan"),
        (dict(lambda_mask_tv=float("inf")), "--lambda-mask-tv inf"),
        (dict(lambda_mask_self=-2.0), "--lambda-mask-self -2.0"),
    ],
)
def test_edit_loss_settings_are_checked_when_built(settings, words):
    with pytest.raises(KecaeError, match=words):
        LossSettings(**settings)


def test_the_table_holds_the_edit_terms_once():
    names = [n for t in losses.TERMS for n in t.weights]
    for name in ("mask_area", "mask_tv", "mask_self", "patch_adv"):
        assert names.count(name) == 1
    patch = next(t for t in losses.TERMS if "patch_adv" in t.weights)
    assert patch.ramp == "adv_ramp" and patch.module is losses.PATCH
    assert edit_losses.PatchDiscriminator is PatchDiscriminator
