"""The KECAE loss (kecae.losses): each term against a value computed by hand, the table of
terms, their weights, ramps and modules."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from kecae.errors import KecaeError
from kecae.losses import (
    TERMS,
    GradeProbes,
    LossInputs,
    Term,
    cycle_term,
    displacement_terms,
    intensity_edit_term,
    kecae_loss,
    lda_term,
    logged_names,
    mse_term,
    probe_terms,
    reconstruction_term,
    same_grade_term,
    supervision_term,
)
from kecae.models import KECAE, KECAEOutput, build_classifier, kecae_config
from kecae.training.config import LossSettings


def hybrid_loss(out, x1, x2, y1, y2, supervisor, generator=None, **settings):
    """J = J_MSE + λ1·J_SUP + λ2·J_LDA and the terms ``settings`` turn on (kecae_loss)."""
    inputs = LossInputs(out, x1, x2, y1, y2, supervisor, generator=generator)
    return kecae_loss(inputs, LossSettings(**settings))


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
        1.386294 + 0.693147, abs=1e-5
    )


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


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="global"), r"\['image', 'batch', 'log'\]"),
        (dict(eps=-1.0), "eps"),
    ],
)
def test_lda_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lda_term(H_N, H_K, **kwargs)
    with pytest.raises(ValueError, match="same number of images"):
        lda_term(H_N, H_K[:1])


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
    logits_1, logits_2 = (
        sup.linear(out.x1_ex.mean((1, 2, 3))[:, None]),
        sup.linear(out.x2_ex.mean((1, 2, 3))[:, None]),
    )
    sup_term = supervision_term(logits_1, logits_2, y1, y2)
    lda = (lda_term(out.hn1, out.hk1) + lda_term(out.hn2, out.hk2)) / 2
    assert terms["mse"].item() == pytest.approx(mse.item(), rel=1e-6)
    assert terms["sup"].item() == pytest.approx(sup_term.item(), rel=1e-6)
    assert terms["lda"].item() == pytest.approx(lda.item(), rel=1e-6)
    assert total.item() == pytest.approx(
        mse.item() + 0.5 * sup_term.item() + 0.25 * lda.item(), rel=1e-6
    )
    assert terms["total"].item() == pytest.approx(total.item())
    assert not any(t.requires_grad for t in terms.values())

    # The paper's defaults: λ1 = 1e-2, λ2 = 1e-3.
    total_default, _ = hybrid_loss(out, x1, x2, y1, y2, sup)
    assert total_default.item() == pytest.approx(
        mse.item() + 1e-2 * sup_term.item() + 1e-3 * lda.item(), rel=1e-6
    )
    # The batch LDA mode only changes the LDA term.
    _, terms_batch = hybrid_loss(out, x1, x2, y1, y2, sup, lda_mode="batch")
    expected = (
        lda_term(out.hn1, out.hk1, mode="batch") + lda_term(out.hn2, out.hk2, mode="batch")
    ) / 2
    assert terms_batch["lda"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms_batch["mse"].item() == pytest.approx(mse.item(), rel=1e-6)


@pytest.mark.parametrize(
    "settings, words",
    [
        (dict(lambda_sup=-1.0), "--lambda-sup -1.0: must be a finite number >= 0"),
        (dict(lambda_disp=float("nan")), "--lambda-disp nan"),
        (dict(lambda_nonkey_adv=float("inf")), "--lambda-nonkey-adv inf"),
        (dict(sup_perturb=-0.5), "--sup-perturb -0.5"),
        (dict(lda_eps=0.0), "--lda-eps 0.0: must be a finite number > 0"),
        (
            dict(lda_mode="global"),
            r"--lda-mode 'global': choose one of \['image', 'batch', 'log'\]",
        ),
        (dict(recon="ssim"), "--recon 'ssim': choose one of"),
        (dict(sup_target="teacher"), "--sup-target 'teacher': choose one of"),
    ],
)
def test_loss_settings_are_checked_when_built(settings, words):
    with pytest.raises(KecaeError, match=words):
        LossSettings(**settings)


def test_every_weight_belongs_to_one_term_and_every_term_weight_is_a_setting():
    fields = {f.name for f in dataclasses.fields(LossSettings)}
    weights = {w for t in TERMS for w in t.weights.values() if w is not None}
    assert weights <= fields
    assert {f for f in fields if f.startswith("lambda_")} == weights
    names = [n for t in TERMS for n in t.weights]
    assert len(names) == len(set(names)) and "total" not in names


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


def test_reconstruction_term_l1_by_hand():
    x1, h1 = torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, -1.0], [0.5, 0.0]]]])
    x2, h2 = torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    assert reconstruction_term(x1, h1, x2, h2, "l1").item() == pytest.approx(2.5 / 4)
    assert reconstruction_term(x1, h1, x2, h2, "mse").item() == pytest.approx(2.25 / 4)
    with pytest.raises(ValueError, match="reconstruction loss"):
        reconstruction_term(x1, h1, x2, h2, "ssim")


def test_lda_log_mode_and_a_pooled_key():
    hn = torch.tensor([[0.0, 2.0, 0.0, 2.0]])  # µ 1, σ² 1
    hk = torch.tensor([[4.0]])  # a position-free key with one element: µ 4, σ² 0
    ratio = (1.0 + 0.0) / (9.0 + 1e-6)
    assert lda_term(hn, hk).item() == pytest.approx(ratio, rel=1e-6)
    assert lda_term(hn, hk, mode="log").item() == pytest.approx(math.log1p(ratio), rel=1e-6)
    with pytest.raises(ValueError, match="same number"):
        lda_term(hn, torch.zeros(2, 1))


def test_displacement_terms_by_hand():
    # a constant shift of (3, 4) px: squared length 25, no gradient, no fold
    const = torch.zeros(1, 2, 4, 4)
    const[:, 0], const[:, 1] = 3.0, 4.0
    t = displacement_terms(const, image_size=16)
    assert t["disp"].item() == pytest.approx(25.0)
    assert t["disp_l1"].item() == pytest.approx(5.0)  # the length sqrt(3² + 4²), every cell
    assert t["smooth"].item() == 0 and t["fold"].item() == 0
    # half the cells still, half moved by (0, 2): mean length 1 px against a mean square of 2 px²
    half = torch.zeros(1, 2, 4, 4, requires_grad=True)
    moved = half + torch.cat(
        [torch.zeros(1, 1, 4, 4), 2.0 * (torch.arange(4) >= 2).float().expand(1, 1, 4, 4)], 1
    )
    t = displacement_terms(moved, image_size=16)
    assert t["disp_l1"].item() == pytest.approx(1.0, abs=1e-3) and t[
        "disp"
    ].item() == pytest.approx(2.0)
    t["disp_l1"].backward()  # finite at the still cells: no gradient pulls a zero move anywhere
    assert torch.isfinite(half.grad).all() and half.grad[:, :, :, :2].abs().max() == 0
    # dx = -0.75·x (grid spacing 4 px): ∂dx/∂x = -0.75, det J = 0.25 everywhere
    squeeze = torch.zeros(1, 2, 4, 4)
    squeeze[:, 0] = -0.75 * 4 * torch.arange(4.0).view(1, 4)
    t = displacement_terms(squeeze, image_size=16)
    assert t["smooth"].item() == pytest.approx(0.75**2)
    assert t["fold"].item() == pytest.approx(0.5 - 0.25)


def _warp_model(**kw):
    torch.manual_seed(0)
    return KECAE(kecae_config("tiny", depth=3, key_pool="mean", exchange="warp", warp_grid=4, **kw))


def test_hybrid_loss_adds_the_weighted_displacement_penalties():
    model = _warp_model()
    with torch.no_grad():
        model.warp_head.weight.normal_(0, 0.5)  # a non-zero field
    g = torch.Generator().manual_seed(2)
    x1, x2 = (torch.rand(3, 1, 32, 32, generator=g) * 2 - 1 for _ in range(2))
    y1, y2 = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    sup = _CountingSupervisor()
    out = model(x1, x2)
    base, _terms0 = hybrid_loss(out, x1, x2, y1, y2, sup, lambda_lda=0.0)
    total, terms = hybrid_loss(
        out,
        x1,
        x2,
        y1,
        y2,
        sup,
        lambda_lda=0.0,
        lambda_disp=0.1,
        lambda_smooth=0.2,
        lambda_fold=0.3,
    )
    d = displacement_terms(torch.cat([out.disp1, out.disp2]), 32)
    assert d["disp"].item() > 0
    expected = base + 0.1 * d["disp"] + 0.2 * d["smooth"] + 0.3 * d["fold"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["disp"].item() == pytest.approx(d["disp"].item())


def test_supervisor_perturbation_is_seeded_and_changes_its_input():
    out, x1, x2 = _fake_output(b=2, s=8)
    y1, y2 = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return torch.zeros(x.shape[0], 2)

    for seed in (1, 1):
        hybrid_loss(
            out,
            x1,
            x2,
            y1,
            y2,
            Spy(),
            sup_perturb=1.0,
            generator=torch.Generator().manual_seed(seed),
        )
    hybrid_loss(out, x1, x2, y1, y2, Spy())
    torch.testing.assert_close(seen[0], seen[1])  # same generator seed, same perturbation
    torch.testing.assert_close(seen[2], torch.cat([out.x1_ex, out.x2_ex]))  # off: untouched
    assert not torch.allclose(seen[0], seen[2])


def test_same_grade_exchange_term_is_zero_for_identical_knees():
    model = _warp_model().eval()
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    x1 = x.repeat(3, 1, 1, 1)  # three copies of one knee: every key is the same
    x2 = (torch.rand(1, 1, 32, 32) * 2 - 1).repeat(3, 1, 1, 1)
    with torch.no_grad():
        model.warp_head.weight.normal_(0, 0.5)
        same = same_grade_term(model, model(x1, x2), x1, x2)
    assert same is not None and same.item() == pytest.approx(0.0, abs=1e-10)
    x2 = torch.rand(3, 1, 32, 32) * 2 - 1  # three different KL-2 knees: their keys differ
    with torch.no_grad():
        out = model(x1, x2)
        same = same_grade_term(model, out, x1, x2)
        assert same is not None and same.item() > 0
        assert cycle_term(model, out).item() > 0
        assert same_grade_term(model, model(x1[:1], x2[:1]), x1[:1], x2[:1]) is None  # one pair


def test_cycle_term_by_hand():
    """Re-encoding X' and comparing with the latents it was made of, relative to their variance."""
    model = _warp_model().eval()
    g = torch.Generator().manual_seed(3)
    x1, x2 = (torch.rand(2, 1, 32, 32, generator=g) * 2 - 1 for _ in range(2))
    with torch.no_grad():
        out = model(x1, x2)
        hk, hn = model.encode(torch.cat([out.x1_ex, out.x2_ex]))
        rel = [
            ((a - t) ** 2).mean() / t.var()
            for a, t in ((hn[:2], out.hn1), (hk[:2], out.hk2), (hn[2:], out.hn2), (hk[2:], out.hk1))
        ]
        value = cycle_term(model, out)
    assert value.item() == pytest.approx(float(sum(rel) / 4), rel=1e-4)


