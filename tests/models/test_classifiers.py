"""The classifier zoo (kecae.models.classifiers): every registered classifier runs, features
and heads, the Siamese patches, bad arguments."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kecae.models import CLASSIFIERS, build_classifier


@pytest.mark.parametrize("arch", list(CLASSIFIERS))
def test_every_classifier_runs(arch):
    torch.manual_seed(0)
    model = build_classifier(arch, 64).eval()
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    assert feats.shape == (2, model.feature_dim)
    assert logits.shape == (2, 2)
    assert torch.isfinite(feats).all() and torch.isfinite(logits).all()
    torch.testing.assert_close(model.forward_head(feats), logits)
    # Grey input: the first convolution takes one channel.
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 1


@pytest.mark.parametrize(
    "arch, feature_dim",
    [("resnet18", 512), ("vgg11", 512), ("densenet201", 1920), ("small", 128), ("siamese", 128)],
)
def test_feature_dims(arch, feature_dim):
    with torch.device("meta"):
        assert build_classifier(arch, 64).feature_dim == feature_dim


def test_vgg_head_is_small():
    # The 7×7×512 → 4096 → 4096 head (~120 M parameters) is gone: only conv features + a linear.
    with torch.device("meta"):
        model = build_classifier("vgg11", 128)
    assert sum(p.numel() for p in model.head.parameters()) == 512 * 2 + 2
    assert sum(p.numel() for p in model.parameters()) < 10_000_000


def test_rebuild_from_config():
    model = build_classifier("siamese", 64, combine="concat", dropout=0.1)
    clone = build_classifier(**dataclasses.asdict(model.config))
    clone.load_state_dict(model.state_dict())
    x = torch.rand(3, 1, 64, 64)
    torch.testing.assert_close(clone.eval()(x), model.eval()(x))
    assert clone.feature_dim == 2 * 128


def test_siamese_patches_positions():
    model = build_classifier("siamese", 64)
    cols = torch.arange(64.0).expand(64, 64)  # value = column index
    rows = torch.arange(64.0)[:, None].expand(64, 64)  # value = row index
    left, right = model.patches(torch.stack([cols, rows])[:, None])
    assert left.shape == right.shape == (2, 1, 32, 32)
    assert left[0, 0, 0].tolist() == list(range(32))  # columns 0…31
    assert right[0, 0, 0].tolist() == list(range(63, 31, -1))  # columns 63…32, flipped
    assert left[1, 0, :, 0].tolist() == list(range(16, 48))  # rows 16…47: centred on the joint


def test_siamese_patches_leave_out_the_margins():
    # margin_fraction 0.15 of 64 px: 10 columns left out at each edge, patches of 0.35 (22 px)
    model = build_classifier("siamese", 64, margin_fraction=0.15, patch_fraction=0.35)
    cols = torch.arange(64.0).expand(64, 64)[None, None]
    left, right = model.patches(cols)
    assert left.shape == right.shape == (1, 1, 22, 22)
    assert left[0, 0, 0].tolist() == list(range(10, 32))  # columns 10…31
    assert right[0, 0, 0].tolist() == list(range(53, 31, -1))  # columns 53…32, flipped
    # the outer columns do not reach the output at all
    x = torch.rand(2, 1, 64, 64)
    y = x.clone()
    y[..., :10] = -1
    y[..., 54:] = 1
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(y), model.eval()(x))


def test_siamese_sum_is_invariant_to_mirroring():
    # Mirroring the image swaps the two compartments (left vs right knee): with "sum" the
    # features are unchanged; with "concat" the two halves swap.
    torch.manual_seed(0)
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    summed = build_classifier("siamese", 64).eval()
    with torch.no_grad():
        torch.testing.assert_close(summed.forward_features(x.flip(-1)), summed.forward_features(x))
    cat = build_classifier("siamese", 64, combine="concat").eval()
    with torch.no_grad():
        f, f_m = cat.forward_features(x), cat.forward_features(x.flip(-1))
    torch.testing.assert_close(f_m, torch.cat([f[:, 128:], f[:, :128]], dim=1))
    assert not torch.allclose(f_m, f)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(arch="resnet50", image_size=64),
            r"\['resnet18', 'vgg11', 'densenet201', 'siamese', 'small'\]",
        ),
        (dict(arch="resnet18", image_size=16), ">= 32"),
        (dict(arch="small", image_size=64, num_classes=1), "num_classes"),
        (dict(arch="small", image_size=64, dropout=1.0), "dropout"),
        (dict(arch="siamese", image_size=64, combine="max"), "combine"),
        (dict(arch="siamese", image_size=64, patch_fraction=0.0), "patch_fraction"),
        (dict(arch="siamese", image_size=64, margin_fraction=0.6), "margin_fraction"),
        (dict(arch="siamese", image_size=64, margin_fraction=0.2, patch_fraction=0.9), "<= 1"),
        (dict(arch="small", image_size=64, depth=3), "unknown classifier option"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_classifier(**kwargs)
