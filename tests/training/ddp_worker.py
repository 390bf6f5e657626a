"""Run by tests/training/test_distributed.py under torchrun (or alone): a few KECAE steps; every
rank saves its initial and final weights so the test can compare processes."""

import os
import sys
from pathlib import Path

import torch

from kecae.training.config import KECAETrainConfig
from kecae.training.kecae_trainer import train_kecae

data, supervisor, out = sys.argv[1:4]
out = Path(out)
out.mkdir(parents=True, exist_ok=True)
rank = int(os.environ.get("RANK", "0"))
torch.set_num_threads(1)


def save(event: str, model: torch.nn.Module) -> None:
    name = "init" if event == "start" else "final"
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, out / f"{name}{rank}.pt")


cfg = KECAETrainConfig(
    data=data,
    supervisor=supervisor,
    out=str(out / "run"),
    preset="tiny",
    max_steps=3,
    num_pairs=64,
    batch_size=8,
    seed=5,
    log_every=1,
    sample_every=100,
    ckpt_every=100,
    progress=False,
    device="cpu",
)
train_kecae(cfg, callback=save)
