"""Named KECAE sizes: one-line factories collected in ``PRESETS`` (CLI: ``choices=list(PRESETS)``)."""

from __future__ import annotations

from typing import Callable

from kecae.models.kecae import KECAEConfig, replace_config


def paper() -> KECAEConfig:
    """The paper: 299 px, channels 32…2048 (95 M parameters, 16.2 GFLOP forward per pair)."""
    return KECAEConfig(image_size=299, width=1.0)


def cpu() -> KECAEConfig:
    """Default on a 2-core CPU, chosen by benchmarks/bench_model.py (see cpu_preset_selection)."""
    return KECAEConfig(image_size=128, width=0.25)


def tiny() -> KECAEConfig:
    """For tests: 32 px, channels 4, 4, 4, 8, 16, 32, 64 (about 0.1 M parameters)."""
    return KECAEConfig(image_size=32, width=1 / 32)


PRESETS: dict[str, Callable[[], KECAEConfig]] = {"paper": paper, "cpu": cpu, "tiny": tiny}


def kecae_config(name: str, **overrides) -> KECAEConfig:
    """The preset ``name`` with some fields replaced, e.g. ``kecae_config("cpu", width=0.5)``."""
    if name not in PRESETS:
        raise ValueError(f"unknown KECAE preset {name!r}; choose one of {list(PRESETS)}")
    return replace_config(PRESETS[name](), **overrides)
