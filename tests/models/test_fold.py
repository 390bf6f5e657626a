"""Batch norm folded into convolutions (kecae.models.fold): same outputs and input gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kecae.models.classifiers import CLASSIFIERS, build_classifier
from kecae.models.fold import fold_batchnorm


def _trained_statistics(model: nn.Module) -> None:
    """Give every batch norm running statistics and an affine map that are not the identity."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen))
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=gen))
            m.bias.data.copy_(torch.randn(n, generator=gen))


@pytest.mark.parametrize("arch", sorted(CLASSIFIERS))
def test_fold_keeps_outputs_and_input_gradients(arch):
    torch.manual_seed(0)
    model = build_classifier(arch, 64)
    _trained_statistics(model)
    model.eval().requires_grad_(False)
    folded = fold_batchnorm(model)
    x = torch.rand(4, 1, 64, 64) * 2 - 1
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = model(xa), folded(xb)
    torch.testing.assert_close(yb, ya, rtol=1e-4, atol=1e-5)
    ya.square().sum().backward()
    yb.square().sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-4, atol=1e-5)
    assert not any(p.requires_grad for p in folded.parameters())
    # the original is untouched
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 0


@pytest.mark.parametrize("arch", ["siamese", "small"])
def test_fold_removes_the_sequential_batch_norms(arch):
    model = build_classifier(arch, 64).eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())


def test_fold_needs_eval_mode():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(build_classifier("small", 64).train())
