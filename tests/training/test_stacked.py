"""Stacked KECAEs (kecae.training.stacked): K models trained in one vmapped step end where K
one-at-a-time trainings with the same seeds and batches end, within a stated tolerance."""

from __future__ import annotations

import pytest
import torch

from kecae.losses import LossInputs, kecae_loss
from kecae.models.autoencoder import KECAE
from kecae.models.classifiers import build_classifier
from kecae.models.fold import fold_batchnorm
from kecae.models.presets import kecae_config, preset_training
from kecae.training.config import LossSettings
from kecae.training.stacked import StackedKECAE, stackable_settings

SEEDS = (0, 1, 2)
STEPS = 5
#: The K losses of every step: equal up to float rounding (vmap batches the convolutions, which
#: sums in another order; measured: within 1e-6).
LOSS_RTOL = 1e-5
#: Parameters and batch-norm statistics after STEPS steps: within 1e-5, except where Adam turns
#: a gradient near zero into a step of about lr whatever its rounding: the zero-initialised
#: displacement head's bias moved by 4e-4 to 1.2e-3 differently (measured with J_SUP at 0.1 and
#: 0.2), and can move by at most lr × STEPS = 1e-3 × 5 more than the other copy's, the bound.
PARAM_RTOL, PARAM_ATOL = 1e-4, 1e-3 * STEPS


def _setup():
    config = kecae_config("cpu", image_size=32)
    models = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        models.append(KECAE(config).train())
    torch.manual_seed(99)
    sup = fold_batchnorm(build_classifier("siamese", 32).eval().requires_grad_(False))
    gen = torch.Generator().manual_seed(5)
    data = [
        (
            torch.rand(len(SEEDS), 4, 1, 32, 32, generator=gen) * 2 - 1,
            torch.rand(len(SEEDS), 4, 1, 32, 32, generator=gen) * 2 - 1,
        )
        for _ in range(STEPS)
    ]
    # the preset's loss without its terms' own modules (stacking refuses them)
    settings = stackable_settings(preset_training("cpu"))
    return models, sup, settings, data


def _alone(model: KECAE, sup, settings, data, i: int) -> tuple[dict, list[float]]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    y1, y2 = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    losses = []
    for step, (x1, x2) in enumerate(data):
        out = model(x1[i], x2[i])
        total, _ = kecae_loss(LossInputs(out, x1[i], x2[i], y1, y2, sup, step=step), settings)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    return model.state_dict(), losses


def test_stacked_equals_one_at_a_time():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        models, sup, settings, data = _setup()
        stacked = StackedKECAE(models, sup, settings, lr=1e-3)
        stacked_losses = [stacked.step(x1, x2) for x1, x2 in data]
        states = stacked.state_dicts()
        for i, model in enumerate(models):
            alone_state, alone_losses = _alone(model, sup, settings, data, i)
            torch.testing.assert_close(
                torch.stack([s[i] for s in stacked_losses]),
                torch.tensor(alone_losses),
                rtol=LOSS_RTOL,
                atol=0.0,
            )
            for name, value in alone_state.items():
                atol = PARAM_ATOL if name.startswith("warp_head") else 1e-5
                torch.testing.assert_close(states[i][name], value, rtol=PARAM_RTOL, atol=atol)
            # the models learned something different from one another (seeds differ)
            assert (
                not torch.equal(states[i]["decoder.0.0.weight"], states[0]["decoder.0.0.weight"])
                or i == 0
            )
        fresh = KECAE(models[0].config)
        fresh.load_state_dict(states[1])  # state_dicts() loads back into a KECAE
    finally:
        torch.set_num_threads(before)


def test_stacked_refuses_mixed_configs_and_bad_batches():
    a, b = KECAE(kecae_config("tiny")), KECAE(kecae_config("cpu", image_size=32))
    sup = build_classifier("siamese", 32).eval()
    with pytest.raises(ValueError, match="share one KECAEConfig"):
        StackedKECAE([a, b], sup, LossSettings())
    with pytest.raises(ValueError, match="at least one"):
        StackedKECAE([], sup, LossSettings())
    stacked = StackedKECAE([b, KECAE(b.config)], sup, LossSettings())
    with pytest.raises(ValueError, match="one batch per model"):
        stacked.step(torch.zeros(3, 2, 1, 32, 32), torch.zeros(3, 2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"own modules \(patch_disc\).*lambda_patch_adv=0"):
        StackedKECAE([b, KECAE(b.config)], sup, LossSettings(lambda_patch_adv=0.1))
    with pytest.raises(ValueError, match=r"own modules \(local_critic, patch_disc\)"):
        StackedKECAE(
            [b, KECAE(b.config)], sup, LossSettings(lambda_patch_adv=0.1, lambda_local_sup=0.1)
        )
    # stackable_settings turns every such term off and keeps the rest
    both = {"lambda_sup": 0.3, "lambda_patch_adv": 0.1, "lambda_local_sup": 0.1}
    assert stackable_settings(both) == LossSettings(lambda_sup=0.3)
    StackedKECAE([b, KECAE(b.config)], sup, stackable_settings(preset_training("cpu")))
