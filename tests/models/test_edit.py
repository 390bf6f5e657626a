"""The exchange's appearance edit (kecae.models.edit): X' = (1 − m)·warp(X) + m·G by hand, output
shapes and ranges, a new model's edit is the identity, the control's mask in training only, the
configuration checks."""

from __future__ import annotations

import pytest
import torch

from kecae.models import KECAE, KECAEConfig, kecae_config
from kecae.models.edit import (
    EDIT_MASK_BIAS,
    EditHead,
    align_donor,
    compose,
    erode_images,
    open_images,
    refine_donor,
    square_size_px,
    warp_images,
)

EDIT = dict(image_size=32, width=1 / 8, depth=3, exchange="warp", warp_grid=8, edit=True)


def _pair(b: int, s: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, s, s, generator=g) * 2 - 1, torch.rand(b, 1, s, s, generator=g) * 2 - 1


def test_compose_by_hand():
    moved = torch.tensor([[[[0.5, -0.5], [1.0, 0.0]]]])
    appearance = torch.tensor([[[[-1.0, 1.0], [0.0, 0.8]]]])
    mask = torch.tensor([[[[0.0, 1.0], [0.25, 0.5]]]])
    want = torch.tensor([[[[0.5, 1.0], [0.75, 0.4]]]])  # (1 − m)·moved + m·G per pixel
    torch.testing.assert_close(compose(moved, appearance, mask), want)
    # the composed image stays in the image range
    assert compose(moved, appearance + 5, torch.ones_like(mask)).max() == 1


def test_edit_model_shapes_masks_and_the_control_mask_in_training_only():
    torch.manual_seed(0)
    model = KECAE(KECAEConfig(**EDIT))
    x1, x2 = _pair(5)
    out = model(x1, x2)
    for m in (out.mask1, out.mask2):
        assert m is not None and m.shape == (5, 1, 32, 32)
        assert float(m.detach().min()) >= 0 and float(m.detach().max()) <= 1
    assert out.mask_self is not None and out.mask_self.shape == (6, 1, 32, 32)  # pairs 0, 2, 4
    for img in out[:4]:
        assert img.shape == (5, 1, 32, 32) and torch.isfinite(img).all()
    model.eval()
    with torch.no_grad():
        out = model(x1, x2)
    assert out.mask1 is not None and out.mask_self is None
    # without the edit there is no mask
    plain = KECAE(KECAEConfig(**{**EDIT, "edit": False}))(x1, x2)
    assert plain.mask1 is None and plain.mask2 is None and plain.mask_self is None


def test_a_new_edit_is_the_identity_and_its_mask_starts_small_but_alive():
    torch.manual_seed(0)
    model = KECAE(KECAEConfig(**EDIT)).eval()
    x1, x2 = _pair(3)
    with torch.no_grad():
        out = model(x1, x2)
    assert out.disp1 is not None and out.mask1 is not None
    # δ = 0: G is the moved recipient, so X' is the warp exchange's image
    torch.testing.assert_close(out.x1_ex, warp_images(x1, out.disp1).clamp(-1, 1))
    m0 = torch.sigmoid(torch.tensor(EDIT_MASK_BIAS))
    torch.testing.assert_close(out.mask1, torch.full_like(out.mask1, float(m0)))
    # the mask gets a gradient from the first step (a mask at exactly 0 would never learn)
    model.train()
    loss = model(x1, x2).x2_ex.sum()
    loss.backward()
    assert model.edit_head is not None and model.edit_head.out.weight.grad is not None
    assert model.edit_head.out.weight.grad.abs().sum() > 0


def test_the_edit_can_remove_what_the_warp_cannot():
    # a head whose δ is -2 inside a square and whose mask is 1 there, 0 elsewhere, paints the
    # square black: the composition replaces pixels, it does not only move them
    head = EditHead(4)
    head.reset_output()
    moved = torch.ones(1, 1, 8, 8)
    with torch.no_grad():
        head.out.bias.copy_(torch.tensor([-50.0, 50.0]))  # δ = -2, m = 1 everywhere
    g, m = head(moved, moved, moved)
    torch.testing.assert_close(compose(moved, g, m), -torch.ones(1, 1, 8, 8))


@pytest.mark.parametrize(
    "fields, words",
    [
        (dict(exchange="decode"), "edit=True needs exchange='warp'"),
        (dict(exchange="residual"), "edit=True needs exchange='warp'"),
        (dict(edit_channels=0), "edit_channels=0 must be an int >= 1"),
        (dict(edit_channels=2.5), "edit_channels=2.5 must be an int >= 1"),
        (dict(edit="yes"), "edit='yes' must be true or false"),
        (dict(edit_mask_grid=-1), "edit_mask_grid=-1 must be an int >= 0"),
        (dict(edit_mask_grid=4.0), "edit_mask_grid=4.0 must be an int >= 0"),
    ],
)
def test_edit_options_are_checked(fields, words):
    with pytest.raises(ValueError, match=words):
        KECAEConfig(**{**EDIT, **fields})


