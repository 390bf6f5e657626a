"""J_SUP (Eq. 5) and its forms beyond the paper: the exchanged images must carry their donor's
grade, as a frozen supervisor sees it. Against the donor's label (the paper), or against the
supervisor's own call on the donor (``sup_target: donor``), or as close to the supervisor's
logits on the donor as can be, no further (``sup_target: donor_logit``); with a supervisor ensemble
(``--supervisors K``), the mean of every member's loss, so the exchange must satisfy all of them
(K supervisors trained from different seeds share the grade's real signs, not each seed's own
shortcut). Shapes and class indices as in :mod:`kecae.losses`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def supervision_term(
    logits_x1_ex: torch.Tensor, logits_x2_ex: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor
) -> torch.Tensor:
    """J_SUP = CE(D(X'1), Y2) + CE(D(X'2), Y1) (Eq. 5): each exchanged image takes its donor's
    label.

    X'1 carries X2's key features, so it must be classified as Y2 (and X'2 as Y1).
    Shapes: logits (B, K), labels (B,) class indices. Each CE is a mean over the batch.
    """
    return F.cross_entropy(logits_x1_ex, y2) + F.cross_entropy(logits_x2_ex, y1)


def _on_donors(supervisor: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """The supervisor's logits (2B, K), in float and without a gradient, on the donor of each
    exchanged image of cat([X'1, X'2]): X'1's donor is X2, X'2's is X1."""
    with torch.no_grad():
        return supervisor(torch.cat([x2, x1])).float()


def donor_supervision_term(
    logits_ex: torch.Tensor, supervisor: nn.Module, x1: torch.Tensor, x2: torch.Tensor
) -> torch.Tensor:
    """J_SUP with the donor's grade label replaced by the supervisor's own (soft) call on the
    donor image: a donor whose label says KL-2 but whose joint looks healthy then asks for a
    healthy-looking X', so the exchange follows the donor's features, not its label (the phantom
    grades, like readers', overlap). ``logits_ex``: (2B, K) on cat([X'1, X'2])."""
    b = x1.shape[0]
    p_donor = torch.softmax(_on_donors(supervisor, x1, x2), dim=1)  # a soft target
    return F.cross_entropy(logits_ex[:b].float(), p_donor[:b]) + F.cross_entropy(
        logits_ex[b:].float(), p_donor[b:]
    )


def donor_logit_term(
    logits_ex: torch.Tensor, supervisor: nn.Module, x1: torch.Tensor, x2: torch.Tensor
) -> torch.Tensor:
    """J_SUP as a match: each exchanged image's logits, centred (minus their mean over the
    classes, so only the differences between grades count), as close as possible to the
    supervisor's centred logits on its donor image, by a Huber loss (δ = 1) summed over the
    classes and averaged over the batch. With two grades that is a Huber loss on the logit margin
    z = l_high − l_low, of slope 1 far from the donor's margin: unlike cross-entropy against the
    label it does not fade once X' passes the decision line (a recipient the supervisor was
    unsure of must still reach the donor's look), and it pulls back an X' the supervisor is more
    sure of than of its donor (a caricature). ``logits_ex``: (2B, K) on cat([X'1, X'2])."""
    target = _on_donors(supervisor, x1, x2)  # a fixed target
    ex = logits_ex.float()
    ex = ex - ex.mean(dim=1, keepdim=True)
    target = target - target.mean(dim=1, keepdim=True)
    return F.huber_loss(ex, target, reduction="none", delta=1.0).sum(dim=1).mean()


def ensemble_supervision(
    supervisors: Sequence[nn.Module],
    x_ex: torch.Tensor,
    x1: torch.Tensor,
    x2: torch.Tensor,
    y1: torch.Tensor,
    y2: torch.Tensor,
    target: str = "label",
) -> torch.Tensor:
    """J_SUP averaged over ``supervisors``: each sees the same exchanged images ``x_ex`` =
    cat([X'1, X'2]) (2B, 1, S, S) and scores them with its own loss (``target``: ``"label"``,
    the donor's grade; ``"donor"``, its own call on the donor image; ``"donor_logit"``, its
    logits on the donor image, :func:`donor_logit_term`). One supervisor gives its
    J_SUP unchanged."""
    b = x1.shape[0]
    values = []
    for sup in supervisors:
        logits = sup(x_ex)
        if target == "donor":
            values.append(donor_supervision_term(logits, sup, x1, x2))
        elif target == "donor_logit":
            values.append(donor_logit_term(logits, sup, x1, x2))
        else:
            values.append(supervision_term(logits[:b], logits[b:], y1, y2))
    if not values:
        raise ValueError("J_SUP needs at least one supervisor")
    return values[0] if len(values) == 1 else torch.stack(values).mean()
