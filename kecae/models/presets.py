"""Named KECAE sizes: one-line factories, registered by name in :data:`kecae.registry.PRESETS`."""

from __future__ import annotations

from typing import Any

from kecae.models.autoencoder import KECAEConfig, replace_config
from kecae.registry import PRESETS


def paper() -> KECAEConfig:
    """The paper: 299 px, channels 32…2048 (95 M parameters, 16.2 GFLOP forward per pair)."""
    return KECAEConfig(image_size=299, width=1.0)


def cpu() -> KECAEConfig:
    """Default on a 2-core CPU: 64 px, channels 4…256 (1.5 M parameters, 0.046 GFLOP per training
    pair). Chosen by benchmarks/bench_model.py (model.json, cpu_preset_selection) among 64/96/128 px
    × width 0.125/0.25/0.5 for the demo's ~300 s of KECAE training (1 thread, batch 32, frozen
    siamese supervisor): it is the fastest row, 85 pairs/s (25.6k pairs) on a lightly loaded
    machine and 58 pairs/s (17.5k) under load 5, the only one near the >= 20k pairs an
    auto-encoder needs; 96 px × 0.125 reaches 39 pairs/s (11.7k) and 128 px × 0.125 17 (5.2k)."""
    return KECAEConfig(image_size=64, width=0.125)


def tiny() -> KECAEConfig:
    """For tests: 32 px, channels 4, 4, 4, 8, 16, 32, 64 (about 0.1 M parameters)."""
    return KECAEConfig(image_size=32, width=1 / 32)


#: Training settings (fields of ``KECAETrainConfig``) each preset was measured with. They sit
#: between the configuration's defaults (the paper's values) and what the user gives: an explicit
#: option or YAML value always wins. ``paper`` keeps the paper's loss exactly.
PRESET_TRAINING: dict[str, dict[str, Any]] = {"paper": {}, "cpu": {}, "tiny": {}}


def preset_training(name: str) -> dict[str, Any]:
    """A copy of the training settings of preset ``name`` (see :data:`PRESET_TRAINING`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown KECAE preset {name!r}; choose one of {list(PRESETS)}")
    return dict(PRESET_TRAINING.get(name, {}))


def kecae_config(name: str, **overrides: Any) -> KECAEConfig:
    """The preset ``name`` with some fields replaced, e.g. ``kecae_config("cpu", width=0.5)``."""
    if name not in PRESETS:
        raise ValueError(f"unknown KECAE preset {name!r}; choose one of {list(PRESETS)}")
    preset: KECAEConfig = PRESETS[name].load()()
    return replace_config(preset, **overrides)