def test_a_grid_mask_is_the_cell_mean_of_the_logit_interpolated_back():
    torch.manual_seed(0)
    fine, coarse = EditHead(4), EditHead(4, mask_grid=4)
    coarse.load_state_dict(fine.state_dict())
    torch.nn.init.normal_(fine.out.weight, std=0.5)
    coarse.out.weight.data.copy_(fine.out.weight.data)
    moved, dec_ex, dec_moved = (torch.rand(2, 1, 32, 32) * 2 - 1 for _ in range(3))
    with torch.no_grad():
        _, m_fine = fine(moved, dec_ex, dec_moved)
        g, m = coarse(moved, dec_ex, dec_moved)
    logit = torch.logit(m_fine.double()).float()
    cells = logit.reshape(2, 1, 4, 8, 4, 8).mean((3, 5))  # 8 px cells of the 32 px image
    want = torch.sigmoid(
        torch.nn.functional.interpolate(cells, size=(32, 32), mode="bilinear", align_corners=False)
    )
    torch.testing.assert_close(m, want, atol=1e-4, rtol=0)
    # smooth: neighbouring pixels differ far less than the per-pixel mask's do
    step = (m[..., 1:] - m[..., :-1]).abs().max()
    assert step < 0.5 * (m_fine[..., 1:] - m_fine[..., :-1]).abs().max()
    # the appearance is the per-pixel head's: only the mask is coarse
    torch.testing.assert_close(g, fine(moved, dec_ex, dec_moved)[0].detach())
    # a model passes its grid to its head; 0 (the default) keeps the mask per pixel
    assert KECAE(KECAEConfig(**{**EDIT, "edit_mask_grid": 4})).edit_head.mask_grid == 4
    assert KECAE(KECAEConfig(**EDIT)).edit_head.mask_grid == 0


def test_the_cpu_preset_takes_the_edit_as_an_override():
    config = kecae_config("cpu", edit=True)
    assert config.edit and config.exchange == "warp"
    assert KECAE(config).edit_head is not None


def test_decoded_appearance_places_the_decoders_own_change_and_leaves_the_control_alone():
    head = EditHead(4)
    head.reset_output()
    g = torch.Generator().manual_seed(0)
    moved, dec_ex, dec_moved = (torch.rand(2, 1, 8, 8, generator=g) for _ in range(3))
    appearance, mask = head(moved, dec_ex, dec_moved, "decoded")
    torch.testing.assert_close(appearance, moved + dec_ex - dec_moved)  # by hand, no blur
    # the no-exchange control (D(h') = D(h), no displacement) is the recipient whatever the mask
    same, _ = head(moved, dec_moved, dec_moved, "decoded")
    torch.testing.assert_close(compose(moved, same, mask), moved.clamp(-1, 1))
    with pytest.raises(ValueError, match="edit_appearance='blend' must be one of"):
        KECAEConfig(**{**EDIT, "edit_appearance": "blend"})
    model = KECAE(KECAEConfig(**{**EDIT, "edit_appearance": "decoded"}))
    out = model(*_pair(2))
    assert out.mask1 is not None and out.x1_ex.shape == (2, 1, 32, 32)


def test_opening_by_hand_removes_a_narrow_spur_and_keeps_broad_bone():
    img = -torch.ones(1, 1, 12, 12)  # soft tissue at -1
    img[..., 2:10, 0:6] = 0.6  # a broad block of bone (8 × 6 px)
    img[..., 5:7, 6:9] = 0.6  # a 2 px thick spur growing out of its right edge
    img[..., 0, 11] = 1.0  # a single bright pixel
    opened = open_images(img, 3)
    want = -torch.ones(1, 1, 12, 12)
    want[..., 2:10, 0:6] = 0.6
    torch.testing.assert_close(opened, want)  # spur and dot gone, the block exactly kept
    assert bool((open_images(torch.rand(2, 1, 9, 9), 5) <= 1).all())
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 16, 16, generator=g)
    assert bool((open_images(x, 5) <= x + 1e-7).all())  # never brighter than the input
    torch.testing.assert_close(open_images(open_images(x, 5), 5), open_images(x, 5))  # idempotent
    for bad in (1, 4):
        with pytest.raises(ValueError, match=f"square size {bad} must be an odd number"):
            open_images(x, bad)


def test_open_size_scales_with_the_image():
    assert square_size_px(64, 0.08) == 5
    assert square_size_px(299, 0.08) == 23
    assert square_size_px(32, 0.01) == 3  # never below 3 px
    for bad in (0.0, -0.1, 0.6, True):
        with pytest.raises(
            ValueError, match=r"edit_square_frac=.* must be a share of the image side"
        ):
            KECAEConfig(**{**EDIT, "edit_square_frac": bad})


