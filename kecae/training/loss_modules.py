"""The modules the loss's terms train along with KECAE (:class:`kecae.losses.TrainedModule`):
built for the terms that are on, trained in the model's Adam or by an optimiser of their own,
saved in the checkpoints under their names. The trainer goes through these functions only, so a
term with a new module needs no change to the training loop."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

from kecae import losses
from kecae.losses import LossInputs, Term, TrainedModule
from kecae.models.autoencoder import KECAEConfig
from kecae.training.config import LossSettings


def _table(terms: Sequence[Term] | None) -> Sequence[Term]:
    return losses.TERMS if terms is None else terms  # the table as it is now (tests swap it)


def _specs(terms: Sequence[Term] | None) -> dict[str, TrainedModule]:
    return {t.module.name: t.module for t in _table(terms) if t.module is not None}


def build_modules(
    settings: LossSettings, config: KECAEConfig, terms: Sequence[Term] | None = None
) -> dict[str, nn.Module]:
    """The modules of the terms that are on, by name, built in table order (each draws its
    initial weights from the seeded generator)."""
    return {
        term.module.name: term.module.build(config)
        for term in _table(terms)
        if term.module is not None and term.on(settings)
    }


def shared_parameters(
    modules: Mapping[str, nn.Module], terms: Sequence[Term] | None = None
) -> Iterator[nn.Parameter]:
    """The parameters of the modules that train in the model's Adam."""
    specs = _specs(terms)
    for name, module in modules.items():
        if specs[name].optimizer is None:
            yield from module.parameters()


def own_optimizers(
    modules: Mapping[str, nn.Module], terms: Sequence[Term] | None = None
) -> dict[str, torch.optim.Optimizer]:
    """The optimiser of each module that has its own (the others train in the model's Adam)."""
    specs = _specs(terms)
    return {
        name: make(module.parameters())
        for name, module in modules.items()
        if (make := specs[name].optimizer) is not None
    }


def update_modules(
    optimizers: Mapping[str, torch.optim.Optimizer],
    inputs: LossInputs,
    settings: LossSettings,
    terms: Sequence[Term] | None = None,
) -> dict[str, torch.Tensor]:
    """``settings.module_updates`` steps of each module with its own optimiser (after the model's
    step, on the same batch), each minimising the sum of its update's losses; the values the
    last step logs (detached). Nothing when none has one."""
    specs = _specs(terms)
    logged: dict[str, torch.Tensor] = {}
    for name, optimizer in optimizers.items():
        update = specs[name].update
        if update is None:
            raise ValueError(f"the module {name!r} has an optimiser but no update step")
        for _ in range(settings.module_updates):
            values = update(inputs.modules[name], inputs, settings)
            optimizer.zero_grad(set_to_none=True)
            torch.stack(list(values.values())).sum().backward()
            optimizer.step()
        logged.update({k: v.detach() for k, v in values.items()})
    return logged
