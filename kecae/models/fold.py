"""Batch norm folded into the convolution before it, for a network that no longer trains.

A frozen network in eval mode applies each BatchNorm2d as a fixed per-channel affine map, which
the preceding Conv2d can absorb: ``bn(conv(x)) == conv'(x)`` with scaled weights and a shifted
bias. KECAE training runs its frozen supervisor forward and backward (to the generator) at every
step; on the ``cpu`` preset that supervisor is most of the step's FLOPs, and its batch norms were
~18 % of the step's CPU time (benchmarks/results/cpu_profile.json). Folding them removes that
work and leaves the outputs and the gradients to the input equal up to float rounding.
"""

from __future__ import annotations

import copy
import itertools
from typing import TypeVar

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_M = TypeVar("_M", bound=nn.Module)


def fold_batchnorm(model: _M) -> _M:
    """A copy of ``model`` (which must be in eval mode) where every ``Conv2d`` directly followed
    by a ``BatchNorm2d`` inside an ``nn.Sequential`` is replaced by one convolution and the batch
    norm by an identity. Parameters keep ``requires_grad`` as they were; ``model`` is unchanged."""
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode: call model.eval() first")
    folded = copy.deepcopy(model)
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in itertools.pairwise(names):
            conv, bn = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                grad = conv.weight.requires_grad
                fused = fuse_conv_bn_eval(conv, bn)
                fused.requires_grad_(grad)
                module._modules[first] = fused
                module._modules[second] = nn.Identity()
    return folded