def test_probes_learn_the_grade_and_push_it_out_of_the_non_key_map():
    out, _, _ = _fake_output(b=4, s=4)
    out = out._replace(hn1=out.hn1.clone().requires_grad_(), hk1=out.hk1.clone().requires_grad_())
    probes = GradeProbes(key_dim=12, nonkey_dim=12)
    y1, y2 = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    t = probe_terms(probes, out, y1, y2)
    t["nonkey_adv"].backward()
    # the probe descends the loss; the non-key latent receives the reversed gradient
    w_grad = probes.nonkey.weight.grad.clone()
    reference = nn.functional.cross_entropy(
        probes.nonkey(torch.cat([out.hn1, out.hn2]).flatten(1)), torch.cat([y1, y2])
    )
    hn1 = out.hn1
    g_plain = torch.autograd.grad(reference, hn1)[0]
    torch.testing.assert_close(hn1.grad, -g_plain)
    assert w_grad.abs().sum() > 0
    assert t["key_cls"].item() > 0


def test_intensity_edit_term_counts_only_what_the_warp_does_not_explain():
    from kecae.models.autoencoder import warp_images

    out, x1, x2 = _fake_output(b=2, s=8)
    by_hand = 0.5 * ((out.x1_ex - x1).abs().mean() + (out.x2_ex - x2).abs().mean())
    assert intensity_edit_term(out, x1, x2).item() == pytest.approx(by_hand.item())
    d = torch.zeros(2, 2, 2, 2)
    d[:, 0] = 1.0  # a one-pixel shift
    warped = out._replace(x1_ex=warp_images(x1, d), x2_ex=warp_images(x2, d), disp1=d, disp2=d)
    assert intensity_edit_term(warped, x1, x2).item() == pytest.approx(0.0, abs=1e-7)
    y = torch.zeros(2, dtype=torch.long)
    total, terms = hybrid_loss(out, x1, x2, y, y + 1, _CountingSupervisor(), lambda_edit=2.0)
    base, _ = hybrid_loss(out, x1, x2, y, y + 1, _CountingSupervisor())
    assert total.item() == pytest.approx(base.item() + 2.0 * by_hand.item(), rel=1e-6)
    assert terms["edit"].item() == pytest.approx(by_hand.item())


