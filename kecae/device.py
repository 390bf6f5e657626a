"""Where a command runs: device names checked against this machine (never a silent CPU fallback),
seeding of every random generator, mixed precision and the memory layout. torch is imported
inside the functions: the settings modules import this one and stay light."""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING

import numpy as np

from kecae.errors import KecaeError

if TYPE_CHECKING:
    import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) random generators."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are
    checked against what this machine has, so a run never silently falls back to the CPU."""
    import torch

    return torch.device(check_device(name))


def available_devices() -> list[str]:
    """The device names this machine offers, e.g. ``["cpu", "cuda:0", "cuda:1"]``."""
    import torch

    names = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names


def check_device(name: str) -> str:
    """``name`` resolved (``auto`` -> ``cuda`` or ``cpu``), or a :class:`KecaeError` that says
    what this machine has."""
    import torch

    text = str(name).strip().lower()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    have = available_devices()
    m = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", text)
    if m is None or (m.group(1) != "cuda" and m.group(2) is not None):
        raise KecaeError(
            f"--device {name!r} is not a device name: use auto, cpu or cuda "
            f"(cuda:N for one GPU); this machine has {', '.join(have)}"
        )
    if m.group(1) == "cuda":
        if not torch.cuda.is_available():
            raise KecaeError(
                f"--device {name}: no CUDA GPU is available on this machine (it has "
                f"{', '.join(have)}); use --device cpu, or auto"
            )
        if m.group(2) is not None and int(m.group(2)) >= torch.cuda.device_count():
            raise KecaeError(
                f"--device {name}: this machine has {', '.join(have)}; pick one of those"
            )
    if m.group(1) == "mps" and "mps" not in have:
        raise KecaeError(
            f"--device mps: no Apple GPU here (this machine has {', '.join(have)}); "
            "use --device cpu"
        )
    return text


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bf16 autocast on CUDA; a no-op on CPU so CPU runs stay deterministic."""
    import torch

    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda"
    )


def memory_format(enabled: bool) -> torch.memory_format:
    """NHWC (channels_last) when enabled: faster convolutions on CPU and on tensor-core GPUs."""
    import torch

    return torch.channels_last if enabled else torch.contiguous_format
