"""The hybrid loss of KECAE (Eq. 4-8): J = J_MSE + λ1·J_SUP + λ2·J_LDA.

Plain functions of tensors; the model knows nothing about them. Class indices follow
``kecae.CLASS_GRADES``: 0 ↔ KL-0, 1 ↔ KL-2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kecae.models.kecae import KECAEOutput

#: Ways to take the LDA statistics (see :func:`lda_term`).
LDA_MODES = ("image", "batch")


def mse_term(x1: torch.Tensor, x1_hat: torch.Tensor, x2: torch.Tensor,
             x2_hat: torch.Tensor) -> torch.Tensor:
    """J_MSE = MSE(X1, X̂1) + MSE(X2, X̂2) (Eq. 4), each a mean over all elements.

    Shapes: all (B, 1, S, S). Returns a scalar.
    """
    return F.mse_loss(x1_hat, x1) + F.mse_loss(x2_hat, x2)


def supervision_term(logits_x1_ex: torch.Tensor, logits_x2_ex: torch.Tensor,
                     y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """J_SUP = CE(D(X'1), Y2) + CE(D(X'2), Y1) (Eq. 5): each exchanged image takes its donor's label.

    X'1 carries X2's key features, so it must be classified as Y2 (and X'2 as Y1).
    Shapes: logits (B, K), labels (B,) class indices. Each CE is a mean over the batch.
    """
    return F.cross_entropy(logits_x1_ex, y2) + F.cross_entropy(logits_x2_ex, y1)


def lda_term(h_nonkey: torch.Tensor, h_key: torch.Tensor, eps: float = 1e-6,
             mode: str = "image") -> torch.Tensor:
    """Fisher-LDA ratio J_LDA = (σN² + σK²) / ((µN − µK)² + ε) (Eq. 6-7); small when the key and
    non-key vectors sit far apart with little spread.

    ``mode="image"`` (the paper, Eq. 7): µ and σ² (population variance, 1/M) over the M elements
    of each image's flattened vector, the ratio per image, then the mean over the batch.
    ``mode="batch"``: one mean and one unbiased variance (1/(n−1), ``torch.var``'s default) over
    every element of the whole batch tensor, with no per-image structure; with ``eps=0`` this is
    the loss of the authors' released notebook (which can be ~1e5-1e10 at initialisation).

    Shapes: h_nonkey and h_key (B, ...) of equal shape. Returns a scalar. ``eps`` > 0 keeps the
    ratio finite when µN == µK.
    """
    if h_nonkey.shape != h_key.shape:
        raise ValueError(f"h_nonkey {tuple(h_nonkey.shape)} and h_key {tuple(h_key.shape)} "
                         "must have the same shape")
    if eps < 0:
        raise ValueError(f"eps={eps!r} must be >= 0 (default 1e-6)")
    # float32 statistics: under bf16 autocast the latents arrive in bf16, too coarse for σ².
    h_nonkey, h_key = h_nonkey.float(), h_key.float()
    if mode == "image":
        n, k = h_nonkey.flatten(1), h_key.flatten(1)  # (B, M)
        var_n, mu_n = torch.var_mean(n, dim=1, correction=0)  # (B,)
        var_k, mu_k = torch.var_mean(k, dim=1, correction=0)  # (B,)
        return ((var_n + var_k) / ((mu_n - mu_k) ** 2 + eps)).mean()
    if mode == "batch":
        var_n, mu_n = torch.var_mean(h_nonkey)  # scalars, unbiased
        var_k, mu_k = torch.var_mean(h_key)
        return (var_n + var_k) / ((mu_n - mu_k) ** 2 + eps)
    raise ValueError(f"unknown LDA mode {mode!r}; choose one of {list(LDA_MODES)}")


def hybrid_loss(out: KECAEOutput, x1: torch.Tensor, x2: torch.Tensor, y1: torch.Tensor,
                y2: torch.Tensor, supervisor: nn.Module, lambda_sup: float = 1e-2,
                lambda_lda: float = 1e-3, lda_eps: float = 1e-6,
                lda_mode: str = "image") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """J = J_MSE + λ1·J_SUP + λ2·J_LDA (Eq. 8) for one batch of pairs.

    ``out`` is ``KECAE.forward(x1, x2)``; x1, x2 (B, 1, S, S); y1, y2 (B,) class indices.
    J_LDA is the mean of lda(hN1, hK1) and lda(hN2, hK2). The supervisor is called once on
    cat([X'1, X'2]) (2B images). Freezing it is the caller's job (eval mode, requires_grad False):
    gradients still flow through it to the generator.

    Returns the total (a scalar with grad) and a dict of detached scalars ``mse``, ``sup``,
    ``lda``, ``total`` for logging (tensors, so logging does not force a device sync).
    """
    if lambda_sup < 0 or lambda_lda < 0:
        raise ValueError(f"lambda_sup={lambda_sup!r} and lambda_lda={lambda_lda!r} must be >= 0 "
                         "(paper: 1e-2 and 1e-3)")
    b = x1.shape[0]
    j_mse = mse_term(x1, out.x1_hat, x2, out.x2_hat)
    logits = supervisor(torch.cat([out.x1_ex, out.x2_ex]))  # (2B, K)
    j_sup = supervision_term(logits[:b], logits[b:], y1, y2)
    j_lda = 0.5 * (lda_term(out.hn1, out.hk1, lda_eps, lda_mode)
                   + lda_term(out.hn2, out.hk2, lda_eps, lda_mode))
    total = j_mse + lambda_sup * j_sup + lambda_lda * j_lda
    terms = {"mse": j_mse.detach(), "sup": j_sup.detach(), "lda": j_lda.detach(),
             "total": total.detach()}
    return total, terms