def test_donor_target_asks_for_the_supervisors_call_on_the_donor():
    out, x1, x2 = _fake_output(b=2, s=4)
    y1, y2 = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)
    sup = _CountingSupervisor()
    _, terms = hybrid_loss(out, x1, x2, y1, y2, sup, sup_target="donor")
    assert sup.batches == [4, 4]  # X'1, X'2 with grad; the donors X2, X1 without
    logits_ex = sup.linear(torch.cat([out.x1_ex, out.x2_ex]).mean((1, 2, 3))[:, None])
    p_donor = torch.softmax(sup.linear(torch.cat([x2, x1]).mean((1, 2, 3))[:, None]), 1)
    by_hand = (
        -(p_donor[:2] * torch.log_softmax(logits_ex[:2], 1)).sum(1).mean()
        - (p_donor[2:] * torch.log_softmax(logits_ex[2:], 1)).sum(1).mean()
    )
    assert terms["sup"].item() == pytest.approx(by_hand.item(), rel=1e-6)
    # donors the supervisor is sure about (KL-0 dark, KL-2 bright) give the hard-label term back
    with torch.no_grad():
        sup.linear.weight.mul_(1e4)
    x1, x2 = torch.full_like(x1, -0.5), torch.full_like(x2, 0.5)
    _, soft = hybrid_loss(out, x1, x2, y1, y2, sup, sup_target="donor")
    _, label = hybrid_loss(out, x1, x2, y1, y2, sup)
    assert soft["sup"].item() == pytest.approx(label["sup"].item(), rel=1e-5)


