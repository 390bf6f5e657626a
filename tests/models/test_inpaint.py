"""The healthy inpainter (kecae.models.inpaint) and the edit appearance "healthy": the random
training masks, the network's shapes and what it can see, its loss by hand, that it learns to
continue an outline, and that the exchange moves the mask but never the inpainter's weights."""

from __future__ import annotations

import pytest
import torch

from kecae.losses import LossInputs, kecae_loss
from kecae.models import KECAE, KECAEConfig
from kecae.models.edit import EDIT_MASK_BIAS, EditHead, compose, warp_images
from kecae.models.inpaint import (
    MASK_CENTRE_MARGIN,
    MASK_SIDE,
    Inpainter,
    fill,
    inpaint_loss,
    random_masks,
)
from kecae.training.config import LossSettings

HEALTHY = dict(
    image_size=32,
    width=1 / 8,
    depth=3,
    exchange="warp",
    warp_grid=8,
    edit=True,
    edit_appearance="healthy",
    inpaint_channels=4,
)


def test_random_masks_are_soft_boxes_reproducible_by_seed():
    g = torch.Generator().manual_seed(0)
    masks = random_masks(64, 64, g)
    assert masks.shape == (64, 1, 64, 64)
    assert float(masks.min()) >= 0 and float(masks.max()) <= 1
    area = masks.mean((1, 2, 3))
    # at least one box of side >= 8 % of the side; at most three of 30 %
    assert float(area.min()) > 0.5 * MASK_SIDE[0] ** 2
    assert float(area.max()) < 3 * MASK_SIDE[1] ** 2 + 0.01
    # soft edges: values strictly between 0 and 1 exist
    assert bool(((masks > 0.05) & (masks < 0.95)).any())
    again = random_masks(64, 64, torch.Generator().manual_seed(0))
    other = random_masks(64, 64, torch.Generator().manual_seed(1))
    assert torch.equal(masks, again) and not torch.equal(masks, other)


def test_random_masks_centres_keep_their_margin_and_the_default_reaches_the_knee_margins():
    def outer_share(masks, px):  # share of the masks' mass within px of an image edge
        return float(1 - masks[..., px:-px, px:-px].sum() / masks.sum())

    # centres 20 % from the edges: the outer 2 px carry (almost) none of the mass
    middle = random_masks(256, 64, torch.Generator().manual_seed(0), centre_margin=0.2)
    assert outer_share(middle, 2) < 0.005
    # centres 45 % from the edges: every box (half-side <= 15 %) lies in the middle 40 % + blur
    tight = random_masks(256, 64, torch.Generator().manual_seed(0), centre_margin=0.45)
    assert outer_share(tight, 16) < 0.005
    # the default reaches where the plateau corners lie (~10 px from the side at 64 px)
    default = random_masks(256, 64, torch.Generator().manual_seed(0))
    assert MASK_CENTRE_MARGIN <= 0.1
    assert outer_share(default, 10) > 3 * outer_share(middle, 10)
    with pytest.raises(ValueError, match=r"centre_margin=0\.5"):
        random_masks(2, 64, centre_margin=0.5)


@pytest.mark.parametrize("size", [32, 64, 96, 299])
def test_the_inpainter_gives_an_image_of_any_size(size):
    torch.manual_seed(0)
    net = Inpainter(4)
    with torch.no_grad():
        out = net(torch.rand(2, 1, size, size) * 2 - 1, torch.rand(2, 1, size, size))
    assert out.shape == (2, 1, size, size)
    assert float(out.abs().max()) <= 1


def test_the_inpainter_cannot_see_what_a_hard_mask_hides():
    torch.manual_seed(0)
    net = Inpainter(4)
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 10:20, 12:22] = 1.0
    y = x.clone()
    y[..., 10:20, 12:22] = torch.rand(10, 10)  # another image under the mask only
    torch.testing.assert_close(net(x, mask), net(y, mask))
    assert not torch.allclose(net(x, torch.zeros_like(mask)), net(y, torch.zeros_like(mask)))


