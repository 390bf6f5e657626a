"""``sup_target: donor_logit``: J_SUP as a Huber match between the supervisor's centred logits
on X' and on its donor (X'1's donor is X2, X'2's is X1); by hand on a fixed linear supervisor,
zero when X' is its donor, a pull back on a caricature, and a slope that does not fade past the
decision line as cross-entropy's does."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kecae.losses import LossInputs, kecae_loss
from kecae.models import KECAE, kecae_config
from kecae.supervision_losses import donor_logit_term, ensemble_supervision
from kecae.training.config import KECAETrainConfig, LossSettings


class _MeanSupervisor(nn.Module):
    """Logits (0, 4·mean(x)): the margin l_high − l_low is four times the image mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(m), 4 * m], dim=1)


def _images(*means: float) -> torch.Tensor:
    return torch.stack([torch.full((1, 4, 4), v) for v in means])


def test_the_term_by_hand():
    sup = _MeanSupervisor()
    x1, x2 = _images(0.0, 0.5), _images(1.0, -0.25)  # donors' margins: x2 4, -1; x1 0, 2
    x_ex = torch.cat([_images(0.25, -0.25), _images(0.0, 0.5)])  # margins 1, -1 | 0, 2
    logits = sup(x_ex)
    # centred logits are (-z/2, z/2): each class differs from the donor's by |Δz|/2
    # X'1: Δz = 1 - 4 = -3 -> per class 1.5 -> huber 1.0; summed over 2 classes 2.0
    #      Δz = -1 - (-1) = 0 -> 0
    # X'2: both equal their donor (0 vs 0, 2 vs 2) -> 0
    expected = (2.0 + 0 + 0 + 0) / 4
    assert donor_logit_term(logits, sup, x1, x2).item() == pytest.approx(expected)
    # a small difference is quadratic: Δz = 1 -> per class 0.5 -> 0.5·0.25 = 0.125, two classes
    x_ex = torch.cat([_images(1.25, -0.25), _images(0.0, 0.5)])
    assert donor_logit_term(sup(x_ex), sup, x1, x2).item() == pytest.approx(0.25 / 4)
    # the ensemble form with one member is the term itself
    y = torch.zeros(2, dtype=torch.long)
    assert ensemble_supervision([sup], x_ex, x1, x2, y, y + 1, "donor_logit").item() == (
        pytest.approx(0.25 / 4)
    )


def test_the_pull_does_not_fade_past_the_line_and_turns_back_past_the_donor():
    """A KL-0 donor with margin -4; X' at margins from +2 (not yet exchanged) to -6 (more sure
    than the donor: a caricature). Cross-entropy's gradient fades past the line; the match's
    pulls with slope 1 until it is near the donor, and pushes back beyond it."""
    sup = _MeanSupervisor()
    donor = _images(-1.0)  # margin -4
    recip = _images(0.0)
    grads = {}
    for z in (2.0, -2.0, -6.0):
        x = _images(z / 4).requires_grad_(True)
        # X'2 (recipient KL-2, donor x1 = the KL-0 image); X'1 is its own donor (no term)
        x_ex = torch.cat([recip, x])
        loss = donor_logit_term(sup(x_ex), sup, donor, recip)
        (g,) = torch.autograd.grad(loss, x)
        grads[z] = g.sum().item()  # d loss / d mean(x), times 16 pixels / 16
        ce = nn.functional.cross_entropy(sup(x), torch.zeros(1, dtype=torch.long))
        (gce,) = torch.autograd.grad(ce, x)
        grads[("ce", z)] = gce.sum().item()
    # d/d(mean) = d/dz · 4, and the batch mean over 2 X' halves it: slope 1 -> 4 / 2 = 2
    assert grads[2.0] == pytest.approx(2.0)
    assert grads[-2.0] == pytest.approx(2.0)  # still full strength past the line
    assert grads[-6.0] == pytest.approx(-2.0)  # beyond the donor: pulled back
    assert grads[("ce", -2.0)] < 0.5 * grads[("ce", 2.0)]  # cross-entropy has faded


def test_trainer_settings_accept_it_and_the_loss_uses_it():
    config = KECAETrainConfig(sup_target="donor_logit")
    settings = LossSettings.pick(vars(config))
    assert settings.sup_target == "donor_logit"
    torch.manual_seed(0)
    model = KECAE(kecae_config("tiny"))
    size = model.config.image_size
    x1 = torch.rand(2, 1, size, size) * 2 - 1
    x2 = torch.rand(2, 1, size, size) * 2 - 1
    y1 = torch.zeros(2, dtype=torch.long)
    sup = _MeanSupervisor()
    out = model(x1, x2)
    _, logged = kecae_loss(LossInputs(out, x1, x2, y1, y1 + 1, sup), settings)
    by_hand = donor_logit_term(sup(torch.cat([out.x1_ex, out.x2_ex])), sup, x1, x2)
    assert logged["sup"].item() == pytest.approx(by_hand.item())