def test_open_appearance_can_only_take_bright_pixels_away():
    head = EditHead(4, square_px=3)
    head.reset_output()
    with torch.no_grad():
        head.out.bias.copy_(torch.tensor([0.0, 50.0]))  # m = 1 everywhere
    img = -torch.ones(1, 1, 10, 10)
    img[..., 2:8, 0:5] = 0.5
    img[..., 4, 5:8] = 0.5  # a 1 px spur
    with torch.no_grad():
        appearance, mask = head(img, img, img, "open")
    torch.testing.assert_close(appearance, open_images(img, 3))
    out = compose(img, appearance, mask)
    assert float(out[..., 4, 5:8].max()) == -1.0 and float(out[..., 2:8, 0:5].min()) == 0.5
    assert bool((out <= img).all())
    # a model with the open edit: a new one is the identity, its control mask comes from the
    # same appearance, and the square follows the image size
    torch.manual_seed(0)
    model = KECAE(KECAEConfig(**{**EDIT, "edit_appearance": "open"}))
    assert model.edit_head is not None and model.edit_head.square_px == 3  # 0.08 × 32 px
    x1, x2 = _pair(4)
    out_t = model(x1, x2)
    assert out_t.mask_self is not None and out_t.mask_self.shape == (4, 1, 32, 32)
    loss = out_t.x2_ex.sum()
    loss.backward()
    assert model.edit_head.out.weight.grad is not None
    assert model.edit_head.out.weight.grad.abs().sum() > 0


def test_erosion_by_hand_shaves_every_outline_and_the_erode_edit_a_masked_bulge():
    img = -torch.ones(1, 1, 10, 10)
    img[..., 2:9, 1:6] = 0.5  # bone, 7 × 5 px
    img[..., 4:7, 6:8] = 0.5  # a 3 px tall bulge sticking out 2 px on its right
    want = -torch.ones(1, 1, 10, 10)
    want[..., 3:8, 2:5] = 0.5
    want[..., 5, 5:7] = 0.5  # the bulge's core row: its square fits inside bone + bulge
    torch.testing.assert_close(erode_images(img, 3), want)
    head = EditHead(4, square_px=3)
    head.reset_output()
    with torch.no_grad():
        appearance, _ = head(img, img, img, "erode")
    torch.testing.assert_close(appearance, erode_images(img, 3))
    mask = torch.zeros(1, 1, 10, 10)
    mask[..., 3:8, 6:9] = 1.0  # over the bulge only
    shaved = compose(img, appearance, mask)
    assert float(shaved[..., 4:7, 7].max()) == -1.0  # the bulge's tip is gone
    torch.testing.assert_close(shaved[..., :, :6], img[..., :, :6])  # the bone itself is kept
    torch.manual_seed(0)
    model = KECAE(KECAEConfig(**{**EDIT, "edit_appearance": "erode"}))
    out = model(*_pair(2))
    assert out.mask2 is not None and out.x2_ex.shape == (2, 1, 32, 32)


def _knee_like(s: int = 32) -> torch.Tensor:
    """An asymmetric picture (bones of different widths, a spur on one side) to align."""
    img = -torch.ones(1, 1, s, s)
    img[..., 4:14, 6:24] = 0.6  # femur
    img[..., 17:28, 8:22] = 0.4  # tibia, narrower
    img[..., 16:18, 22:25] = 0.6  # a spur on the image's right only
    return img


def test_align_donor_undoes_a_shift_and_a_mirror_by_hand():
    recipient = _knee_like()
    shifted = torch.roll(recipient, shifts=(3, -2), dims=(2, 3))  # donor 3 px down, 2 px left
    mirrored = recipient.flip(-1)  # a knee of the other side
    donors = torch.cat([shifted, mirrored, recipient])
    aligned = align_donor(donors, recipient.expand(3, -1, -1, -1), max_shift_px=5)
    # inside the part the roll did not wrap, the shifted donor lands back on the recipient exactly
    torch.testing.assert_close(aligned[0, :, 4:28, 4:28], recipient[0, :, 4:28, 4:28])
    torch.testing.assert_close(aligned[1], recipient[0])  # mirrored back
    torch.testing.assert_close(aligned[2], recipient[0])  # no shift when already aligned
    # a shift beyond the bound is not searched: the best within ±1 px is taken instead
    far = align_donor(shifted, recipient, max_shift_px=1)
    assert not torch.equal(far[0, :, 4:28, 4:28], recipient[0, :, 4:28, 4:28])
    # the donor's pixel values are kept (whole-pixel shifts: no interpolation, no blur)
    assert set(aligned[0].unique().tolist()) <= set(recipient.unique().tolist())