def test_the_inpaint_loss_by_hand():
    class Constant(torch.nn.Module):
        def forward(self, x, mask):
            return torch.full_like(x, 0.25)

    x = torch.rand(3, 1, 16, 16) * 2 - 1
    got = inpaint_loss(Constant(), x, torch.Generator().manual_seed(7))
    m = random_masks(3, 16, torch.Generator().manual_seed(7))
    want = ((0.25 - x).abs() * m).sum() / m.sum()
    torch.testing.assert_close(got, want)


def _margins(n: int, g: torch.Generator, s: int = 32) -> torch.Tensor:
    """Knee-like images: a bright bone whose lower edge runs straight across at a random
    height, dark soft tissue below."""
    rows = torch.arange(s, dtype=torch.float32)[None, :, None]
    edge = torch.randint(10, 22, (n, 1, 1), generator=g).float()
    img = torch.where(rows < edge, torch.tensor(0.6), torch.tensor(-0.8)).expand(n, s, s)
    return img[:, None].clone()


def test_the_inpainter_learns_to_run_an_outline_on_under_a_mask():
    torch.manual_seed(0)
    net = Inpainter(4)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    test = _margins(32, torch.Generator().manual_seed(99))
    before = float(inpaint_loss(net, test, torch.Generator().manual_seed(5)).detach())
    for _ in range(150):
        loss = inpaint_loss(net, _margins(16, g), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = float(inpaint_loss(net, test, torch.Generator().manual_seed(5)).detach())
    assert after < 0.35 * before, (before, after)
    # a hidden stretch of the edge comes back where the edge runs, not as a grey blur
    img = _margins(1, torch.Generator().manual_seed(3))
    mask = torch.zeros_like(img)
    mask[..., 6:26, 12:20] = 1.0
    with torch.no_grad():
        out = net(img, mask)
    err = (out - img).abs()[..., 6:26, 12:20]
    assert float(err.mean()) < 0.2


def test_fill_moves_the_mask_and_the_image_never_the_weights():
    torch.manual_seed(0)
    net = Inpainter(4)
    x = (torch.rand(2, 1, 32, 32) * 2 - 1).requires_grad_()
    mask = torch.rand(2, 1, 32, 32).requires_grad_()
    torch.testing.assert_close(fill(net, x, mask), net(x, mask))
    fill(net, x, mask).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert mask.grad is not None and mask.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


def test_fill_without_gradient_is_the_same_image_and_a_constant_of_the_step():
    torch.manual_seed(0)
    net = Inpainter(4)
    x = (torch.rand(2, 1, 32, 32) * 2 - 1).requires_grad_()
    mask = torch.rand(2, 1, 32, 32).requires_grad_()
    still = fill(net, x, mask, grad=False)
    torch.testing.assert_close(still, fill(net, x, mask))
    assert not still.requires_grad
    # composed by the mask, the mask still learns: d/dm of sum((1 - m)·x + m·fill) = fill - x
    x_const = x.detach()
    ((1 - mask) * x_const + mask * still).sum().backward()
    torch.testing.assert_close(mask.grad, still - x_const)
    assert x.grad is None and all(p.grad is None for p in net.parameters())


def test_a_healthy_model_without_fill_gradient_gives_the_same_exchange_and_still_moves_the_mask():
    torch.manual_seed(0)
    with_grad = KECAE(KECAEConfig(**HEALTHY))
    without = KECAE(KECAEConfig(**{**HEALTHY, "inpaint_fill_grad": False}))
    without.load_state_dict(with_grad.state_dict())
    g = torch.Generator().manual_seed(0)
    x1 = torch.rand(4, 1, 32, 32, generator=g) * 2 - 1
    x2 = torch.rand(4, 1, 32, 32, generator=g) * 2 - 1
    grads = []
    for model in (with_grad, without):
        model.train()
        out = model(x1, x2)
        (out.x1_ex.square().sum() + out.x2_ex.square().sum()).backward()
        assert model.edit_head is not None and model.edit_head.out.weight.grad is not None
        grads.append(model.edit_head.out.weight.grad.clone())
        assert model.inpainter is not None
        assert all(p.grad is None for p in model.inpainter.parameters())
    torch.testing.assert_close(with_grad(x1, x2).x2_ex, without(x1, x2).x2_ex)
    # the mask learns in both, but not the same way: the fill's own gradient is left out
    assert grads[1].abs().sum() > 0
    assert not torch.allclose(grads[0], grads[1])


def test_the_healthy_head_predicts_the_mask_then_fills_under_it():
    head = EditHead(4)
    head.reset_output()
    moved = torch.rand(2, 1, 32, 32) * 2 - 1
    seen = {}

    def fake_fill(x, m):
        seen["mask"] = m
        return torch.full_like(x, -1.0)

    with torch.no_grad():
        g, m = head(moved, moved, moved, "healthy", None, fake_fill)
        control, m_self = head(moved, moved, moved, "healthy")  # no fill: G is the recipient
    assert torch.equal(seen["mask"], m)
    torch.testing.assert_close(g, torch.full_like(moved, -1.0))
    torch.testing.assert_close(control, moved)
    m0 = torch.sigmoid(torch.tensor(EDIT_MASK_BIAS))
    torch.testing.assert_close(m, torch.full_like(m, float(m0)))
    torch.testing.assert_close(m_self, m)


def test_a_healthy_model_blends_the_fill_by_its_mask_and_trains_only_its_inpainter_on_x1():
    torch.manual_seed(0)
    model = KECAE(KECAEConfig(**HEALTHY))
    assert model.inpainter is not None
    assert KECAE(KECAEConfig(**{**HEALTHY, "edit_appearance": "free"})).inpainter is None
    g = torch.Generator().manual_seed(0)
    x1 = torch.rand(4, 1, 32, 32, generator=g) * 2 - 1
    x2 = torch.rand(4, 1, 32, 32, generator=g) * 2 - 1
    model.eval()
    with torch.no_grad():
        out = model(x1, x2)
        assert out.disp2 is not None and out.mask2 is not None
        moved = warp_images(x2, out.disp2)
        want = compose(moved, model.inpainter(moved, out.mask2), out.mask2)
    torch.testing.assert_close(out.x2_ex, want, atol=1e-6, rtol=0)
    # the exchange's losses move the edit head, not the inpainter
    model.train()
    out = model(x1, x2)
    (out.x1_ex.sum() + out.x2_ex.sum()).backward()
    assert model.edit_head is not None and model.edit_head.out.weight.grad is not None
    assert model.edit_head.out.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.inpainter.parameters())
    # the inpaint term does, from X1 (the lower grade) alone
    model.zero_grad(set_to_none=True)
    settings = LossSettings(lambda_inpaint=1.0)
    y1 = torch.zeros(4, dtype=torch.long)
    inputs = LossInputs(
        model(x1, x2), x1, x2, y1, y1 + 1, torch.nn.Identity(), model, torch.Generator()
    )
    with torch.no_grad():
        by_hand = inpaint_loss(model.inpainter, x1, torch.Generator())
    _, logged = _loss_without_supervision(inputs, settings)
    torch.testing.assert_close(logged["inpaint"], by_hand)
    # the masks' margin comes from the settings (default: the module's)
    assert LossSettings().inpaint_mask_margin == MASK_CENTRE_MARGIN
    inputs = LossInputs(
        model(x1, x2), x1, x2, y1, y1 + 1, torch.nn.Identity(), model, torch.Generator()
    )
    with torch.no_grad():
        by_hand = inpaint_loss(model.inpainter, x1, torch.Generator(), centre_margin=0.3)
    settings = LossSettings(lambda_inpaint=1.0, inpaint_mask_margin=0.3)
    _, logged = _loss_without_supervision(inputs, settings)
    torch.testing.assert_close(logged["inpaint"], by_hand)


