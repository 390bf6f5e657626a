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
    with pytest.raises(ValueError, match=r"\['paper', 'cpu', 'cpu_fill', 'tiny'\]"):
        kecae_config("huge")
    with pytest.raises(ValueError, match="image_size"):
        kecae_config("cpu", dept=3)


def test_cpu_preset_is_the_ablation_row_it_names():
    """The cpu preset is the ablation's ..._fold03_inner_change_l1 row, model and
    training settings alike, so docs/ablation.md measures what `kecae demo` trains; its member 1
    sees the inner view."""
    import torch

    from kecae.models import KECAE, preset_training
    from kecae.models.presets import INNER_VIEW, preset_member_model
    from kecae.studies.ablation_rows import BASE_MODEL, ROWS

    row = ROWS["g32_patch_local_removal_probes_fold03_inner_change_l1"]
    assert preset_member_model("cpu", 1) == INNER_VIEW
    assert kecae_config("cpu") == KECAEConfig(**{**BASE_MODEL, **row.model})
    assert preset_training("cpu") == row.train
    # the bound on the exchange's change, the field's length priced; cpu_fill keeps its own row's
    assert kecae_config("cpu").warp_bound == "change" and row.train["lambda_disp_l1"] == 0.03
    assert kecae_config("cpu_fill").warp_bound == "field"
    assert preset_training("paper") == {} and kecae_config("paper").exchange == "decode"
    model = KECAE(kecae_config("cpu")).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        out = model(x[:1], x[1:])
    assert out.x1_ex.shape == out.x1_hat.shape == (1, 1, 64, 64)
    assert out.hn1.shape[-2:] == (4, 4) and out.hk1.shape[-2:] == (1, 1)  # position-free key
    assert out.disp1 is not None and out.disp1.shape == (1, 2, 32, 32)


def test_cpu_fill_preset_is_the_ablation_row_it_names():
    """cpu_fill is the ablation's healthy-fill control row, model and training alike, and its
    supervisors are attacked as cpu's are; its exchange draws through a mask."""
    import torch

    from kecae.models import KECAE, preset_training
    from kecae.models.presets import preset_supervisor
    from kecae.studies.ablation_rows import BASE_MODEL, ROWS

    row = ROWS["g32_healthy_edges_patch_local_removal_control_nofillgrad"]
    assert kecae_config("cpu_fill") == KECAEConfig(**{**BASE_MODEL, **row.model})
    assert preset_training("cpu_fill") == row.train
    assert preset_supervisor("cpu_fill") == preset_supervisor("cpu") == {"adv_eps": 0.03}
    model = KECAE(kecae_config("cpu_fill")).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        out = model(x[:1], x[1:])
    assert out.x1_ex.shape == out.x2_ex.shape == (1, 1, 64, 64)
    assert out.mask2 is not None and out.mask2.shape == (1, 1, 64, 64)
    assert out.disp2 is not None and out.disp2.shape == (1, 2, 32, 32)


@pytest.mark.parametrize("preset", ["cpu", "cpu_fill"])
def test_a_run_trains_the_preset_it_names(tmp_path, preset):
    """`kecae run --preset P` hands KECAE's trainer the model and loss weights of P, and its
    supervisors the preset's attack radius."""
    import dataclasses

    from kecae.models import preset_training
    from kecae.models.presets import preset_supervisor
    from kecae.pipeline import RunConfig, _kecae_config, supervisor_adv_eps
    from kecae.runfolder import RunLayout

    cfg = RunConfig(out=str(tmp_path / "run"), preset=preset)
    train = _kecae_config(cfg, RunLayout(tmp_path / "run"), 64, {})
    assert kecae_config(train.preset, **train.model) == kecae_config(preset)
    fields = dataclasses.asdict(train)
    assert {k: fields[k] for k in preset_training(preset)} == preset_training(preset)
    assert supervisor_adv_eps(cfg) == preset_supervisor(preset)["adv_eps"]
    # the preset's budget (cpu 3,000 steps, cpu_fill 2,000), unless --kecae-steps says otherwise
    assert train.max_steps == {"cpu": 3000, "cpu_fill": 2000}[preset]
    assert train.ckpt_every == train.max_steps // 10
    cfg = dataclasses.replace(cfg, kecae_steps=40)
    assert _kecae_config(cfg, RunLayout(tmp_path / "run"), 64, {}).max_steps == 40