@dataclasses.dataclass
class _RampedSettings(LossSettings):
    lambda_extra: float = 2.0
    ramp_extra: int = 4  # steps


def test_a_term_ramps_its_weight_up_and_the_table_order_sets_the_sum():
    out, x1, x2 = _fake_output()
    y1, y2 = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)
    extra = Term(
        {"extra": "lambda_extra"}, lambda inp, s: {"extra": torch.tensor(3.0)}, ramp="ramp_extra"
    )
    settings = _RampedSettings()
    base, _ = kecae_loss(LossInputs(out, x1, x2, y1, y2, _CountingSupervisor()), settings)
    for step, share in ((0, 0.0), (1, 0.25), (2, 0.5), (4, 1.0), (9, 1.0)):
        inputs = LossInputs(out, x1, x2, y1, y2, _CountingSupervisor(), step=step)
        total, terms = kecae_loss(inputs, settings, (*TERMS, extra))
        assert total.item() == pytest.approx(base.item() + share * 2.0 * 3.0, rel=1e-6)
        assert terms["extra"].item() == 3.0  # logged unweighted
    assert logged_names((*TERMS, extra))[-1] == "extra"
    no_ramp = dataclasses.replace(settings, ramp_extra=0)
    total, _ = kecae_loss(
        LossInputs(out, x1, x2, y1, y2, _CountingSupervisor()), no_ramp, (*TERMS, extra)
    )
    assert total.item() == pytest.approx(base.item() + 6.0, rel=1e-6)


def test_the_optional_terms_need_the_model_and_the_probes():
    model = _warp_model()
    g = torch.Generator().manual_seed(4)
    x1, x2 = (torch.rand(3, 1, 32, 32, generator=g) * 2 - 1 for _ in range(2))
    y1, y2 = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    out = model(x1, x2)
    settings = LossSettings(lambda_cycle=0.5, lambda_same=0.25, lambda_key_cls=0.1)
    with pytest.raises(ValueError, match=r"LossInputs\.model"):
        kecae_loss(LossInputs(out, x1, x2, y1, y2, _CountingSupervisor()), settings)
    probes = GradeProbes(math.prod(model.config.key_shape), model.config.latent_dim)
    inputs = LossInputs(
        out, x1, x2, y1, y2, _CountingSupervisor(), model=model, modules={"probes": probes}
    )
    total, terms = kecae_loss(inputs, settings)
    expected = "mse sup lda disp disp_l1 smooth fold cycle same key_cls nonkey_adv total"
    assert list(terms) == expected.split()
    weights = {"mse": 1, "sup": 1e-2, "lda": 1e-3, "cycle": 0.5, "same": 0.25, "key_cls": 0.1}
    by_hand = sum(terms[k].item() * w for k, w in weights.items())
    assert total.item() == pytest.approx(by_hand, rel=1e-6)  # disp, smooth, fold, nonkey_adv: 0
