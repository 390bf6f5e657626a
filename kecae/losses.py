"""The hybrid loss of KECAE (Eq. 4-8): J = J_MSE + λ1·J_SUP + λ2·J_LDA, and optional terms.

Plain functions of tensors; the model knows nothing about them. Class indices follow
``kecae.CLASS_GRADES``: 0 ↔ KL-0, 1 ↔ KL-2.

Beyond the paper (all weights 0 by default): an L1 reconstruction, a bounded LDA form, penalties on
the warp exchange's displacement field (size, smoothness, folds), a supervisor that sees randomly
shifted and blurred exchanged images (so pixel-level texture cannot fool it), two
disentanglement constraints (:func:`consistency_terms`): re-encoding X' gives back the latents it
was made of, and exchanging keys between two knees of one grade changes little; and two linear
grade probes (:class:`GradeProbes`): the key must tell the grade, the non-key map must not.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kecae.models.autoencoder import KECAE, KECAEOutput, gaussian_blur, warp_images
from kecae.registry import LDA_MODES, RECON_LOSSES


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


def supervision_term(
    logits_x1_ex: torch.Tensor, logits_x2_ex: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor
) -> torch.Tensor:
    """J_SUP = CE(D(X'1), Y2) + CE(D(X'2), Y1) (Eq. 5): each exchanged image takes its donor's
    label.

    X'1 carries X2's key features, so it must be classified as Y2 (and X'2 as Y1).
    Shapes: logits (B, K), labels (B,) class indices. Each CE is a mean over the batch.
    """
    return F.cross_entropy(logits_x1_ex, y2) + F.cross_entropy(logits_x2_ex, y1)


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
    - ``smooth``: mean squared finite-difference gradient of the field, in px per px;
    - ``fold``: mean of relu(0.5 − det J) with J = I + ∇d the Jacobian of p ↦ p + d(p); it is zero
      unless the warp compresses an area to less than half, and grows as it approaches a fold
      (det ≤ 0, a tear or overlap).
    Grid spacing is ``image_size / g`` pixels. Returns scalars.
    """
    spacing = image_size / disp.shape[-1]
    dx_x = (disp[:, 0, :, 1:] - disp[:, 0, :, :-1])[:, :-1] / spacing  # ∂dx/∂x (B, g-1, g-1)
    dx_y = (disp[:, 0, 1:, :] - disp[:, 0, :-1, :])[:, :, :-1] / spacing  # ∂dx/∂y
    dy_x = (disp[:, 1, :, 1:] - disp[:, 1, :, :-1])[:, :-1] / spacing  # ∂dy/∂x
    dy_y = (disp[:, 1, 1:, :] - disp[:, 1, :-1, :])[:, :, :-1] / spacing  # ∂dy/∂y
    det = (1 + dx_x) * (1 + dy_y) - dx_y * dy_x
    return {
        "disp": disp.pow(2).sum(1).mean(),
        "smooth": (dx_x**2 + dx_y**2 + dy_x**2 + dy_y**2).mean(),
        "fold": F.relu(0.5 - det).mean(),
    }


def intensity_edit_term(out: KECAEOutput, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Mean absolute intensity change of X' that moving pixels does not explain: |X' − warp(X, d)|
    for a warp exchange (its residual part), |X' − X| otherwise. An L1 penalty keeps such edits
    sparse: pixels change only where the geometry cannot do it (new or removed bone)."""
    base1, base2 = x1, x2
    if out.disp1 is not None and out.disp2 is not None:
        base1, base2 = warp_images(x1, out.disp1), warp_images(x2, out.disp2)
    return 0.5 * ((out.x1_ex - base1).abs().mean() + (out.x2_ex - base2).abs().mean())


def perturb_for_supervisor(
    x: torch.Tensor, strength: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random sub-pixel shift (up to ``strength`` px each way, per image) and a Gaussian blur of
    sd drawn in [0, ``strength``] px (per batch): a change the supervisor should not care about,
    which destroys pixel-period patterns that fool a fixed classifier. 0: identity."""
    if strength <= 0:
        return x
    b = x.shape[0]
    shift = (torch.rand(b, 2, 1, 1, generator=generator) * 2 - 1).to(x) * strength
    sigma = float(torch.rand(1, generator=generator)) * strength
    return gaussian_blur(warp_images(x, shift), sigma)


def hybrid_loss(
    out: KECAEOutput,
    x1: torch.Tensor,
    x2: torch.Tensor,
    y1: torch.Tensor,
    y2: torch.Tensor,
    supervisor: nn.Module,
    lambda_sup: float = 1e-2,
    lambda_lda: float = 1e-3,
    lda_eps: float = 1e-6,
    lda_mode: str = "image",
    *,
    recon: str = "mse",
    lambda_disp: float = 0.0,
    lambda_smooth: float = 0.0,
    lambda_fold: float = 0.0,
    sup_perturb: float = 0.0,
    lambda_edit: float = 0.0,
    sup_target: str = "label",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """J = J_MSE + λ1·J_SUP + λ2·J_LDA (Eq. 8) for one batch of pairs, plus the optional
    displacement penalties (weights ``lambda_disp``, ``lambda_smooth``, ``lambda_fold``) when the
    model warps, and ``lambda_edit`` times :func:`intensity_edit_term`.

    ``out`` is ``KECAE.forward(x1, x2)``; x1, x2 (B, 1, S, S); y1, y2 (B,) class indices.
    J_LDA is the mean of lda(hN1, hK1) and lda(hN2, hK2). The supervisor is called once on
    cat([X'1, X'2]) (2B images), perturbed first when ``sup_perturb`` > 0. Freezing it is the
    caller's job (eval mode, requires_grad False): gradients still flow through it to the
    generator. ``recon`` picks the reconstruction term (the paper's MSE, or L1).
    ``sup_target="donor"`` replaces the donor's grade label in J_SUP by the supervisor's own
    (soft) call on the donor image: a donor whose grade label says KL-2 but whose joint looks
    healthy then asks for a healthy-looking X', so the exchange follows the donor's features,
    not its label (the phantom grades, like readers', overlap).

    Returns the total (a scalar with grad) and a dict of detached scalars ``mse`` (the
    reconstruction term, whichever its kind), ``sup``, ``lda``, ``total`` (and ``disp``,
    ``smooth``, ``fold`` for a warp) for logging (tensors: logging forces no device sync).
    """
    weights = dict(
        lambda_sup=lambda_sup,
        lambda_lda=lambda_lda,
        lambda_disp=lambda_disp,
        lambda_smooth=lambda_smooth,
        lambda_fold=lambda_fold,
        sup_perturb=sup_perturb,
        lambda_edit=lambda_edit,
    )
    bad = {k: v for k, v in weights.items() if not (v >= 0 and v < float("inf"))}
    if bad:
        raise ValueError(f"{bad} must be finite and >= 0 (paper: lambda_sup 1e-2, lambda_lda 1e-3)")
    b = x1.shape[0]
    j_rec = reconstruction_term(x1, out.x1_hat, x2, out.x2_hat, recon)
    x_ex = perturb_for_supervisor(torch.cat([out.x1_ex, out.x2_ex]), sup_perturb, generator)
    logits = supervisor(x_ex)  # (2B, K)
    if sup_target == "donor":
        with torch.no_grad():  # the supervisor's belief about each donor image, a soft target
            p_donor = torch.softmax(supervisor(torch.cat([x2, x1])).float(), dim=1)  # (2B, K)
        j_sup = F.cross_entropy(logits[:b].float(), p_donor[:b]) + F.cross_entropy(
            logits[b:].float(), p_donor[b:]
        )
    elif sup_target == "label":
        j_sup = supervision_term(logits[:b], logits[b:], y1, y2)
    else:
        raise ValueError(f"unknown supervision target {sup_target!r}; choose 'label' or 'donor'")
    j_lda = 0.5 * (
        lda_term(out.hn1, out.hk1, lda_eps, lda_mode)
        + lda_term(out.hn2, out.hk2, lda_eps, lda_mode)
    )
    total = j_rec + lambda_sup * j_sup + lambda_lda * j_lda
    terms = {"mse": j_rec.detach(), "sup": j_sup.detach(), "lda": j_lda.detach()}
    if out.disp1 is not None and out.disp2 is not None:
        d = displacement_terms(torch.cat([out.disp1, out.disp2]), x1.shape[-1])
        total = (
            total + lambda_disp * d["disp"] + lambda_smooth * d["smooth"] + lambda_fold * d["fold"]
        )
        terms.update({k: v.detach() for k, v in d.items()})
    if lambda_edit > 0:
        j_edit = intensity_edit_term(out, x1, x2)
        total = total + lambda_edit * j_edit
        terms["edit"] = j_edit.detach()
    terms["total"] = total.detach()
    return total, terms


def consistency_terms(
    model: KECAE,
    out: KECAEOutput,
    x1: torch.Tensor,
    x2: torch.Tensor,
    cycle: bool = True,
    same: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Disentanglement constraints (as in DRIT / MUNIT / the Swapping Autoencoder), unweighted.

    - ``cycle``: re-encoding X'1 gives back hN1 and hK2, and X'2 gives hN2 and hK1; each MSE is
      divided by its target's variance so the latents' scale does not set the weight. Targets are
      detached: the exchanged image must carry the latents, not the latents drift to it.
    - ``same``: X1 given the key of *another KL-0 knee* of the batch (a random derangement) must
      equal the no-exchange output (X̂1 for the paper's decoded exchange, X1 itself for a residual
      or warp exchange), and likewise for X2 among KL-2 knees: the key then has no room for
      anything that is not the grade.

    ``model`` is the bare KECAE (not a DDP wrapper). Returns ``{"cycle": …, "same": …}`` scalars
    (only those asked for).
    """
    b = x1.shape[0]
    terms: dict[str, torch.Tensor] = {}
    if cycle:
        hk, hn = model.encode(torch.cat([out.x1_ex, out.x2_ex]))  # (2B, …) each

        def rel(a: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            target = target.detach()
            return F.mse_loss(a, target) / (target.var() + 1e-6)

        terms["cycle"] = 0.25 * (
            rel(hn[:b], out.hn1)
            + rel(hk[:b], out.hk2)
            + rel(hn[b:], out.hn2)
            + rel(hk[b:], out.hk1)
        )
    if same and b > 1:
        perm = (
            torch.arange(b) + torch.randint(1, b, (1,), generator=generator)
        ) % b  # no fixed point
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
        terms["same"] = F.mse_loss(x_same, target.detach())
    return terms


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
