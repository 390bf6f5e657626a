"""Named KECAE sizes (kecae.models.presets) and their overrides."""

from __future__ import annotations

import pytest

from kecae.models import (
    KECAEConfig,
    kecae_config,
)


def test_presets_and_overrides():
    assert kecae_config("tiny", width=1 / 16).channels == (4, 4, 8, 16, 32, 64, 128)
    assert kecae_config("cpu", image_size=96).image_size == 96
    # A checkpoint's config (lists from YAML/JSON) rebuilds an equal, hashable config.
    cfg = kecae_config("cpu")
    as_lists = {**vars(cfg), "encoder_channels": list(cfg.encoder_channels)}
    assert KECAEConfig(**as_lists) == cfg and hash(KECAEConfig(**as_lists)) == hash(cfg)
    with pytest.raises(ValueError, match=r"\['paper', 'cpu', 'tiny'\]"):
        kecae_config("huge")
    with pytest.raises(ValueError, match="image_size"):
        kecae_config("cpu", dept=3)
