"""What one optimiser step needs besides the model: mixed precision, the memory layout, and the
stop on a loss that is no longer finite. Both training loops use these; neither knows the model."""

from __future__ import annotations

import math

import torch

from kecae.errors import KecaeError


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bf16 autocast on CUDA; a no-op on CPU so CPU runs stay deterministic."""
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda"
    )


def memory_format(enabled: bool) -> torch.memory_format:
    """NHWC (channels_last) when enabled: faster convolutions on CPU and on tensor-core GPUs."""
    return torch.channels_last if enabled else torch.contiguous_format


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
