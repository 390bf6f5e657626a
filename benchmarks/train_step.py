"""One KECAE training step as ``kecae train`` runs it, built for the benchmarks that time or profile
it (bench_cpu_threads.py, profile_cpu_step.py): the preset's model and loss settings, a frozen
siamese supervisor, Adam, random images in [-1, 1], the loss total read back once per step as
the trainer does (its finite check).

    from train_step import TrainStep
    step = TrainStep("cpu", batch=32)
    step()  # one optimiser step; returns the loss
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from kecae.losses import LossInputs, kecae_loss
from kecae.models.autoencoder import KECAE, KECAEConfig
from kecae.models.classifiers import build_classifier
from kecae.models.fold import fold_batchnorm
from kecae.models.presets import kecae_config, preset_training
from kecae.training.config import LossSettings
from kecae.training.loss_modules import (
    build_modules,
    own_optimizers,
    shared_parameters,
    update_modules,
)


class TrainStep:
    """A callable training step of ``preset`` at ``batch`` pairs on ``device`` (``config`` and
    ``settings`` replace the preset's model and loss settings; ``fold=False``: the supervisor's
    batch norms kept as they are, as before kecae folded them; ``compile_mode``: torch.compile
    the model and the supervisor in that mode; ``fused_adam``: Adam's fused implementation;
    ``supervisors``: frozen supervisors whose J_SUP is averaged, default the preset's)."""

    def __init__(
        self,
        preset: str,
        batch: int,
        device: str = "cpu",
        channels_last: bool = False,
        bf16: bool = False,
        read_loss: bool = True,
        seed: int = 0,
        config: KECAEConfig | None = None,
        settings: LossSettings | None = None,
        fold: bool = True,
        compile_mode: str | None = None,
        fused_adam: bool = False,
        supervisors: int | None = None,
    ) -> None:
        torch.manual_seed(seed)
        self.config = config or kecae_config(preset)
        self.settings = settings or LossSettings.pick(preset_training(preset))
        self.device = torch.device(device)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = KECAE(self.config).to(self.device, memory_format=fmt).train()
        sup = build_classifier("siamese", self.config.image_size).eval().requires_grad_(False)
        sup = fold_batchnorm(sup) if fold else sup  # as kecae train does with a frozen one
        self.supervisor = sup.to(self.device, memory_format=fmt)
        s = self.config.image_size
        gen = torch.Generator().manual_seed(seed)
        self.x1 = (torch.rand(batch, 1, s, s, generator=gen) * 2 - 1).to(
            self.device, memory_format=fmt
        )
        self.x2 = (torch.rand(batch, 1, s, s, generator=gen) * 2 - 1).to(
            self.device, memory_format=fmt
        )
        self.y1 = torch.zeros(batch, dtype=torch.long, device=self.device)
        self.y2 = torch.ones_like(self.y1)
        # the loss terms' modules (the cpu preset's patch discriminator), as kecae train builds them
        self.modules = {
            n: m.to(self.device) for n, m in build_modules(self.settings, self.config).items()
        }
        # fused: one kernel for the whole update (CUDA and CPU); else torch's default
        self.optimizer = torch.optim.Adam(
            [*self.model.parameters(), *shared_parameters(self.modules)],
            lr=1e-4,
            **({"fused": True} if fused_adam else {}),
        )
        self.module_optimizers = own_optimizers(self.modules)
        # a supervisor ensemble's other members, built last as kecae train builds them
        k = supervisors or int(preset_training(preset).get("supervisors", 1))
        self.members = [
            fold_batchnorm(
                build_classifier("siamese", self.config.image_size).eval().requires_grad_(False)
            ).to(self.device, memory_format=fmt)
            for _ in range(k - 1)
        ]
        # torch.compile of the model and the supervisor ("default", "max-autotune", ...)
        self.net = torch.compile(self.model, mode=compile_mode) if compile_mode else self.model
        self.sup_net = (
            torch.compile(self.supervisor, mode=compile_mode) if compile_mode else self.supervisor
        )
        self.step = 0
        self.batch = batch
        self.bf16 = bf16  # autocast of the forward and the loss (the loss terms keep fp32 stats)
        self.read_loss = read_loss  # the trainer's per-step finite check reads the loss back

    def __call__(self) -> float:
        gen = torch.Generator().manual_seed(self.step)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            inputs = LossInputs(
                self.net(self.x1, self.x2),
                self.x1,
                self.x2,
                self.y1,
                self.y2,
                self.sup_net,
                self.model,
                gen,
                self.step,
                modules=self.modules,
                members=self.members,
            )
            total, _ = kecae_loss(inputs, self.settings)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        value = float(total.detach()) if self.read_loss else float("nan")
        self.optimizer.step()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            update_modules(self.module_optimizers, inputs, self.settings)  # the discriminator
        self.step += 1
        return value