def _loss_without_supervision(inputs, settings):
    from kecae.losses import TERMS

    terms = [t for t in TERMS if "inpaint" in t.weights or "mse" in t.weights]
    total, logged = kecae_loss(inputs, settings, terms)
    total.backward()
    model = inputs.model
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.inpainter.parameters())
    return total, logged


def test_the_control_term_is_the_change_the_fill_makes_to_the_own_key_control_ramped():
    from kecae.edit_losses import control_change_term
    from kecae.losses import TERMS

    # by hand: 2 px of 4 masked at 0.5, the fill 1.0 away there: mean |Δ| = 2 · 0.5 / 4
    x = torch.zeros(1, 1, 2, 2)
    g = torch.ones(1, 1, 2, 2)
    m = torch.tensor([[[[0.5, 0.5], [0.0, 0.0]]]])
    torch.testing.assert_close(control_change_term(x, g, m), torch.tensor(0.25))
    torch.testing.assert_close(control_change_term(x, x, m), torch.tensor(0.0))  # G keeps X

    torch.manual_seed(0)
    model = KECAE(KECAEConfig(**{**HEALTHY, "inpaint_fill_grad": False})).train()
    g0 = torch.Generator().manual_seed(0)
    x1 = torch.rand(4, 1, 32, 32, generator=g0) * 2 - 1
    x2 = torch.rand(4, 1, 32, 32, generator=g0) * 2 - 1
    out = model(x1, x2)
    assert out.mask_self is not None and out.mask_self.shape == (4, 1, 32, 32)
    ctrl = torch.cat([x1[::2], x2[::2]])
    with torch.no_grad():
        want = control_change_term(ctrl, model.inpainter(ctrl, out.mask_self), out.mask_self)
    y = torch.zeros(4, dtype=torch.long)
    terms = [t for t in TERMS if "control" in t.weights]
    settings = LossSettings(lambda_control=2.0, adv_ramp=100)
    for step, weight in ((0, 0.0), (50, 1.0), (100, 2.0), (400, 2.0)):
        inputs = LossInputs(out, x1, x2, y, y + 1, torch.nn.Identity(), model, step=step)
        total, logged = kecae_loss(inputs, settings, terms)
        torch.testing.assert_close(logged["control"], want)
        torch.testing.assert_close(total, weight * want)
    # the control's mask learns from it (the fill is a constant here), the inpainter does not
    inputs = LossInputs(out, x1, x2, y, y + 1, torch.nn.Identity(), model, step=400)
    kecae_loss(inputs, settings, terms)[0].backward()
    assert model.edit_head is not None and model.edit_head.out.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.inpainter.parameters())
    # a model without the healthy fill has nothing to price
    free = KECAE(KECAEConfig(**{**HEALTHY, "edit_appearance": "free"})).train()
    inputs = LossInputs(free(x1, x2), x1, x2, y, y + 1, torch.nn.Identity(), free)
    with pytest.raises(ValueError, match="edit_appearance=healthy"):
        kecae_loss(inputs, settings, terms)


