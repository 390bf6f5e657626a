"""What one optimiser step needs besides the model: the stop on a loss that is no longer finite
(mixed precision and the memory layout are device matters: :mod:`kecae.device`). Both training
loops use these; neither knows the model."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from kecae.errors import KecaeError
from kecae.training.distributed import DistInfo, broadcast_flag


def check_finite(value: float, step: int, what: str, last_ckpt: str | None) -> None:
    """Stop with a clear message on NaN or inf; the last good checkpoint is left as it is."""
    if not math.isfinite(value):
        keep = (
            f"the last good checkpoint is {last_ckpt}"
            if last_ckpt
            else "no checkpoint was written yet"
        )
        raise KecaeError(
            f"{what} became {value} at step {step}; {keep}. Lower the learning rate "
            "or a loss weight, check the data (`kecae data check`), then resume with "
            "--resume"
        )


def first_nonfinite(values: Mapping[str, torch.Tensor | float]) -> str | None:
    """The name of the first value that is NaN or infinite (in the mapping's order), else None."""
    for name, value in values.items():
        if not math.isfinite(float(value)):
            return name
    return None


def gradient_is_finite(parameters: list[torch.nn.Parameter]) -> bool:
    """Whether every gradient of ``parameters`` is finite (a finite loss can still overflow)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return True
    return bool(torch.isfinite(torch.stack([g.float().abs().sum() for g in grads]).sum()))


def stop_unless_finite(
    terms: Mapping[str, torch.Tensor],
    step: int,
    last_ckpt: str | None,
    dist_info: DistInfo,
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Every rank stops when any rank's loss terms (or, with ``optimizer``, its gradients) are
    NaN or infinite, naming the step and the first such term; the last checkpoint is kept."""
    bad = first_nonfinite(terms)
    if bad is None and optimizer is not None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        bad = None if gradient_is_finite(params) else "gradient"
    if not broadcast_flag(bad is not None, dist_info):
        return
    if bad == "gradient":
        what, value = "the gradient of the hybrid loss", math.nan
    elif bad is not None:
        what, value = f"the loss term {bad!r}", float(terms[bad])
    else:
        what, value = "a loss term on another process", math.nan
    check_finite(value, step, what, last_ckpt)
