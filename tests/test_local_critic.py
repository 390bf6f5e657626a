"""The local grade critic (kecae.local_critic): its pooling and both losses by hand, that it
finds a small local feature from image labels alone, and that it learns from real images only."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from kecae.errors import KecaeError
from kecae.local_critic import (
    LSE_SHARPNESS,
    LocalGradeCritic,
    critic_term,
    exchange_term,
)
from kecae.losses import LOCAL, LossInputs, kecae_loss
from kecae.models import KECAE, KECAEConfig
from kecae.training.config import LossSettings


class _FixedMap(torch.nn.Module):
    def __init__(self, places: torch.Tensor) -> None:
        super().__init__()
        self.places = places

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.places


def test_the_image_logit_is_the_log_sum_exp_of_the_places_by_hand():
    critic = LocalGradeCritic(4)
    places = torch.tensor([[[[0.0, 1.0], [-2.0, 3.0]]], [[[0.5, 0.5], [0.5, 0.5]]]])
    critic.net = _FixedMap(places)  # type: ignore[assignment]
    image, got_places = critic(torch.zeros(2, 1, 8, 8))
    r = LSE_SHARPNESS
    first = math.log((1 + math.exp(r) + math.exp(-2 * r) + math.exp(3 * r)) / 4) / r
    torch.testing.assert_close(image, torch.tensor([first, 0.5]))
    assert torch.equal(got_places, places)
    # between the mean and the maximum of the places: one high place makes the image high
    assert 0.5 < first < 3.0 and first > 3.0 - math.log(4) / r - 1e-6


def test_the_critic_maps_places_at_a_quarter_of_the_side():
    critic = LocalGradeCritic()
    image, places = critic(torch.zeros(3, 1, 64, 64))
    assert image.shape == (3,) and places.shape == (3, 1, 16, 16)


class _Logits(torch.nn.Module):
    """A stub critic: image logit = the mean of each image (places unused)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.mean((1, 2, 3)), x


def test_both_losses_by_hand():
    a = torch.full((2, 1, 4, 4), 0.7)
    b = torch.full((2, 1, 4, 4), -0.3)
    bce = lambda z, y: F.binary_cross_entropy_with_logits(torch.tensor(z), torch.tensor(y))  # noqa: E731
    # the critic: X1 (first argument) is the lower grade, X2 the higher
    want_critic = 0.5 * (bce(0.7, 0.0) + bce(-0.3, 1.0))
    torch.testing.assert_close(critic_term(_Logits(), a, b), want_critic)
    # the exchange: X'1 must look like the higher grade somewhere, X'2 nowhere
    want_ex = 0.5 * (bce(0.7, 1.0) + bce(-0.3, 0.0))
    torch.testing.assert_close(exchange_term(_Logits(), a, b), want_ex)
    # removal only: X'2 alone, X'1 is not read
    removal = exchange_term(_Logits(), a * float("nan"), b, "removal")
    torch.testing.assert_close(removal, bce(-0.3, 0.0))
    with pytest.raises(ValueError, match="local_sides='x1'"):
        exchange_term(_Logits(), a, b, "x1")
    # with X'2 as a fake: the higher grade's half is the mean of X2's and X'2's terms
    f = torch.full((2, 1, 4, 4), 1.1)
    want_fakes = 0.5 * (bce(0.7, 0.0) + 0.5 * (bce(-0.3, 1.0) + bce(1.1, 1.0)))
    torch.testing.assert_close(critic_term(_Logits(), a, b, f), want_fakes)


def _bumps(n: int, with_bump: bool, g: torch.Generator, s: int = 32) -> tuple[torch.Tensor, list]:
    img = torch.full((n, 1, s, s), -0.5) + 0.05 * torch.randn(n, 1, s, s, generator=g)
    where = []
    for i in range(n):
        r, c = (int(v) for v in torch.randint(4, s - 7, (2,), generator=g))
        if with_bump:
            img[i, 0, r : r + 3, c : c + 3] = 0.8
        where.append((r + 1, c + 1))
    return img, where