def test_donor_appearance_puts_the_donors_margin_under_the_mask_and_the_control_is_itself():
    recipient = _knee_like()
    donor = recipient.clone()
    donor[..., 16:18, 22:25] = -1.0  # the donor has no spur
    head = EditHead(4, max_shift_px=4)
    head.reset_output()
    with torch.no_grad():
        appearance, _ = head(recipient, recipient, recipient, "donor", donor)
        control, _ = head(recipient, recipient, recipient, "donor")  # no donor: itself
    torch.testing.assert_close(appearance, donor)
    torch.testing.assert_close(control, recipient)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 14:20, 21:27] = 1.0  # over the spur only
    out = compose(recipient, appearance, mask)
    assert float(out[..., 16:18, 22:25].max()) == -1.0  # the spur is gone
    torch.testing.assert_close(out[..., :, :21], recipient[..., :, :21])  # the rest is kept
    # the other way the donor's spur is added: what it adds is the donor's own bone
    with torch.no_grad():
        added, _ = head(donor, donor, donor, "donor", recipient)
    spur = (..., slice(16, 18), slice(22, 25))
    torch.testing.assert_close(compose(donor, added, mask)[spur], recipient[spur])
    # in a model, X'1 takes its appearance from X2 and X'2 from X1, and the mask gets a gradient
    torch.manual_seed(0)
    model = KECAE(KECAEConfig(**{**EDIT, "edit_appearance": "donor"}))
    x1, x2 = _pair(2)
    out_t = model(x1, x2)
    assert out_t.mask1 is not None and out_t.mask_self is not None
    out_t.x2_ex.sum().backward()
    assert model.edit_head is not None and model.edit_head.out.weight.grad is not None
    assert model.edit_head.out.weight.grad.abs().sum() > 0
    with torch.no_grad():  # a new model moves nothing and blends the aligned donor by its mask
        model.eval()
        m0 = torch.sigmoid(torch.tensor(EDIT_MASK_BIAS))
        want = ((1 - m0) * x2 + m0 * align_donor(x1, x2, model.edit_head.max_shift_px)).clamp(-1, 1)
        torch.testing.assert_close(model(x1, x2).x2_ex, want, atol=1e-5, rtol=0)


def _two_bones(tibia_left: int, tibia_right: int, s: int = 64) -> torch.Tensor:
    img = -torch.ones(1, 1, s, s)
    img[..., 6:28, 12:52] = 0.6  # femur
    img[..., 34:60, tibia_left:tibia_right] = 0.4  # tibia
    return img


def test_refine_donor_puts_a_wider_knees_margins_on_the_recipients_by_hand():
    recipient = _two_bones(18, 46)
    donor = _two_bones(15, 49)  # aligned as a whole, but its tibia is 3 px wider on each side
    refined = refine_donor(donor, recipient)
    before = float(((donor - recipient) ** 2).mean())
    after = float(((refined - recipient) ** 2).mean())
    assert after < 0.01 * before  # 0.0746 -> 0.0003 measured
    rows = (..., slice(40, 54), slice(None))
    # both margins now lie where the recipient's do: one tile moved right, the other left
    torch.testing.assert_close(refined[rows][..., 12:22], recipient[rows][..., 12:22])
    torch.testing.assert_close(refined[rows][..., 42:52], recipient[rows][..., 42:52])
    # a donor that is the recipient stays as it is, at the search's size and resampled for it
    for size in (64, 96):
        same = torch.rand(2, 1, size, size) * 2 - 1
        torch.testing.assert_close(refine_donor(same, same), same, atol=1e-4, rtol=0)


def test_donor_local_appearance_is_the_refined_donor_and_the_control_is_itself():
    recipient = _two_bones(18, 46)
    donor = _two_bones(15, 49).roll(2, dims=3)  # wider and 2 px to the right
    head = EditHead(4, max_shift_px=6)
    head.reset_output()
    with torch.no_grad():
        appearance, _ = head(recipient, recipient, recipient, "donor_local", donor)
        control, _ = head(recipient, recipient, recipient, "donor_local")
    expected = refine_donor(align_donor(donor, recipient, 6), recipient)
    torch.testing.assert_close(appearance, expected)
    assert float(((appearance - recipient) ** 2).mean()) < 0.01
    torch.testing.assert_close(control, recipient, atol=1e-5, rtol=0)
    torch.manual_seed(0)
    model = KECAE(KECAEConfig(**{**EDIT, "edit_appearance": "donor_local"}))
    x1, x2 = _pair(2)
    out = model(x1, x2)
    out.x2_ex.sum().backward()
    assert model.edit_head is not None and model.edit_head.out.weight.grad is not None