def test_the_inpaint_term_needs_a_healthy_model():
    torch.manual_seed(0)
    model = KECAE(KECAEConfig(**{**HEALTHY, "edit_appearance": "free"}))
    x = torch.zeros(2, 1, 32, 32)
    y = torch.zeros(2, dtype=torch.long)
    inputs = LossInputs(model(x, x), x, x, y, y + 1, torch.nn.Identity(), model)
    from kecae.losses import TERMS

    terms = [t for t in TERMS if "inpaint" in t.weights]
    with pytest.raises(ValueError, match="edit_appearance=healthy"):
        kecae_loss(inputs, LossSettings(lambda_inpaint=1.0), terms)


@pytest.mark.parametrize("value", ["no", 0, None])
def test_inpaint_fill_grad_is_checked(value):
    with pytest.raises(ValueError, match="inpaint_fill_grad="):
        KECAEConfig(**{**HEALTHY, "inpaint_fill_grad": value})


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_inpaint_channels_are_checked(value):
    with pytest.raises(ValueError, match="inpaint_channels="):
        KECAEConfig(**{**HEALTHY, "inpaint_channels": value})


def test_exploring_fill_hides_the_mask_and_random_boxes_in_training_only():
    torch.manual_seed(0)
    model = KECAE(KECAEConfig(**{**HEALTHY, "inpaint_explore": True}))
    assert model.inpainter is not None
    seen = []

    class Spy(torch.nn.Module):  # records what the inpainter is asked to hide
        def forward(self, x, mask):
            seen.append(mask)
            return torch.zeros_like(x)

    model.inpainter.forward = Spy().forward  # type: ignore[method-assign]
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    mask = torch.full((3, 1, 32, 32), 0.1)
    model.eval()
    model.healthy_fill(x, mask)
    assert torch.equal(seen[-1], mask)  # generation: the mask alone
    model.train()
    torch.manual_seed(1)
    model.healthy_fill(x, mask)
    hidden = seen[-1]
    assert bool((hidden >= mask).all()) and float(hidden.max()) > 0.99  # the mask and boxes
    torch.manual_seed(1)
    torch.testing.assert_close(hidden, torch.maximum(mask, random_masks(3, 32)))
    plain = KECAE(KECAEConfig(**HEALTHY)).train()
    plain.inpainter.forward = Spy().forward  # type: ignore[method-assign]
    plain.healthy_fill(x, mask)
    assert torch.equal(seen[-1], mask)  # off by default: the mask alone, in training too


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_inpaint_explore_is_checked(value):
    with pytest.raises(ValueError, match="inpaint_explore="):
        KECAEConfig(**{**HEALTHY, "inpaint_explore": value})


