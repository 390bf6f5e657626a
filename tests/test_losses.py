"""The hybrid loss: each term against numbers worked out by hand, λ weighting, gradient flow."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kecae.losses import hybrid_loss, lda_term, mse_term, supervision_term
from kecae.models import KECAE, KECAEOutput, build_classifier, kecae_config


def test_mse_term_by_hand():
    x1 = torch.zeros(1, 1, 2, 2)
    x1_hat = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # (1 + 4 + 9 + 16) / 4 = 7.5
    x2 = torch.ones(1, 1, 2, 2)
    x2_hat = torch.full((1, 1, 2, 2), 3.0)  # (3 − 1)² = 4 everywhere
    assert mse_term(x1, x1_hat, x2, x2_hat).item() == pytest.approx(11.5)


def test_supervision_term_uses_the_donor_label():
    y1, y2 = torch.tensor([0]), torch.tensor([1])  # X1 is KL-0, X2 is KL-2
    # D(X'1) = [0, ln 3] → p(KL-2) = 3/4; X'1 must be KL-2 (Y2): CE = −ln(3/4) = 0.287682.
    # D(X'2) = [0, 0] → p = 1/2 either way: CE = ln 2 = 0.693147.
    logits_x1_ex = torch.tensor([[0.0, math.log(3)]])
    logits_x2_ex = torch.tensor([[0.0, 0.0]])
    value = supervision_term(logits_x1_ex, logits_x2_ex, y1, y2).item()
    assert value == pytest.approx(0.287682 + 0.693147, abs=1e-5)
    # Had X'1 kept its own label Y1 the CE would be −ln(1/4) = 1.386294 instead.
    assert supervision_term(logits_x1_ex, logits_x2_ex, y2, y1).item() == pytest.approx(
        1.386294 + 0.693147, abs=1e-5)


def test_supervision_term_is_a_batch_mean():
    logits = torch.tensor([[0.0, math.log(3)], [math.log(3), 0.0]])  # both favour 3:1
    y = torch.tensor([1, 1])  # CE: −ln(3/4) = 0.287682 and −ln(1/4) = 1.386294
    zero = torch.tensor([[100.0, 0.0], [100.0, 0.0]])  # confidently class 0 → CE ≈ 0
    value = supervision_term(logits, zero, torch.tensor([0, 0]), y).item()
    assert value == pytest.approx((0.287682 + 1.386294) / 2, abs=1e-5)


# Two images, M = 4 elements each (written as (2, 1, 2, 2) maps, flattened row-major):
#   image 1: hN = [1, 2, 3, 4]  µN = 2.5, σN² = (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25
#            hK = [0, 0, 0, 0]  µK = 0,   σK² = 0     → (1.25 + 0) / 2.5² = 0.2
#   image 2: hN = [0, 0, 0, 0]  µN = 0,   σN² = 0
#            hK = [2, 2, 4, 4]  µK = 3,   σK² = 1     → (0 + 1) / 3² = 1/9
#   mode "image": (0.2 + 1/9) / 2 = 0.155556
#   mode "batch": all 8 hN: mean 10/8 = 1.25, squared deviations 0.0625 + 0.5625 + 3.0625 +
#                 7.5625 + 4·1.5625 = 17.5, unbiased variance 17.5 / 7 = 2.5;
#                 all 8 hK: mean 12/8 = 1.5, squared deviations 4·2.25 + 2·0.25 + 2·6.25 = 22,
#                 variance 22 / 7 = 3.142857;  (2.5 + 3.142857) / (1.25 − 1.5)² = 90.285714
H_N = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]).reshape(2, 1, 2, 2)
H_K = torch.tensor([[0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 4.0, 4.0]]).reshape(2, 1, 2, 2)


def test_lda_image_mode_by_hand():
    assert lda_term(H_N, H_K, eps=0.0, mode="image").item() == pytest.approx(0.155556, abs=1e-6)
    # The default ε = 1e-6 barely moves it: 1.25 / 6.250001 and 1 / 9.000001.
    expected = (1.25 / 6.250001 + 1 / 9.000001) / 2
    assert lda_term(H_N, H_K).item() == pytest.approx(expected, rel=1e-6)


def test_lda_batch_mode_by_hand():
    assert lda_term(H_N, H_K, eps=0.0, mode="batch").item() == pytest.approx(90.285714, rel=1e-6)


def test_lda_image_mode_is_per_image():
    # One image alone gives its own ratio: the batch mean does not mix images.
    assert lda_term(H_N[:1], H_K[:1], eps=0.0).item() == pytest.approx(0.2)
    assert lda_term(H_N[1:], H_K[1:], eps=0.0).item() == pytest.approx(1 / 9)


def test_lda_eps_keeps_equal_means_finite():
    h = torch.tensor([[1.0, 3.0]])  # µ = 2, σ² = 1 for both vectors
    value = lda_term(h, h.clone(), eps=1e-6)
    assert torch.isfinite(value)
    assert value.item() == pytest.approx(2 / 1e-6, rel=1e-6)
    assert torch.isinf(lda_term(h, h.clone(), eps=0.0))  # why ε exists
    assert torch.isfinite(lda_term(h, h.clone(), eps=1e-6, mode="batch"))


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="global"), r"\['image', 'batch'\]"),
    (dict(eps=-1.0), "eps"),
])
def test_lda_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lda_term(H_N, H_K, **kwargs)
    with pytest.raises(ValueError, match="same shape"):
        lda_term(H_N, H_K[:, :, :1])


class _CountingSupervisor(nn.Module):
    """Fixed linear classifier on the image mean; counts calls and their batch sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 2)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[-2.0], [2.0]]))
            self.linear.bias.zero_()
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.linear(x.mean(dim=(1, 2, 3))[:, None])


