"""The local grade critic: a training signal that asks for the change itself, place by place.

The frozen supervisor calls a whole image, and it can be satisfied by one cue (a wider joint)
while a bony spur stays. This critic calls the grade of every small neighbourhood (a ~21 px
receptive field at 64 px) and pools the calls so that one KL-2-looking place makes the image
KL-2 (multiple-instance learning: log-sum-exp pooling, a smooth maximum). It learns from the real
images of the batch and their grade labels only (X1 lower grade, X2 higher), never from X', so
the exchange cannot teach it anything. The exchange's term asks that no place of X'2 looks like
the higher grade (a spur the donor lacks is such a place) and that some place of X'1 does. No
normalisation layers; spectral normalisation bounds its gradients.

Learning from real images alone, a trained run's critic calls the joint line: the narrowed joint
space is enough to tell the grades, and one place is enough for the pooling. With the option
``local_fakes`` it also learns X'2 on the higher grade's side (a local discriminator for "a real
knee of the lower grade"), so that a spur X'2 keeps after its joint is widened is what it has to
find.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

#: Sharpness of the log-sum-exp pooling: large is the maximum over places, small the mean.
LSE_SHARPNESS = 4.0


class LocalGradeCritic(nn.Module):
    """Images (B, 1, S, S) → (image logit (B,), map of place logits (B, 1, S/4, S/4)).

    Five 3×3 convolutions (two of stride 2) and a 1×1 output: each place's logit reads a ~21 px
    neighbourhood. The image logit is (1/r)·log mean exp(r·z) over places (r =
    ``LSE_SHARPNESS``): high when any place is.
    """

    def __init__(self, channels: int = 8, negative_slope: float = 0.2) -> None:
        super().__init__()
        c, a = channels, negative_slope
        self.net = nn.Sequential(
            spectral_norm(nn.Conv2d(1, c, 3, padding=1)),
            nn.LeakyReLU(a),
            spectral_norm(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)),
            nn.LeakyReLU(a),
            spectral_norm(nn.Conv2d(2 * c, 2 * c, 3, padding=1)),
            nn.LeakyReLU(a),
            spectral_norm(nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1)),
            nn.LeakyReLU(a),
            spectral_norm(nn.Conv2d(4 * c, 4 * c, 3, padding=1)),
            nn.LeakyReLU(a),
            nn.Conv2d(4 * c, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        places = self.net(x).float()  # (B, 1, h, w)
        z = places.flatten(1)
        r = LSE_SHARPNESS
        image = (torch.logsumexp(r * z, 1) - math.log(z.shape[1])) / r  # (B,)
        return image, places


def critic_term(
    critic: nn.Module,
    real1: torch.Tensor,
    real2: torch.Tensor,
    fake2: torch.Tensor | None = None,
) -> torch.Tensor:
    """The critic's own loss: binary cross-entropy of its image logit on the real images, X1
    (B, 1, S, S) the lower grade (0) and X2 the higher (1), the two halves averaged.

    ``fake2`` (the option ``local_fakes``): X'2 (detached), which claims the lower grade, joins
    the higher grade's half (that half the mean of X2's and X'2's terms). The critic then tells a
    real knee of the lower grade from anything else, and once the exchange has widened X'2's
    joint it has to find what is left (a spur, an artefact) to call X'2 as it calls X2."""
    z1, _ = critic(real1)
    z2, _ = critic(real2)
    high = F.binary_cross_entropy_with_logits(z2, torch.ones_like(z2))
    if fake2 is not None:
        zf, _ = critic(fake2)
        high = 0.5 * (high + F.binary_cross_entropy_with_logits(zf, torch.ones_like(zf)))
    return 0.5 * (F.binary_cross_entropy_with_logits(z1, torch.zeros_like(z1)) + high)


def exchange_term(
    critic: nn.Module, x1_ex: torch.Tensor, x2_ex: torch.Tensor, sides: str = "both"
) -> torch.Tensor:
    """The exchange's loss: the critic's cross-entropy on X'2 (B, 1, S, S) as the lower grade
    (no place of X'2 may look like the higher grade) and, with ``sides="both"``, on X'1 as the
    higher, averaged; ``sides="removal"`` reads X'2 alone (nothing pushes X'1 to look more like
    the higher grade than the supervisor already asks)."""
    z2, _ = critic(x2_ex)
    removal = F.binary_cross_entropy_with_logits(z2, torch.zeros_like(z2))
    if sides == "removal":
        return removal
    if sides != "both":
        raise ValueError(f"local_sides={sides!r} must be 'both' or 'removal'")
    z1, _ = critic(x1_ex)
    return 0.5 * (F.binary_cross_entropy_with_logits(z1, torch.ones_like(z1)) + removal)
