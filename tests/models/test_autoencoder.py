"""KECAE (kecae.models.autoencoder): shapes over every preset, the paper's layout and
parameter count by hand, paddings derived from the encoder, Algorithm 1's combinations, the
exchange options, FLOPs by hand, bad inputs."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from kecae.models import (
    KECAE,
    PRESETS,
    KECAEConfig,
    count_parameters,
    decoder_paddings,
    encoder_sizes,
    flops_per_pair,
    kecae_config,
)
from kecae.models.autoencoder import replace_config

TINY = dict(width=1 / 32)  # 4…64 channels: shape checks at any size stay cheap


def _pair(config: KECAEConfig, b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = config.image_size
    return (
        torch.rand(b, 1, s, s, generator=g) * 2 - 1,
        torch.rand(b, 1, s, s, generator=g) * 2 - 1,
    )


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_forward_shapes(name):
    config = kecae_config(name)
    torch.manual_seed(0)
    model = KECAE(config)
    # The paper preset (95 M parameters, 299 px) runs one pair in eval mode to stay fast.
    b = 1 if name == "paper" else 3
    if name == "paper":
        model.eval()
    x1, x2 = _pair(config, b)
    with torch.no_grad():
        out = model(x1, x2)
    s = config.image_size
    for img in out[:4]:
        assert img.shape == (b, 1, s, s)
        assert torch.isfinite(img).all()
        assert img.abs().max() <= 1  # tanh output
    for h, shape in zip(out[4:8], [config.key_shape, config.latent_shape] * 2):
        assert h.shape == (b, *shape)
        assert torch.isfinite(h).all()
    print(f"{name}: {count_parameters(model):,} parameters, latent {config.latent_shape}")


def test_paper_preset_layout():
    config = kecae_config("paper")
    assert config.spatial_sizes == (299, 150, 75, 38, 19, 10, 5, 3)
    assert config.channels == (32, 64, 128, 256, 512, 1024, 2048)
    assert config.latent_shape == (2048, 3, 3)
    assert config.latent_dim == 2048 * 9


def test_paper_parameter_count_by_hand():
    # Encoder branch: 3×3 conv weights 9·Σ c_in·c_out, the first conv's 32 biases (no BN there),
    # BN γ and β on the six other blocks.
    enc_chain = [1, 32, 64, 128, 256, 512, 1024, 2048]
    enc = 9 * sum(a * b for a, b in itertools.pairwise(enc_chain)) + 32 + 2 * sum(enc_chain[2:])
    assert enc == 25_168_064
    # Decoder: 4×4 transposed-conv weights 16·Σ c_in·c_out, the final conv's bias, BN on six blocks.
    dec_chain = enc_chain[::-1]
    dec = 16 * sum(a * b for a, b in itertools.pairwise(dec_chain)) + 1 + 2 * sum(dec_chain[1:-1])
    assert dec == 44_732_865
    with torch.device("meta"):  # shapes only: nothing is allocated
        model = KECAE(kecae_config("paper"))
    assert count_parameters(model.key_encoder) == enc
    assert count_parameters(model.nonkey_encoder) == enc
    assert count_parameters(model.decoder) == dec
    assert count_parameters(model) == 2 * enc + dec == 95_068_993


def _conv_transpose_out(inp: int, p: int, op: int) -> int:
    # torch.nn.ConvTranspose2d's documented formula, kernel 4, stride 2, dilation 1.
    return (inp - 1) * 2 - 2 * p + (4 - 1) + op + 1


def test_decoder_paddings_restore_every_encoder_size():
    for size in range(16, 321):
        sizes = encoder_sizes(size, 7)
        pads = decoder_paddings(size, 7)
        assert len(pads) == 7
        for k, (p, op) in zip(reversed(range(7)), pads):
            assert op in (0, 1), (size, k)
            assert _conv_transpose_out(sizes[k + 1], p, op) == sizes[k], (size, k)
    # The paper preset: 3 → 5 → 10 → 19 → 38 → 75 → 150 → 299.
    assert decoder_paddings(299, 7) == [(2, 1), (1, 0), (2, 1), (1, 0), (2, 1), (1, 0), (2, 1)]


@pytest.mark.parametrize(
    "size",
    [16, 17, 23, 31, 32, 33, 47, 64, 65, 96, 127, 128, 129, 200, 255, 256, 257, 298, 299, 300, 320],
)
def test_decoder_output_has_input_size(size):
    config = KECAEConfig(image_size=size, **TINY)
    model = KECAE(config).eval()
    x = torch.zeros(1, 1, size, size)
    with torch.no_grad():
        hk, hn = model.encode(x)
        y = model.decode(hk + hn)
    assert hk.shape == hn.shape == (1, *config.latent_shape)
    assert y.shape == (1, 1, size, size)


def test_encoder_sizes_formula():
    # Conv2d(k=3, s=2, p=1): out = floor((in + 2 − 3) / 2) + 1.
    assert encoder_sizes(299, 7) == (299, 150, 75, 38, 19, 10, 5, 3)
    assert encoder_sizes(128, 7) == (128, 64, 32, 16, 8, 4, 2, 1)
    assert encoder_sizes(17, 3) == (17, 9, 5, 3)


def test_encode_once_and_decode_once():
    config = kecae_config("tiny")
    model = KECAE(config)
    calls: dict[str, list[int]] = {"key": [], "nonkey": [], "decoder": []}
    for name, module in [
        ("key", model.key_encoder),
        ("nonkey", model.nonkey_encoder),
        ("decoder", model.decoder),
    ]:
        module.register_forward_hook(
            lambda m, inp, out, name=name: calls[name].append(inp[0].shape[0])
        )
    x1, x2 = _pair(config, 5)
    model(x1, x2)
    assert calls == {"key": [10], "nonkey": [10], "decoder": [20]}  # 2B images, 4B latents


def test_forward_combines_latents_as_algorithm_1():
    config = kecae_config("tiny")
    torch.manual_seed(1)
    model = KECAE(config).eval()  # eval: BN uses running stats, so batch composition is irrelevant
    x1, x2 = _pair(config, 4, seed=3)
    with torch.no_grad():
        out = model(x1, x2)
        hk1, hn1 = model.encode(x1)
        hk2, hn2 = model.encode(x2)
        ex1, ex2 = model.exchange(x1, x2)
        expected = {
            "x1_hat": model.decode(hn1 + hk1),
            "x2_hat": model.decode(hn2 + hk2),
            "x1_ex": model.decode(hn1 + hk2),
            "x2_ex": model.decode(hn2 + hk1),
            "hk1": hk1,
            "hn1": hn1,
            "hk2": hk2,
            "hn2": hn2,
        }
    for field, value in expected.items():
        torch.testing.assert_close(getattr(out, field), value, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ex1, expected["x1_ex"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ex2, expected["x2_ex"], atol=1e-5, rtol=1e-5)
    # The exchange really swaps: X'1 differs from the reconstruction of X1.
    assert not torch.allclose(out.x1_ex, out.x1_hat, atol=1e-4)


def test_branches_do_not_share_weights():
    model = KECAE(kecae_config("tiny"))
    assert model.key_encoder is not model.nonkey_encoder
    key_ptrs = {p.data_ptr() for p in model.key_encoder.parameters()}
    nonkey_ptrs = {p.data_ptr() for p in model.nonkey_encoder.parameters()}
    assert key_ptrs.isdisjoint(nonkey_ptrs)
    k0, n0 = model.key_encoder[0][0].weight, model.nonkey_encoder[0][0].weight
    assert not torch.equal(k0, n0)  # independent draws
    before = n0.detach().clone()
    with torch.no_grad():
        k0.add_(1.0)
    assert torch.equal(model.nonkey_encoder[0][0].weight, before)  # training K leaves N alone


def test_kaiming_init_statistics():
    model = KECAE(KECAEConfig(image_size=64, width=0.25))
    conv = model.key_encoder[5][0]  # 3×3 conv, 128 → 256 channels
    assert isinstance(conv, nn.Conv2d) and conv.weight.shape == (256, 128, 3, 3)
    # kaiming_normal_(a=0.2, fan_in, leaky_relu): std = sqrt(2 / (1 + 0.2²)) / sqrt(fan_in).
    expected_std = math.sqrt(2 / 1.04) / math.sqrt(128 * 9)
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.02)
    assert conv.weight.mean().item() == pytest.approx(0, abs=expected_std * 0.01)
    first, last = model.key_encoder[0][0], model.decoder[-1][0]
    assert first.bias is not None and torch.count_nonzero(first.bias) == 0
    assert last.bias is not None and torch.count_nonzero(last.bias) == 0
    assert all(
        m.bias is None
        for m in model.decoder.modules()
        if isinstance(m, nn.ConvTranspose2d) and m is not last
    )


def test_flops_per_pair_matches_hand_count():
    config = kecae_config("tiny")
    chans, sizes = (config.in_channels, *config.channels), config.spatial_sizes
    # Each conv: 2 FLOP × c_in × c_out × 9 taps × output pixels; run on 2 branches × 2 images.
    enc = sum(2 * chans[k] * chans[k + 1] * 9 * sizes[k + 1] ** 2 for k in range(7))
    # Each transposed conv: 2 × c_in × c_out × 16 taps × input pixels; 4 latents decoded.
    dchans = chans[::-1]
    dec = sum(2 * dchans[j] * dchans[j + 1] * 16 * sizes[7 - j] ** 2 for j in range(7))
    assert flops_per_pair(config) == 4 * enc + 4 * dec
    assert flops_per_pair(config, backward=True) > 2 * flops_per_pair(config)


@pytest.mark.parametrize("preset", ["cpu", "tiny", "paper"])
def test_flops_of_every_preset_count_on_the_meta_device(preset):
    """The pre-flight of `kecae run` / `kecae demo` counts the preset's cost: a warp exchange
    (fp32 sampling with autocast off) must count too."""
    config = kecae_config(preset)
    assert flops_per_pair(config, backward=True) > flops_per_pair(config) > 0


def test_bad_images_raise():
    model = KECAE(kecae_config("tiny"))
    x = torch.zeros(2, 1, 32, 32)
    with pytest.raises(ValueError, match="image_size=40"):
        model(torch.zeros(2, 1, 40, 40), x)
    with pytest.raises(ValueError, match="same number"):
        model(x, torch.zeros(3, 1, 32, 32))
    with pytest.raises(ValueError, match="latent"):
        model.decode(torch.zeros(2, 7, 1, 1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image_size=15), "too small"),
        (dict(image_size=64.0), "an int"),
        (dict(width=0), "positive"),
        (dict(width=-0.5), "positive"),
        (dict(width=float("nan")), "positive"),
        (dict(encoder_channels=()), "non-empty"),
        (dict(encoder_channels=(32, 0)), "non-empty"),
        (dict(negative_slope=1.5), "negative_slope"),
        (dict(in_channels=0), "in_channels"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KECAEConfig(**kwargs)


def _options_model(seed: int = 0, **kw) -> KECAE:
    torch.manual_seed(seed)
    return KECAE(KECAEConfig(image_size=32, width=1 / 8, **kw)).eval()


@pytest.mark.parametrize("depth, side", [(7, 1), (5, 1), (4, 2), (3, 4), (2, 8)])
def test_depth_sets_the_latent_grid(depth, side):
    cfg = KECAEConfig(image_size=32, width=1 / 8, depth=depth)
    assert cfg.num_blocks == depth and len(cfg.channels) == depth
    assert cfg.latent_shape == (cfg.channels[-1], side, side)
    model = KECAE(cfg).eval()
    x1, x2 = _pair(cfg, 2)
    with torch.no_grad():
        out = model(x1, x2)
    assert out.hn1.shape == (2, *cfg.latent_shape) and out.x1_ex.shape == x1.shape


def test_position_free_key_is_the_grid_mean_added_everywhere():
    model = _options_model(depth=3, key_pool="mean")
    assert model.config.key_shape == (model.config.channels[-1], 1, 1)
    x1, x2 = _pair(model.config, 3, seed=4)
    with torch.no_grad():
        out = model(x1, x2)
        full = model.key_encoder(x1)  # (B, C, 4, 4) before pooling
        torch.testing.assert_close(out.hk1, full.mean(dim=(2, 3), keepdim=True))
        torch.testing.assert_close(out.x1_ex, model.decode(out.hn1 + out.hk2))  # broadcast sum


def test_max_pooled_key_is_each_channels_largest_value_over_the_grid():
    model = _options_model(depth=3, key_pool="max")
    assert model.config.key_shape == (model.config.channels[-1], 1, 1)
    x1, x2 = _pair(model.config, 3, seed=4)
    with torch.no_grad():
        out = model(x1, x2)
        full = model.key_encoder(x1)  # (B, C, 4, 4) before pooling
        expected = full.flatten(2).max(dim=2).values[..., None, None]
        torch.testing.assert_close(out.hk1, expected)
        assert not torch.allclose(out.hk1, full.mean(dim=(2, 3), keepdim=True))
        torch.testing.assert_close(out.x1_ex, model.decode(out.hn1 + out.hk2))


def test_attention_pooled_key_starts_as_the_mean_and_learns_a_weight_per_place():
    model = _options_model(depth=3, key_pool="attn")
    x1, _ = _pair(model.config, 3, seed=4)
    with torch.no_grad():
        full = model.key_encoder(x1)
        torch.testing.assert_close(model.encode(x1)[0], full.mean(dim=(2, 3), keepdim=True))
        model.key_attention.weight.normal_()
        logits = model.key_attention(full).flatten(1)
        w = torch.softmax(logits, dim=1)
        expected = (full.flatten(2) * w[:, None]).sum(dim=2)[..., None, None]
        torch.testing.assert_close(model.encode(x1)[0], expected)
        assert not torch.allclose(expected, full.mean(dim=(2, 3), keepdim=True))


def test_a_wider_key_branch_maps_its_last_block_to_the_latents_channels():
    model = _options_model(depth=3, key_pool="mean", key_width=1 / 4)
    cfg = model.config
    assert cfg.key_channels == (8, 16, 32) and cfg.channels == (4, 8, 16)
    assert model.key_encoder[-1].in_channels == 32 and model.key_encoder[-1].out_channels == 16
    assert len(model.nonkey_encoder) == cfg.depth  # the non-key branch keeps its width
    x1, x2 = _pair(cfg, 2)
    with torch.no_grad():
        out = model(x1, x2)
    assert out.hk1.shape == (2, 16, 1, 1) and out.x1_ex.shape == x1.shape
    plain = _options_model(depth=3, key_pool="mean")
    assert plain.config.key_channels == plain.config.channels and len(plain.key_encoder) == 3
    wide = sum(p.numel() for p in model.key_encoder.parameters())
    assert wide > sum(p.numel() for p in plain.key_encoder.parameters())


def test_residual_exchange_edits_the_real_recipient():
    from kecae.models.autoencoder import gaussian_blur

    model = _options_model(depth=3, exchange="residual", residual_blur_px=1.0)
    x1, x2 = _pair(model.config, 3, seed=5)
    with torch.no_grad():
        out = model(x1, x2)
        edit = gaussian_blur(model.decode(out.hn1 + out.hk2) - model.decode(out.hn1 + out.hk1), 1.0)
        torch.testing.assert_close(out.x1_ex, (x1 + edit).clamp(-1, 1), atol=1e-5, rtol=1e-5)
        # the no-exchange control (own key) is the recipient itself
        torch.testing.assert_close(model.exchange(x1, x1)[0], x1.clamp(-1, 1), atol=1e-5, rtol=0)


def test_warp_exchange_starts_as_identity_and_its_control_is_the_recipient():
    model = _options_model(depth=3, exchange="warp", warp_grid=4)
    x1, x2 = _pair(model.config, 3, seed=6)
    with torch.no_grad():
        out = model(x1, x2)
    # zero-initialised head: no displacement, X' is exactly the recipient
    torch.testing.assert_close(out.x1_ex, x1, atol=1e-6, rtol=0)
    assert out.disp1.shape == (3, 2, 4, 4) and out.disp1.abs().max() == 0
    with torch.no_grad():
        model.warp_head.bias.fill_(5.0)  # saturates tanh: every displacement at +warp_max_px
        u, _ = model.decode_with_displacement(torch.cat([out.hn1 + out.hk1]))[1], None
        out = model(x1, x2)
        own = model.exchange(x1, x1)[0]
    assert torch.allclose(u, torch.full_like(u, model.config.warp_max_px), atol=1e-3)
    torch.testing.assert_close(own, x1, atol=1e-6, rtol=0)  # u(h1) − u(h1) = 0


def test_change_bound_keeps_range_where_the_own_field_is_pinned():
    """warp_bound="field": with u(h) pinned at +warp_max_px the change can only go down; "change"
    bounds warp_max_px·tanh(r(h') − r(h)) of the raw head outputs, whatever r(h) is."""
    from kecae.models.autoencoder import warp_images

    field = _options_model(depth=3, exchange="warp", warp_grid=4)
    change = KECAE(replace_config(field.config, warp_bound="change"))
    change.load_state_dict(field.state_dict())
    field.eval(), change.eval()
    x1, x2 = _pair(field.config, 3, seed=6)
    with torch.no_grad():
        for model in (field, change):
            model.warp_head.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
            model.warp_head.bias.fill_(8.0)  # a common mode deep in tanh's flat end
        out_f, out_c = field(x1, x2), change(x1, x2)
        _, raw_own = change.decode_with_displacement(out_c.hn1 + out_c.hk1)
        _, raw_ex = change.decode_with_displacement(out_c.hn1 + out_c.hk2)
    m = field.config.warp_max_px
    expected = m * torch.tanh(raw_ex - raw_own)
    torch.testing.assert_close(out_c.disp1, expected)
    torch.testing.assert_close(out_c.x1_ex, warp_images(x1, expected).clamp(-1, 1))
    torch.testing.assert_close(out_f.disp1, m * torch.tanh(raw_ex) - m * torch.tanh(raw_own))
    # the same raw outputs: the field bound leaves almost no change, the change bound all of it
    assert out_f.disp1.abs().max() < 0.05 * out_c.disp1.abs().max()
    assert out_c.disp1.abs().max() <= m
    with torch.no_grad():  # the no-exchange control is the recipient under both bounds
        torch.testing.assert_close(change.exchange(x1, x1)[0], x1.clamp(-1, 1), atol=1e-6, rtol=0)


def test_warp_images_moves_pixels_by_the_displacement():
    from kecae.models.autoencoder import warp_images

    x = torch.arange(36.0).view(1, 1, 6, 6)
    right = torch.zeros(1, 2, 3, 3)
    right[:, 0] = 1.0  # sample one pixel to the right: the content moves left
    moved = warp_images(x, right)
    torch.testing.assert_close(moved[0, 0, :, :-1], x[0, 0, :, 1:])
    torch.testing.assert_close(moved[0, 0, :, -1], x[0, 0, :, -1])  # border extends
    down = torch.zeros(1, 2, 3, 3)
    down[:, 1] = 2.0
    torch.testing.assert_close(warp_images(x, down)[0, 0, :-2], x[0, 0, 2:])
    torch.testing.assert_close(warp_images(x, torch.zeros(1, 2, 3, 3)), x)


def test_gaussian_blur_keeps_constants_and_mass():
    from kecae.models.autoencoder import gaussian_blur

    flat = torch.full((2, 1, 9, 9), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, 1.5), flat)
    spike = torch.zeros(1, 1, 15, 15)
    spike[..., 7, 7] = 1.0
    blurred = gaussian_blur(spike, 1.0)
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert blurred[0, 0, 7, 7] < 0.2 and blurred[0, 0, 7, 8] == pytest.approx(blurred[0, 0, 8, 7])
    assert gaussian_blur(spike, 0.0) is spike


def test_warp_head_reads_the_decoder_block_at_the_grid_size():
    cfg = KECAEConfig(image_size=64, width=1 / 8, depth=4, exchange="warp", warp_grid=8)
    assert cfg.warp_tap == 0  # decoder sides 8, 16, 32, 64: the first block already gives 8×8
    cfg7 = KECAEConfig(image_size=64, width=1 / 8, depth=7, exchange="warp", warp_grid=8)
    assert cfg7.warp_tap == 3  # sides 1, 2, 4, 8, …
    model = KECAE(cfg7)
    assert model.warp_head.in_channels == list(reversed(cfg7.channels))[4]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(depth=0), "depth"),
        (dict(depth=8), "depth"),
        (dict(key_pool="sum"), "key_pool"),
        (dict(key_width=-0.5), "key_width"),
        (dict(exchange="swap"), "exchange"),
        (dict(exchange="warp", depth=1), "depth >= 2"),
        (dict(warp_grid=1), "warp_grid"),
        (dict(warp_max_px=0.0), "warp_max_px"),
        (dict(warp_bound="both"), "warp_bound"),
        (dict(residual_blur_px=-1.0), "residual_blur_px"),
    ],
)
def test_exchange_option_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KECAEConfig(image_size=32, **kwargs)
