"""KL-0 vs KL-2 classifiers: the supervisor of KECAE, the independent judge and the downstream
models.

Every model takes (B, 1, S, S) images in [-1, 1] and exposes ``forward_features(x) -> (B, F)``,
``forward_head(f) -> (B, num_classes)`` and ``feature_dim`` (= F); ``forward`` is the head applied
to the features. ``model.config`` (a :class:`ClassifierConfig`) rebuilds the model:
``build_classifier(**dataclasses.asdict(model.config))``.

The torchvision networks are built with ``weights=None`` (nothing is downloaded; they train from
scratch) and adapted to one grey channel, small inputs (64-128 px) and a 2-class head.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchvision import models as tvm

from kecae.registry import CLASSIFIERS


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything needed to rebuild a classifier (stored whole in its checkpoints)."""

    arch: str = "siamese"  # a name of kecae.registry.CLASSIFIERS
    image_size: int = 64  # side of the square input, px (the model is checked against it)
    num_classes: int = 2  # 2: KL-0 (index 0) vs KL-2 (index 1)
    in_channels: int = 1  # grey radiographs
    dropout: float = 0.2  # dropout before the final linear layer; the training sets are small
    base_channels: int = 16  # first-block channels of the small/siamese trunks (doubling per block)
    patch_fraction: float = 0.5  # siamese: patch side as a fraction of the image side
    combine: str = "sum"  # siamese: "sum" (side-invariant) or "concat" of the two patch features
    margin_fraction: float = 0.0  # siamese: the patches start this far in from the image's edges

    def __post_init__(self) -> None:
        if self.arch not in CLASSIFIERS:
            raise ValueError(
                f"unknown classifier arch {self.arch!r}; choose one of {list(CLASSIFIERS)}"
            )
        min_size = CLASSIFIERS[self.arch].details["min_size"]
        if not isinstance(self.image_size, int) or self.image_size < min_size:
            raise ValueError(
                f"{self.arch} needs image_size >= {min_size} px "
                f"(got {self.image_size!r}): use a larger image_size, or the "
                "'small' arch for tiny images"
            )
        if self.num_classes < 2:
            raise ValueError(f"num_classes={self.num_classes!r} must be >= 2")
        if self.in_channels < 1:
            raise ValueError(f"in_channels={self.in_channels!r} must be >= 1 (1 for grey X-rays)")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout!r} must be in [0, 1)")
        if self.base_channels < 1:
            raise ValueError(f"base_channels={self.base_channels!r} must be >= 1")
        if not 0 < self.patch_fraction <= 1:
            raise ValueError(
                f"patch_fraction={self.patch_fraction!r} must be in (0, 1]; 0.5 cuts "
                "the left and right halves of the joint band"
            )
        if not 0 <= self.margin_fraction < 0.5 or self.margin_fraction + self.patch_fraction > 1:
            raise ValueError(
                f"margin_fraction={self.margin_fraction!r} must be in [0, 0.5) with "
                f"margin_fraction + patch_fraction <= 1 (patch_fraction={self.patch_fraction!r})"
            )
        if self.margin_fraction and self.arch != "siamese":
            raise ValueError(
                f"margin_fraction={self.margin_fraction!r} moves the siamese arch's patches; "
                f"{self.arch} sees the whole image (leave it at 0)"
            )
        if self.combine not in ("sum", "concat"):
            raise ValueError(f"combine={self.combine!r} must be 'sum' or 'concat'")


class Classifier(nn.Module):
    """Base: ``forward = forward_head(forward_features(x))``; subclasses set ``feature_dim``."""

    feature_dim: int

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, S, S) → (B, F)
        raise NotImplementedError

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        """Features (B, F) → logits (B, num_classes)."""
        return self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, S, S) in [-1, 1] → logits (B, num_classes)."""
        return self.forward_head(self.forward_features(x))

    def _make_head(self, feature_dim: int) -> None:
        self.feature_dim = feature_dim
        self.head = nn.Sequential(
            nn.Dropout(self.config.dropout), nn.Linear(feature_dim, self.config.num_classes)
        )


class BackboneClassifier(Classifier):
    """A feature extractor ending in (B, F), and a dropout + linear head."""

    def __init__(self, config: ClassifierConfig, features: nn.Module, feature_dim: int) -> None:
        super().__init__(config)
        self.features = features
        self._make_head(feature_dim)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, S, S) → pooled features (B, F)."""
        return self.features(x)