def test_the_critic_finds_a_small_local_feature_from_image_labels_alone():
    torch.manual_seed(0)
    critic = LocalGradeCritic(8)
    opt = torch.optim.Adam(critic.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(120):
        lo, _ = _bumps(16, False, g)
        hi, _ = _bumps(16, True, g)
        loss = critic_term(critic, lo, hi)
        opt.zero_grad()
        loss.backward()
        opt.step()
    test_lo, _ = _bumps(32, False, torch.Generator().manual_seed(9))
    test_hi, where = _bumps(32, True, torch.Generator().manual_seed(9))
    with torch.no_grad():
        z_lo, _ = critic(test_lo)
        z_hi, places = critic(test_hi)
    assert float(((z_lo < 0).float().mean() + (z_hi > 0).float().mean()) / 2) > 0.95
    # the highest place of each image lies on its bump (places are 4 px apart)
    peak = places.flatten(1).argmax(1)
    rows, cols = (peak // places.shape[-1]) * 4 + 1.5, (peak % places.shape[-1]) * 4 + 1.5
    near = [
        abs(float(rw) - r) <= 4 and abs(float(cl) - c) <= 4
        for rw, cl, (r, c) in zip(rows, cols, where, strict=True)
    ]
    assert sum(near) >= 0.9 * len(near), near


def _warp_model_and_inputs():
    """A small warp KECAE, its local critic, a batch of 4 pairs and the loss inputs."""
    torch.manual_seed(0)
    config = KECAEConfig(image_size=32, width=1 / 8, depth=3, exchange="warp", warp_grid=8)
    model = KECAE(config)
    x1, x2 = torch.rand(4, 1, 32, 32) * 2 - 1, torch.rand(4, 1, 32, 32) * 2 - 1
    critic = LOCAL.build(config)
    y = torch.zeros(4, dtype=torch.long)
    out = model(x1, x2)
    inputs = LossInputs(out, x1, x2, y, y + 1, torch.nn.Identity(), model, None, 10_000)
    return model, critic, x1, x2, y, out, inputs


def test_the_critic_learns_from_real_images_only_and_the_exchange_term_reaches_the_model():
    model, critic, x1, x2, y, out, inputs = _warp_model_and_inputs()
    inputs.modules = {LOCAL.name: critic}
    settings = LossSettings(lambda_local_sup=0.1)
    from kecae.losses import TERMS

    terms = [t for t in TERMS if "local_sup" in t.weights or "mse" in t.weights]
    total, logged = kecae_loss(inputs, settings, terms)
    assert "local_sup" in logged
    total.backward()
    assert model.warp_head is not None and model.warp_head.weight.grad is not None
    assert model.warp_head.weight.grad.abs().sum() > 0
    # the critic's own step reads X1 and X2 only: X' full of NaN changes nothing in it
    assert LOCAL.update is not None
    poisoned = LossInputs(
        out._replace(x1_ex=out.x1_ex * float("nan"), x2_ex=out.x2_ex * float("nan")),
        x1,
        x2,
        y,
        y + 1,
        torch.nn.Identity(),
    )
    value = LOCAL.update(critic, poisoned, settings)["local_critic"]
    torch.testing.assert_close(value, critic_term(critic, x1, x2))
    assert math.isfinite(float(value.detach()))


@pytest.mark.parametrize("value", [-0.1, float("nan")])
def test_the_local_weight_is_checked(value):
    with pytest.raises(KecaeError, match=r"--lambda-local-sup .*: must be a finite number >= 0"):
        LossSettings(lambda_local_sup=value)


def test_with_local_fakes_the_critic_step_reads_x2_ex_detached():
    model, critic, x1, x2, _, out, inputs = _warp_model_and_inputs()
    settings = LossSettings(lambda_local_sup=0.1, local_fakes=True)
    assert LOCAL.update is not None
    value = LOCAL.update(critic, inputs, settings)["local_critic"]
    torch.testing.assert_close(value, critic_term(critic, x1, x2, out.x2_ex.detach()))
    assert float(value) != float(critic_term(critic, x1, x2))
    value.backward()
    # the critic learns; the model is not moved by the critic's own step
    assert all(p.grad is None for p in model.parameters())
    assert any(p.grad is not None for p in critic.parameters())


def test_warped_fakes_are_the_recipient_moved_by_the_warp_before_any_edit():
    from kecae.models.edit import warp_images

    model, critic, x1, x2, _, out, inputs = _warp_model_and_inputs()
    settings = LossSettings(lambda_local_sup=0.1, local_fakes=True, local_fakes_from="warped")
    assert LOCAL.update is not None and out.disp2 is not None
    value = LOCAL.update(critic, inputs, settings)["local_critic"]
    moved = warp_images(x2, out.disp2).detach()
    torch.testing.assert_close(value, critic_term(critic, x1, x2, moved))
    # X' full of NaN changes nothing: the fakes are not X'2
    poisoned = dataclasses.replace(inputs, out=out._replace(x2_ex=out.x2_ex * float("nan")))
    torch.testing.assert_close(LOCAL.update(critic, poisoned, settings)["local_critic"], value)
    value.backward()
    assert all(p.grad is None for p in model.parameters())
    # an exchange without a warp has no moved recipient
    with pytest.raises(ValueError, match="needs a warp exchange"):
        LOCAL.update(critic, dataclasses.replace(inputs, out=out._replace(disp2=None)), settings)
