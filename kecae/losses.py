"""The KECAE training loss, in one place: J = J_MSE + λ1·J_SUP + λ2·J_LDA (Eq. 4-8) and the
optional terms beyond the paper, each an entry of :data:`TERMS`; :func:`kecae_loss` adds them up.

The term functions are plain functions of tensors; the model knows nothing about them. Class
indices follow ``kecae.CLASS_GRADES``: 0 ↔ KL-0, 1 ↔ KL-2. The weights and options live in
:class:`kecae.training.config.LossSettings` (fields of ``kecae train``), checked once when built.

Beyond the paper (all weights 0 by default): an L1 reconstruction, a bounded LDA form, penalties on
the warp exchange's displacement field (size, smoothness, folds), a supervisor that sees randomly
shifted and blurred exchanged images (so pixel-level texture cannot fool it), two
disentanglement constraints: re-encoding X' gives back the latents it was made of
(:func:`cycle_term`), and exchanging keys between two knees of one grade changes little
(:func:`same_grade_term`); two linear grade probes (:class:`GradeProbes`): the key must tell the
grade, the non-key map must not; and, with a jointly trained supervisor, its own cross-entropy on
the real images.

A new term is one entry of :data:`TERMS` (its function and the ``LossSettings`` field of each
weight): it is then computed, weighted, logged (the trainer's ``log.csv`` columns come from
:func:`logged_names`) and validated with the rest. An entry may ramp its weights up from 0 over a
number of steps (``ramp``) and may train a module of its own (``module``): in the model's Adam,
like the grade probes, or with an optimiser of its own and an update step after the model's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kecae import edit_losses, local_critic
from kecae.edit_losses import PatchDiscriminator, intensity_edit_term, perturb_for_supervisor
from kecae.models.autoencoder import KECAE, KECAEConfig, KECAEOutput, control_pairs
from kecae.models.edit import warp_images
from kecae.models.inpaint import inpaint_loss
from kecae.registry import LDA_MODES, RECON_LOSSES
from kecae.supervision_losses import donor_supervision_term as donor_supervision_term
from kecae.supervision_losses import ensemble_supervision
from kecae.supervision_losses import supervision_term as supervision_term
from kecae.training.config import LossSettings


def mse_term(
    x1: torch.Tensor, x1_hat: torch.Tensor, x2: torch.Tensor, x2_hat: torch.Tensor
) -> torch.Tensor:
    """J_MSE = MSE(X1, X̂1) + MSE(X2, X̂2) (Eq. 4), each a mean over all elements.

    Shapes: all (B, 1, S, S). Returns a scalar.
    """
    return F.mse_loss(x1_hat, x1) + F.mse_loss(x2_hat, x2)


def reconstruction_term(
    x1: torch.Tensor,
    x1_hat: torch.Tensor,
    x2: torch.Tensor,
    x2_hat: torch.Tensor,
    kind: str = "mse",
) -> torch.Tensor:
    """J_MSE (``"mse"``, the paper) or the same sum with mean absolute errors (``"l1"``, which
    blurs less: the median, not the mean, of the plausible outputs). Shapes (B, 1, S, S)."""
    if kind == "mse":
        return mse_term(x1, x1_hat, x2, x2_hat)
    if kind == "l1":
        return F.l1_loss(x1_hat, x1) + F.l1_loss(x2_hat, x2)
    raise ValueError(f"unknown reconstruction loss {kind!r}; choose one of {list(RECON_LOSSES)}")


def lda_term(
    h_nonkey: torch.Tensor, h_key: torch.Tensor, eps: float = 1e-6, mode: str = "image"
) -> torch.Tensor:
    """Fisher-LDA ratio J_LDA = (σN² + σK²) / ((µN − µK)² + ε) (Eq. 6-7); small when the key and
    non-key vectors sit far apart with little spread.

    ``mode="image"`` (the paper, Eq. 7): µ and σ² (population variance, 1/M) over the M elements
    of each image's flattened vector, the ratio per image, then the mean over the batch.
    ``mode="batch"``: one mean and one unbiased variance (1/(n−1), ``torch.var``'s default) over
    every element of the whole batch tensor, with no per-image structure; with ``eps=0`` this is
    the loss of the authors' released notebook (which can be ~1e5-1e10 at initialisation).
    ``mode="log"``: log(1 + the per-image ratio), averaged over the batch. With a spatial latent the
    ratio sits at 1e3-1e4 for most of training, so λ2·ratio can outweigh the reconstruction by
    orders of magnitude; the log keeps the term's pull but bounds its scale.

    Shapes: h_nonkey (B, ...) and h_key (B, ...) with the same batch size (a position-free key
    has fewer elements than the non-key map: each vector's statistics are its own). Returns a
    scalar. ``eps`` > 0 keeps the ratio finite when µN == µK.
    """
    if h_nonkey.shape[0] != h_key.shape[0]:
        raise ValueError(
            f"h_nonkey {tuple(h_nonkey.shape)} and h_key {tuple(h_key.shape)} "
            "must hold the same number of images"
        )
    if eps < 0:
        raise ValueError(f"eps={eps!r} must be >= 0 (default 1e-6)")
    # float32 statistics: under bf16 autocast the latents arrive in bf16, too coarse for σ².
    h_nonkey, h_key = h_nonkey.float(), h_key.float()
    if mode in ("image", "log"):
        n, k = h_nonkey.flatten(1), h_key.flatten(1)  # (B, M_N), (B, M_K)
        var_n, mu_n = torch.var_mean(n, dim=1, correction=0)  # (B,)
        var_k, mu_k = torch.var_mean(k, dim=1, correction=0)  # (B,)
        ratio = (var_n + var_k) / ((mu_n - mu_k) ** 2 + eps)  # (B,)
        return (torch.log1p(ratio) if mode == "log" else ratio).mean()
    if mode == "batch":
        var_n, mu_n = torch.var_mean(h_nonkey)  # scalars, unbiased
        var_k, mu_k = torch.var_mean(h_key)
        return (var_n + var_k) / ((mu_n - mu_k) ** 2 + eps)
    raise ValueError(f"unknown LDA mode {mode!r}; choose one of {list(LDA_MODES)}")


def displacement_terms(disp: torch.Tensor, image_size: int) -> dict[str, torch.Tensor]:
    """Penalties on a warp's displacement field ``disp`` (B, 2, g, g), (dx, dy) in pixels.

    - ``disp``: mean squared displacement, px² (keeps the edit small: move the joint, not the knee);
    - ``disp_l1``: mean displacement length, px (sqrt(dx² + dy² + 1e-6), finite gradient at 0):
      a price per pixel moved that does not fade for small moves, so the field is sparse, zero
      away from the change, where the squared price lets it drift by fractions of a pixel;
    - ``smooth``: mean squared finite-difference gradient of the field, in px per px;
    - ``fold``: mean of relu(0.5 − det J) with J = I + ∇d the Jacobian of p ↦ p + d(p); it is zero
      unless the warp compresses an area to less than half, and grows as it approaches a fold
      (det ≤ 0, a tear or overlap).
    Grid spacing is ``image_size / g`` pixels. Returns scalars.
    """
    disp = disp.float()  # fp32 under bf16 autocast: fold's determinant is a small difference
    spacing = image_size / disp.shape[-1]
    dx_x = (disp[:, 0, :, 1:] - disp[:, 0, :, :-1])[:, :-1] / spacing  # ∂dx/∂x (B, g-1, g-1)
    dx_y = (disp[:, 0, 1:, :] - disp[:, 0, :-1, :])[:, :, :-1] / spacing  # ∂dx/∂y
    dy_x = (disp[:, 1, :, 1:] - disp[:, 1, :, :-1])[:, :-1] / spacing  # ∂dy/∂x
    dy_y = (disp[:, 1, 1:, :] - disp[:, 1, :-1, :])[:, :, :-1] / spacing  # ∂dy/∂y
    det = (1 + dx_x) * (1 + dy_y) - dx_y * dy_x
    return {
        "disp": disp.pow(2).sum(1).mean(),
        "disp_l1": (disp.pow(2).sum(1) + 1e-6).sqrt().mean(),
        "smooth": (dx_x**2 + dx_y**2 + dy_x**2 + dy_y**2).mean(),
        "fold": F.relu(0.5 - det).mean(),
    }


def cycle_term(model: KECAE, out: KECAEOutput) -> torch.Tensor:
    """Re-encoding X'1 gives back hN1 and hK2, and X'2 gives hN2 and hK1 (as in DRIT / MUNIT / the
    Swapping Autoencoder); each MSE is divided by its target's variance so the latents' scale does
    not set the weight. Targets are detached: the exchanged image must carry the latents, not the
    latents drift to it. ``model`` is the bare KECAE (not a DDP wrapper). A scalar."""
    b = out.x1_ex.shape[0]
    hk, hn = model.encode(torch.cat([out.x1_ex, out.x2_ex]))  # (2B, …) each

    def rel(a: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.detach()
        return F.mse_loss(a, target) / (target.var() + 1e-6)

    return 0.25 * (
        rel(hn[:b], out.hn1) + rel(hk[:b], out.hk2) + rel(hn[b:], out.hn2) + rel(hk[b:], out.hk1)
    )


def same_grade_term(
    model: KECAE,
    out: KECAEOutput,
    x1: torch.Tensor,
    x2: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor | None:
    """X1 given the key of *another KL-0 knee* of the batch (a random derangement) must equal the
    no-exchange output (X̂1 for the paper's decoded exchange, X1 itself for a residual or warp
    exchange), and likewise for X2 among KL-2 knees: the key then has no room for anything that
    is not the grade. A scalar; None for a batch of one pair (no other knee to take a key from)."""
    b = x1.shape[0]
    if b < 2:
        return None
    perm = (torch.arange(b) + torch.randint(1, b, (1,), generator=generator)) % b  # no fixed point
    perm = perm.to(x1.device)
    x = torch.cat([x1, x2])
    hat = torch.cat([out.x1_hat, out.x2_hat])
    hn, hk = torch.cat([out.hn1, out.hn2]), torch.cat([out.hk1[perm], out.hk2[perm]])
    dec, u = model.decode_with_displacement(hn + hk)
    u_hat = (
        torch.cat([out.flow1, out.flow2])
        if out.flow1 is not None and out.flow2 is not None
        else None
    )
    x_same, _ = model.exchanged(x, hat, dec, u_hat, u)
    target = hat if model.config.exchange == "decode" else x
    return F.mse_loss(x_same, target.detach())


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient is negated on the way back (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return -grad


class GradeProbes(nn.Module):
    """Two linear KL-0/KL-2 classifiers used only in training: one on the key vector hK, one on the
    flattened non-key map hN behind a gradient reversal.

    The key probe makes "the key carries the grade" a direct objective (the paper gets it
    indirectly, through the supervisor and the LDA term). The non-key probe is an adversary: it
    learns to read the grade from hN while the encoder, through the reversed gradient, learns to
    leave none there. Both are trained with the model and saved in its checkpoints.
    """

    def __init__(self, key_dim: int, nonkey_dim: int, num_classes: int = 2) -> None:
        super().__init__()
        self.key = nn.Linear(key_dim, num_classes)
        self.nonkey = nn.Linear(nonkey_dim, num_classes)


def probe_terms(
    probes: GradeProbes, out: KECAEOutput, y1: torch.Tensor, y2: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``key_cls`` = CE of the key probe on (hK1, hK2) with the true grades; ``nonkey_adv`` = CE
    of the non-key probe on (hN1, hN2) seen through a gradient reversal (minimising it trains the
    probe and, reversed, pushes the grade out of hN). Unweighted scalars."""
    y = torch.cat([y1, y2])
    hk = torch.cat([out.hk1, out.hk2]).flatten(1).float()  # (2B, C·h·w)
    hn = torch.cat([out.hn1, out.hn2]).flatten(1).float()
    return {
        "key_cls": F.cross_entropy(probes.key(hk), y),
        "nonkey_adv": F.cross_entropy(probes.nonkey(_ReverseGradient.apply(hn)), y),
    }


# ---------------------------------------------------------------------------------------------
# The loss: what it sees, its entries, their sum
# ---------------------------------------------------------------------------------------------


@dataclass
class LossInputs:
    """What the loss of one batch of pairs sees."""

    out: KECAEOutput  # model(x1, x2)
    x1: torch.Tensor  # (B, 1, S, S) KL-0 images
    x2: torch.Tensor  # (B, 1, S, S) KL-2 images
    y1: torch.Tensor  # (B,) class indices of X1
    y2: torch.Tensor  # (B,) class indices of X2
    supervisor: nn.Module  # frozen (eval mode, no weight gradients: the caller's job) or joint
    model: KECAE | None = None  # the bare model (not a DDP wrapper): the consistency terms need it
    generator: torch.Generator | None = None  # the step's random draws (perturbation, derangement)
    step: int = 0  # the optimiser step (0-based): where the ramps stand
    joint: bool = False  # the supervisor trains along: it must also learn the real labels
    modules: Mapping[str, nn.Module] = field(default_factory=dict)  # the terms' modules, by name
    members: Sequence[nn.Module] = ()  # a supervisor ensemble's members 1..K-1 (frozen)


#: A term's values from the batch and the settings: {logged name: scalar}; a value the batch
#: cannot give (no displacement field, one pair) is left out.
TermFn = Callable[[LossInputs, LossSettings], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class TrainedModule:
    """A module a term trains along with KECAE, saved in the run's checkpoints under ``name``.

    With ``optimizer`` None its parameters join the model's Adam (the grade probes: a gradient
    reversal makes one of them an adversary). Otherwise it has an optimiser of its own, and after
    each step of the model ``update(module, inputs, settings)`` gives the losses that optimiser
    minimises (their sum), e.g. a discriminator's loss on real and detached generated images;
    ``logs`` names them (logged like the terms). Modules are not wrapped for DDP.
    """

    name: str
    build: Callable[[KECAEConfig], nn.Module]
    optimizer: Callable[[Iterator[nn.Parameter]], torch.optim.Optimizer] | None = None
    update: Callable[[nn.Module, LossInputs, LossSettings], dict[str, torch.Tensor]] | None = None
    logs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Term:
    """One entry of the loss: the values one function computes, each weighed by a field of
    :class:`LossSettings` (None: weight 1) and added to the total in the order of the table."""

    weights: Mapping[str, str | None]  # logged name -> the LossSettings field that weighs it
    compute: TermFn
    optional: bool = False  # computed only when one of its weights is > 0
    module: TrainedModule | None = None  # built (and trained) when the term is on
    ramp: str | None = None  # LossSettings field: steps over which its weights rise from 0

    def on(self, settings: LossSettings) -> bool:
        """Whether the term is computed under ``settings``."""
        fields = [f for f in self.weights.values() if f is not None]
        return not self.optional or any(getattr(settings, f) > 0 for f in fields)

    def weight(self, name: str, settings: LossSettings, step: int) -> float | None:
        """The weight of value ``name`` at optimiser step ``step`` (None: weight 1)."""
        field_name = self.weights[name]
        if field_name is None:
            return None
        value: float = getattr(settings, field_name)
        steps = getattr(settings, self.ramp) if self.ramp else 0
        return value * min(1.0, step / steps) if steps > 0 else value


def _reconstruction(inp: LossInputs, s: LossSettings) -> dict[str, torch.Tensor]:
    # logged as "mse" whichever its kind (the log's column since the paper's J_MSE)
    return {"mse": reconstruction_term(inp.x1, inp.out.x1_hat, inp.x2, inp.out.x2_hat, s.recon)}


def _supervision(inp: LossInputs, s: LossSettings) -> dict[str, torch.Tensor]:
    # each supervisor (member 0, then the ensemble's others) calls cat([X'1, X'2]) once, the
    # same images perturbed once first when asked; J_SUP is the mean of their losses
    x_ex = torch.cat([inp.out.x1_ex, inp.out.x2_ex])
    x_ex = perturb_for_supervisor(x_ex, s.sup_perturb, inp.generator)
    sups = [inp.supervisor, *inp.members]
    return {"sup": ensemble_supervision(sups, x_ex, inp.x1, inp.x2, inp.y1, inp.y2, s.sup_target)}


def _lda(inp: LossInputs, s: LossSettings) -> dict[str, torch.Tensor]:
    out = inp.out
    return {
        "lda": 0.5
        * (
            lda_term(out.hn1, out.hk1, s.lda_eps, s.lda_mode)
            + lda_term(out.hn2, out.hk2, s.lda_eps, s.lda_mode)
        )
    }


def _displacement(inp: LossInputs, s: LossSettings) -> dict[str, torch.Tensor]:
    if inp.out.disp1 is None or inp.out.disp2 is None:  # not a warp exchange
        return {}
    return displacement_terms(torch.cat([inp.out.disp1, inp.out.disp2]), inp.x1.shape[-1])


def _edit(inp: LossInputs, s: LossSettings) -> dict[str, torch.Tensor]:
    return {"edit": intensity_edit_term(inp.out, inp.x1, inp.x2)}


def _model(inp: LossInputs, term: str) -> KECAE:
    if inp.model is None:
        raise ValueError(f"the {term} term runs the model again: pass it as LossInputs.model")
    return inp.model


def _cycle(inp: LossInputs, s: LossSettings) -> dict[str, torch.Tensor]:
    return {"cycle": cycle_term(_model(inp, "cycle"), inp.out)}


def _same(inp: LossInputs, s: LossSettings) -> dict[str, torch.Tensor]:
    value = same_grade_term(_model(inp, "same"), inp.out, inp.x1, inp.x2, inp.generator)
    return {} if value is None else {"same": value}


def _probes(inp: LossInputs, s: LossSettings) -> dict[str, torch.Tensor]:
    probes = inp.modules[PROBES.name]
    assert isinstance(probes, GradeProbes)
    return probe_terms(probes, inp.out, inp.y1, inp.y2)


def _supervisor_on_real(inp: LossInputs, s: LossSettings) -> dict[str, torch.Tensor]:
    # a jointly trained supervisor also learns the real labels; without this term the
    # supervisor and the generator could agree on any private code
    if not inp.joint:
        return {}
    logits = inp.supervisor(torch.cat([inp.x1, inp.x2]))
    return {"sup_real": F.cross_entropy(logits.float(), torch.cat([inp.y1, inp.y2]))}


def _masks(inp: LossInputs, s: LossSettings) -> dict[str, torch.Tensor]:
    out = inp.out
    if out.mask1 is None or out.mask2 is None:
        raise ValueError("the mask terms need a model with the edit (model option edit=true)")
    if out.mask_self is None and s.lambda_mask_self > 0:
        raise ValueError("the control's mask is computed in training mode only")
    return edit_losses.mask_terms(
        torch.cat([out.mask1, out.mask2]).float(), out.mask_self, s.mask_free_area
    )


def _inpaint(inp: LossInputs, s: LossSettings) -> dict[str, torch.Tensor]:
    # the healthy inpainter learns from the lower grade's real knees (X1) alone, under random
    # masks; nothing else trains it (the exchange uses it with its weights detached)
    inpainter = _model(inp, "inpaint").inpainter
    if inpainter is None:
        raise ValueError(
            "the inpaint term trains the healthy inpainter: it needs a model with "
            "edit=true and edit_appearance=healthy"
        )
    return {"inpaint": inpaint_loss(inpainter, inp.x1, inp.generator, s.inpaint_mask_margin)}


def _control(inp: LossInputs, s: LossSettings) -> dict[str, torch.Tensor]:
    # the no-exchange control of every other pair (the images the model's forward gave
    # mask_self for), filled by the healthy inpainter as the exchange fills: exchange(X, X) = X
    model = _model(inp, "control")
    if model.inpainter is None:
        raise ValueError(
            "the control term prices the healthy fill on the no-exchange control: it needs a "
            "model with edit=true and edit_appearance=healthy"
        )
    if inp.out.mask_self is None:
        raise ValueError("the control's mask is computed in training mode only")
    x = control_pairs(inp.x1, inp.x2)
    mask = inp.out.mask_self
    g = model.healthy_fill(x, mask)
    return {"control": edit_losses.control_change_term(x.float(), g.float(), mask.float())}


def _patch_adversary(inp: LossInputs, s: LossSettings) -> dict[str, torch.Tensor]:
    disc = inp.modules[PATCH.name]
    assert isinstance(disc, PatchDiscriminator)
    fake1, fake2, _, _ = edit_losses.patch_crops(
        inp.out.x1_ex, inp.out.x2_ex, inp.x1, inp.x2, s.patch_crop
    )
    return {"patch_adv": edit_losses.generator_term(disc, fake1, fake2)}


def _patch_update(disc: nn.Module, inp: LossInputs, s: LossSettings) -> dict[str, torch.Tensor]:
    assert isinstance(disc, PatchDiscriminator)
    crops = edit_losses.patch_crops(
        inp.out.x1_ex.detach(), inp.out.x2_ex.detach(), inp.x1, inp.x2, s.patch_crop
    )
    return {"patch_d": edit_losses.discriminator_term(disc, *crops)}


def _local(inp: LossInputs, s: LossSettings) -> dict[str, torch.Tensor]:
    critic = inp.modules[LOCAL.name]
    x1_ex, x2_ex = inp.out.x1_ex, inp.out.x2_ex
    return {"local_sup": local_critic.exchange_term(critic, x1_ex, x2_ex, s.local_sides)}


def _local_update(critic: nn.Module, inp: LossInputs, s: LossSettings) -> dict[str, torch.Tensor]:
    fake2 = None
    if s.local_fakes and s.local_fakes_from == "warped":
        if inp.out.disp2 is None:
            raise ValueError("local_fakes_from='warped' needs a warp exchange (exchange=warp)")
        fake2 = warp_images(inp.x2, inp.out.disp2).detach()
    elif s.local_fakes:
        fake2 = inp.out.x2_ex.detach()
    return {"local_critic": local_critic.critic_term(critic, inp.x1, inp.x2, fake2)}


#: The local grade critic: learns the grade of each neighbourhood from the real images of the
#: batch (its own Adam, one update after each model step); sees X'2 only with ``local_fakes``.
LOCAL = TrainedModule(
    "local_critic",
    lambda config: local_critic.LocalGradeCritic(),
    optimizer=lambda params: torch.optim.Adam(params, lr=1e-3),
    update=_local_update,
    logs=("local_critic",),
)

#: The patch discriminator: its own Adam (GAN settings), one update after each model step.
PATCH = TrainedModule(
    "patch_disc",
    lambda config: PatchDiscriminator(),
    optimizer=lambda params: torch.optim.Adam(params, lr=5e-4, betas=(0.5, 0.999)),
    update=_patch_update,
    logs=("patch_d",),
)

#: The grade probes: two linear classifiers trained in the model's Adam.
PROBES = TrainedModule(
    "probes", lambda config: GradeProbes(math.prod(config.key_shape), config.latent_dim)
)

#: The loss, entry by entry, in the order the total adds them up.
TERMS: tuple[Term, ...] = (
    Term({"mse": None}, _reconstruction),  # J_MSE (Eq. 4), or its L1 form
    Term({"sup": "lambda_sup"}, _supervision),  # λ1·J_SUP (Eq. 5)
    Term({"lda": "lambda_lda"}, _lda),  # λ2·J_LDA (Eq. 6-7), the mean over X1 and X2
    Term(  # the warp exchange's displacement field
        {
            "disp": "lambda_disp",
            "disp_l1": "lambda_disp_l1",
            "smooth": "lambda_smooth",
            "fold": "lambda_fold",
        },
        _displacement,
    ),
    Term({"edit": "lambda_edit"}, _edit, optional=True),
    Term({"cycle": "lambda_cycle"}, _cycle, optional=True),
    Term({"same": "lambda_same"}, _same, optional=True),
    Term(
        {"key_cls": "lambda_key_cls", "nonkey_adv": "lambda_nonkey_adv"},
        _probes,
        optional=True,
        module=PROBES,
    ),
    Term({"sup_real": "lambda_sup"}, _supervisor_on_real),  # joint supervisor only
    Term(  # the edit's soft masks: area above a free share, smoothness, the control's mask
        {
            "mask_area": "lambda_mask_area",
            "mask_tv": "lambda_mask_tv",
            "mask_self": "lambda_mask_self",
        },
        _masks,
        optional=True,
    ),
    Term({"inpaint": "lambda_inpaint"}, _inpaint, optional=True),  # the healthy inpainter
    Term(  # what the healthy fill changes on the no-exchange control; ramped up from 0
        {"control": "lambda_control"}, _control, optional=True, ramp="adv_ramp"
    ),
    Term(  # no place of X'2 may look like the higher grade, some place of X'1 must; ramped
        {"local_sup": "lambda_local_sup"}, _local, optional=True, module=LOCAL, ramp="adv_ramp"
    ),
    Term(  # crops of X' must look like real crops of the intended grade; ramped up from 0
        {"patch_adv": "lambda_patch_adv"},
        _patch_adversary,
        optional=True,
        module=PATCH,
        ramp="adv_ramp",
    ),
)


def kecae_loss(
    inputs: LossInputs, settings: LossSettings, terms: Sequence[Term] | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The KECAE training loss of one batch of pairs: the weighted sum of every entry of
    ``terms`` (default :data:`TERMS`) that is on under ``settings``.

    Returns the total (a scalar with grad) and a dict of detached scalars, one per computed
    value (``mse`` is the reconstruction term, whichever its kind) and ``total``, for logging
    (tensors: logging forces no device sync).
    """
    total: torch.Tensor | None = None
    logged: dict[str, torch.Tensor] = {}
    for term in TERMS if terms is None else terms:
        if not term.on(settings):
            continue
        for name, value in term.compute(inputs, settings).items():
            weight = term.weight(name, settings, inputs.step)
            part = value if weight is None else weight * value
            total = part if total is None else total + part
            logged[name] = value.detach()
    if total is None:
        raise ValueError("the loss has no term: TERMS holds none that is on")
    logged["total"] = total.detach()
    return total, logged


def logged_names(terms: Sequence[Term] | None = None) -> list[str]:
    """Every value the loss and its modules' own steps may log, in table order."""
    names: list[str] = []
    for term in TERMS if terms is None else terms:
        names += list(term.weights)
        if term.module is not None:
            names += list(term.module.logs)
    return names