def _gap() -> nn.Sequential:
    """Global average pooling to (B, C): works at any input size."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _conv_trunk(in_channels: int, base: int, num_blocks: int = 4) -> tuple[nn.Sequential, int]:
    """``num_blocks`` × (Conv 3×3 → BN → ReLU → MaxPool 2), channels base·2^k, then GAP."""
    layers: list[nn.Module] = []
    c_in = in_channels
    for k in range(num_blocks):
        c_out = base * 2**k
        layers += [
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        c_in = c_out
    return nn.Sequential(*layers, *_gap()), c_in


def resnet18(config: ClassifierConfig) -> Classifier:
    """ResNet-18. Adaptations: 1-channel 7×7 stem conv; the fc is replaced by our head. The stem
    (stride-2 conv + max-pool) is kept, so 64 px ends at 2×2 before the global average pool."""
    net = tvm.resnet18(weights=None)
    net.conv1 = nn.Conv2d(config.in_channels, 64, 7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    features = nn.Sequential(
        net.conv1,
        net.bn1,
        net.relu,
        net.maxpool,
        net.layer1,
        net.layer2,
        net.layer3,
        net.layer4,
        _gap(),
    )
    return BackboneClassifier(config, features, net.fc.in_features)


def vgg11(config: ClassifierConfig) -> Classifier:
    """VGG-11 with BatchNorm (torchvision ``vgg11_bn``: BN lets it train from scratch, where the
    plain VGG-11 needs a pretrained start). Adaptations: 1-channel first conv; the 7×7×512 →
    4096 → 4096 head (~120 M parameters, sized for 224 px) is replaced by global average pooling
    to 512 features and our dropout + linear head."""
    net = tvm.vgg11_bn(weights=None)
    first = net.features[0]
    net.features[0] = nn.Conv2d(config.in_channels, first.out_channels, 3, padding=1)
    nn.init.kaiming_normal_(net.features[0].weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(net.features[0].bias)
    return BackboneClassifier(config, nn.Sequential(net.features, _gap()), 512)


def densenet201(config: ClassifierConfig) -> Classifier:
    """DenseNet-201. Adaptations: 1-channel 7×7 stem conv; the classifier is replaced by our head
    on the 1,920 globally pooled features (the final ReLU is kept, as torchvision applies it)."""
    net = tvm.densenet201(weights=None)
    net.features.conv0 = nn.Conv2d(config.in_channels, 64, 7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(net.features.conv0.weight)
    features = nn.Sequential(net.features, nn.ReLU(inplace=True), _gap())
    return BackboneClassifier(config, features, net.classifier.in_features)


def small(config: ClassifierConfig) -> Classifier:
    """A fast 4-block CNN (conv-BN-ReLU-pool, base·1/2/4/8 channels, GAP): tests, quick runs."""
    trunk, dim = _conv_trunk(config.in_channels, config.base_channels)
    return BackboneClassifier(config, trunk, dim)


class SiameseClassifier(Classifier):
    """Two joint patches through one shared trunk, their features combined, then the head.

    The inputs are joint-centred crops, so the two tibio-femoral compartments lie left and right
    of the centre. Two square patches of side ``patch_fraction``·S are cut at fixed positions:
    vertically centred on the joint line, one at the left edge and one at the right edge (0.5 gives
    the two halves of the central band). The right patch is flipped horizontally so both show the
    joint from its outer margin inwards, and the shared trunk sees them the same way. ``sum``
    (default) makes the model invariant to which compartment is medial (that depends on the side
    of the knee); ``concat`` keeps them apart. ``margin_fraction`` > 0 moves both patches that
    far in from the edges: the outer joint margins, where osteophytes grow, are then not seen, and
    the classifier must tell the grade from what lies inside them (the compartments' joint
    spaces).
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__(config)
        self.trunk, dim = _conv_trunk(config.in_channels, config.base_channels)
        self._make_head(dim if config.combine == "sum" else 2 * dim)

    def patches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 1, S, S) → (left patch, flipped right patch), each (B, 1, P, P)."""
        s = x.shape[-1]
        p = max(1, round(self.config.patch_fraction * s))
        top = (s - p) // 2  # centred on the joint line
        m = round(self.config.margin_fraction * s)  # columns left out at each edge
        left = x[..., top : top + p, m : m + p]
        right = x[..., top : top + p, s - m - p : s - m].flip(-1)
        return left, right

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, S, S) → combined patch features (B, F)."""
        left, right = self.patches(x)  # (B, 1, P, P) each
        b = x.shape[0]
        f = self.trunk(torch.cat([left, right]))  # (2B, D): one trunk call for both patches
        f_left, f_right = f[:b], f[b:]  # (B, D) each
        if self.config.combine == "sum":
            return f_left + f_right  # (B, D)
        return torch.cat([f_left, f_right], dim=1)  # (B, 2D)


def build_classifier(arch: str, image_size: int, num_classes: int = 2, **kw: Any) -> Classifier:
    """Build a registered classifier; extra keywords are :class:`ClassifierConfig` fields."""
    names = [f.name for f in dataclasses.fields(ClassifierConfig)]
    unknown = sorted(set(kw) - set(names))
    if unknown:
        raise ValueError(f"unknown classifier option(s) {unknown}; choose from {names}")
    config = ClassifierConfig(arch=arch, image_size=image_size, num_classes=num_classes, **kw)
    return classifier_from_config(config)


def classifier_from_config(config: ClassifierConfig) -> Classifier:
    """The model a :class:`ClassifierConfig` describes (fresh weights)."""
    build: Callable[[ClassifierConfig], Classifier] = CLASSIFIERS[config.arch].load()
    return build(config)
