"""DDP (kecae.training.distributed) on CPU with gloo: two processes against one that averages
their gradients, and a classifier trained under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kecae.training.config import (
    KECAETrainConfig,
)

REPO = Path(__file__).resolve().parents[2]


def emulate_ranks(tree: Path, supervisor: Path, init: dict, world_size: int, steps: int) -> dict:
    """One process doing what `world_size` DDP ranks do: each rank's slice of the global batch
    through the model (BatchNorm over the slice), gradients averaged, one Adam step."""
    from kecae.data import PairSampler, load_image_set
    from kecae.losses import LossInputs, kecae_loss
    from kecae.models.autoencoder import KECAE
    from kecae.models.presets import kecae_config
    from kecae.training.batches import PairBatches
    from kecae.training.supervisor import load_supervisor

    cfg = KECAETrainConfig(
        data=str(tree),
        supervisor=str(supervisor),
        preset="tiny",
        batch_size=8,
        num_pairs=64,
        seed=5,
    )
    kl0 = load_image_set(tree, size=32, split="train", grades=(0,), progress=False)
    kl2 = load_image_set(tree, size=32, split="train", grades=(2,), progress=False)
    sampler = PairSampler(len(kl0.images), len(kl2.images), cfg.num_pairs, seed=cfg.seed)
    model = KECAE(kecae_config("tiny"))
    model.load_state_dict(init)
    model.train()
    sup, _ = load_supervisor(cfg, 32, torch.device("cpu"))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ranks = [
        PairBatches(kl0, kl2, sampler, cfg.batch_size, cfg.seed, r, world_size)
        for r in range(world_size)
    ]
    for step in range(steps):
        grads = []
        for batches in ranks:
            x1, x2, _ = batches.batch(step)
            y1 = torch.zeros(len(x1), dtype=torch.long)
            total, _ = kecae_loss(LossInputs(model(x1, x2), x1, x2, y1, y1 + 1, sup), cfg)
            opt.zero_grad()
            total.backward()
            grads.append([p.grad.clone() for p in model.parameters()])
        for p, *gs in zip(model.parameters(), *grads):
            p.grad = torch.stack(gs).mean(0)
        opt.step()
    return model.state_dict()


@pytest.mark.slow
def test_ddp_gloo_two_processes(tree, supervisor, tmp_path):
    """torchrun, 2 CPU processes (gloo), global batch 8 = 2 x 4.

    Ranks must hold bit-identical parameters, equal to one process that averages the two
    slices' gradients (what DDP promises). A plain one-process run with batch 8 is NOT expected
    to match: BatchNorm normalises over each rank's 4 pairs (SyncBatchNorm exists only on GPU),
    and Adam's first steps are ~lr * sign(gradient), so small gradient differences show up whole.
    """
    worker = REPO / "tests" / "training" / "ddp_worker.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node=2",
            "--master-port=29533",
            str(worker),
            str(tree),
            str(supervisor),
            str(tmp_path / "ddp"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    load = lambda f: torch.load(tmp_path / "ddp" / f, weights_only=True)  # noqa: E731 (a one-line loader)
    init, r0, r1 = load("init0.pt"), load("final0.pt"), load("final1.pt")
    # BatchNorm running statistics are each rank's own (DDP broadcasts rank 0's buffers at the
    # start of every forward, and rank 0's are checkpointed): compare the parameters
    params = [n for n in r0 if "running_" not in n and "num_batches_tracked" not in n]
    assert len(params) > 10
    for name in params:
        assert torch.equal(init[name], load("init1.pt")[name]), f"initial {name} differs"
        assert torch.equal(r0[name], r1[name]), f"ranks differ in {name}"
    emulated = emulate_ranks(tree, supervisor, init, world_size=2, steps=3)
    for name in params:
        torch.testing.assert_close(r0[name], emulated[name], rtol=1e-4, atol=1e-6)
    moved = sum(float((r0[n] - init[n]).abs().sum()) for n in params)
    assert moved > 0  # three steps did change the weights
    assert (tmp_path / "ddp" / "run" / "log.csv").exists()  # rank 0 wrote the run folder


@pytest.mark.slow
def test_ddp_train_classifier_under_torchrun(tree, tmp_path):
    """`torchrun -m kecae train-classifier` with 2 gloo processes: rank 0 alone writes the run;
    with --adv-eps the attack runs on each rank's bare network, outside DDP's step."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = tmp_path / "clf"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node=2",
            "--master-port=29534",
            "-m",
            "kecae",
            "train-classifier",
            "--data",
            str(tree),
            "--out",
            str(out),
            "--arch",
            "small",
            "--image-size",
            "32",
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--adv-eps",
            "0.05",
            "--adv-steps",
            "2",
            "--no-progress",
            "--device",
            "cpu",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_test"] == 16 and 0 <= metrics["test_accuracy"] <= 1
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 3  # header + one row per epoch, written once (rank 0 only)
    assert r.stdout.count("test accuracy") == 2  # both ranks report the same tested model
