"""Several KECAEs of one configuration trained in lockstep as one stacked model (``torch.func``).

The studies train dozens of small KECAEs (one per row, seed or trial) whose steps are each too
small to fill a GPU: a step of the ``cpu`` preset is launch-bound there. Stacking K models'
parameters and buffers (``torch.func.stack_module_state``) and mapping one forward over them
(``vmap`` of ``functional_call``) runs the K steps as one, with K times larger kernels. Each
model keeps its own data, its own batch-norm statistics and its own Adam state (Adam is
element-wise, so one Adam over the stacked tensors is K independent ones); the K losses are
summed before the backward, which leaves each model's gradient its own.

Results equal those of training each model alone with the same seeds and batches up to float
rounding (tests/training/test_stacked.py states the tolerance).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from kecae.losses import TERMS, LossInputs, kecae_loss
from kecae.models.autoencoder import KECAE
from kecae.training.config import LossSettings


def stackable_settings(values: Mapping[str, Any]) -> LossSettings:
    """The loss settings among ``values`` (e.g. a preset's training settings) with the weights of
    every term that trains a module of its own set to 0 (the patch discriminator, the local
    critic): what stacked training can run, the same for a model trained alone beside it."""
    own = {
        field: 0.0
        for term in TERMS
        if term.module is not None
        for field in term.weights.values()
        if field is not None
    }
    return LossSettings.pick({**values, **own})


class StackedKECAE:
    """K KECAEs (same configuration) trained together; ``supervisor`` (frozen) is shared."""

    def __init__(
        self,
        models: Sequence[KECAE],
        supervisor: nn.Module,
        settings: LossSettings,
        lr: float = 1e-4,
    ) -> None:
        if not models:
            raise ValueError("StackedKECAE needs at least one model")
        configs = {m.config for m in models}
        if len(configs) != 1:
            raise ValueError("stacked models must share one KECAEConfig; got several")
        own = [t.module.name for t in TERMS if t.module is not None and t.on(settings)]
        if own:
            raise ValueError(
                f"stacked training does not train the loss terms' own modules ({', '.join(own)}):"
                " set their weights to 0 (e.g. lambda_patch_adv=0) or train the models one by one"
            )
        self.k = len(models)
        self.base = copy.deepcopy(models[0]).to("meta")  # the structure; weights come stacked
        self.params, self.buffers = stack_module_state(list(models))  # name -> (K, ...)
        self.supervisor = supervisor
        self.settings = settings
        self.optimizer = torch.optim.Adam(list(self.params.values()), lr=lr)
        self.steps = 0

    def _loss(
        self,
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        x1: torch.Tensor,
        x2: torch.Tensor,
    ) -> torch.Tensor:
        b = x1.shape[0]
        y1 = torch.zeros(b, dtype=torch.long, device=x1.device)
        out = functional_call(self.base, (params, buffers), (x1, x2))
        inputs = LossInputs(out, x1, x2, y1, torch.ones_like(y1), self.supervisor, step=self.steps)
        total, _ = kecae_loss(inputs, self.settings)
        return total

    def step(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """One optimiser step of every model on its own batch: ``x1``, ``x2`` (K, B, 1, S, S).
        Returns the K losses (detached, on the device: no host synchronisation)."""
        if x1.shape[0] != self.k or x2.shape[0] != self.k:
            raise ValueError(f"x1 and x2 need one batch per model: shape (K={self.k}, B, 1, S, S)")
        losses = vmap(self._loss, randomness="different")(self.params, self.buffers, x1, x2)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # each model's gradient is that of its own loss
        self.optimizer.step()
        self.steps += 1
        return losses.detach()

    def state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """Each model's weights and buffers, as ``KECAE.load_state_dict`` takes them."""
        merged = {**self.params, **self.buffers}
        return [{n: t[i].detach().clone() for n, t in merged.items()} for i in range(self.k)]