def test_the_control_term_fills_with_the_exploring_fill():
    from kecae.edit_losses import control_change_term
    from kecae.losses import TERMS

    torch.manual_seed(0)
    model = KECAE(KECAEConfig(**{**HEALTHY, "inpaint_fill_grad": False, "inpaint_explore": True}))
    model.train()
    g0 = torch.Generator().manual_seed(0)
    x1 = torch.rand(4, 1, 32, 32, generator=g0) * 2 - 1
    x2 = torch.rand(4, 1, 32, 32, generator=g0) * 2 - 1
    out = model(x1, x2)
    ctrl = torch.cat([x1[::2], x2[::2]])
    assert out.mask_self is not None
    y = torch.zeros(4, dtype=torch.long)
    terms = [t for t in TERMS if "control" in t.weights]
    inputs = LossInputs(out, x1, x2, y, y + 1, torch.nn.Identity(), model, step=10)
    torch.manual_seed(5)
    _, logged = kecae_loss(inputs, LossSettings(lambda_control=1.0, adv_ramp=0), terms)
    torch.manual_seed(5)
    with torch.no_grad():
        hidden = torch.maximum(out.mask_self, random_masks(4, 32))
        want = control_change_term(ctrl, model.inpainter(ctrl, hidden), out.mask_self)
        mask_only = control_change_term(ctrl, model.inpainter(ctrl, out.mask_self), out.mask_self)
    torch.testing.assert_close(logged["control"], want)
    assert not torch.allclose(want, mask_only)


def test_inpaint_explore_needs_the_healthy_fill():
    with pytest.raises(ValueError, match="inpaint_explore=true explores the healthy fill"):
        KECAEConfig(**{**HEALTHY, "edit_appearance": "free", "inpaint_explore": True})