def _fake_output(b: int = 2, s: int = 4) -> tuple[KECAEOutput, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    imgs = [torch.rand(b, 1, s, s, generator=g) * 2 - 1 for _ in range(6)]
    lat = [torch.randn(b, 3, 2, 2, generator=g) + i for i in range(4)]
    out = KECAEOutput(imgs[0], imgs[1], imgs[2], imgs[3], *lat)
    return out, imgs[4], imgs[5]


def test_hybrid_loss_weights_and_terms():
    out, x1, x2 = _fake_output()
    y1, y2 = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)
    sup = _CountingSupervisor()
    total, terms = hybrid_loss(out, x1, x2, y1, y2, sup, lambda_sup=0.5, lambda_lda=0.25)
    assert sup.batches == [4]  # one call on cat([X'1, X'2])

    mse = mse_term(x1, out.x1_hat, x2, out.x2_hat)
    logits_1, logits_2 = sup.linear(out.x1_ex.mean((1, 2, 3))[:, None]), \
        sup.linear(out.x2_ex.mean((1, 2, 3))[:, None])
    sup_term = supervision_term(logits_1, logits_2, y1, y2)
    lda = (lda_term(out.hn1, out.hk1) + lda_term(out.hn2, out.hk2)) / 2
    assert terms["mse"].item() == pytest.approx(mse.item(), rel=1e-6)
    assert terms["sup"].item() == pytest.approx(sup_term.item(), rel=1e-6)
    assert terms["lda"].item() == pytest.approx(lda.item(), rel=1e-6)
    assert total.item() == pytest.approx(mse.item() + 0.5 * sup_term.item() + 0.25 * lda.item(),
                                         rel=1e-6)
    assert terms["total"].item() == pytest.approx(total.item())
    assert not any(t.requires_grad for t in terms.values())

    # The paper's defaults: λ1 = 1e-2, λ2 = 1e-3.
    total_default, _ = hybrid_loss(out, x1, x2, y1, y2, sup)
    assert total_default.item() == pytest.approx(
        mse.item() + 1e-2 * sup_term.item() + 1e-3 * lda.item(), rel=1e-6)
    # The batch LDA mode only changes the LDA term.
    _, terms_batch = hybrid_loss(out, x1, x2, y1, y2, sup, lda_mode="batch")
    expected = (lda_term(out.hn1, out.hk1, mode="batch") + lda_term(out.hn2, out.hk2, mode="batch")) / 2
    assert terms_batch["lda"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms_batch["mse"].item() == pytest.approx(mse.item(), rel=1e-6)


def test_hybrid_loss_rejects_negative_lambdas():
    out, x1, x2 = _fake_output()
    y = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="lambda"):
        hybrid_loss(out, x1, x2, y, y, _CountingSupervisor(), lambda_sup=-1.0)


def test_gradients_reach_generator_through_frozen_supervisor():
    config = kecae_config("tiny")
    torch.manual_seed(0)
    model = KECAE(config)
    supervisor = build_classifier("small", config.image_size).eval()
    for p in supervisor.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    x1 = torch.rand(4, 1, 32, 32, generator=g) * 2 - 1
    x2 = torch.rand(4, 1, 32, 32, generator=g) * 2 - 1
    y1, y2 = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)

    def grads(lambda_sup: float) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        total, _ = hybrid_loss(model(x1, x2), x1, x2, y1, y2, supervisor, lambda_sup=lambda_sup)
        total.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    with_sup = grads(1.0)
    assert all(p.grad is not None for p in model.parameters())
    assert all(p.grad is None for p in supervisor.parameters())
    without_sup = grads(0.0)
    # J_SUP's gradient passes through the supervisor into both encoders and the decoder.
    for prefix in ("key_encoder.", "nonkey_encoder.", "decoder."):
        name = next(n for n in with_sup if n.startswith(prefix) and n.endswith("weight"))
        assert not torch.allclose(with_sup[name], without_sup[name])
