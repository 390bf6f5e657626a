"""Training loops: classifier end to end, KECAE resume == uninterrupted, NaN stop, frozen
supervisor, config round trips, DDP on CPU with gloo (2 processes) against one process."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kecae.cli import main
from kecae.training.checkpoint import load_checkpoint
from kecae.training.config import ClassifierTrainConfig, KECAETrainConfig, load_yaml, save_yaml
from kecae.utils import KecaeError

REPO = Path(__file__).resolve().parents[1]


def write_learnable_tree(root: Path, counts: dict[str, int], size: int = 40, seed: int = 0) -> Path:
    """KL-2 images carry a dark horizontal band (a narrow 'joint space'), KL-0 a wide bright gap."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for split, n in counts.items():
        for grade in (0, 2):
            folder = root / split / str(grade)
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                half = 2 if grade == 2 else 5
                img = 120 + 30 * np.sin(xx / (3 + rng.random() * 3)) + rng.normal(0, 12, (size, size))
                img[np.abs(yy - size // 2) < half] = 30
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{split}{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return write_learnable_tree(tmp_path_factory.mktemp("data"), {"train": 24, "val": 8, "test": 8})


@pytest.fixture(scope="module")
def supervisor(tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sup")
    rc = main(["train-classifier", "--data", str(tree), "--out", str(out), "--arch", "small",
               "--image-size", "32", "--epochs", "4", "--batch-size", "16", "--lr", "3e-3",
               "--no-progress"])
    assert rc == 0
    return out / "best.pt"


def kecae_args(tree: Path, sup: Path, out: Path, steps: int) -> list[str]:
    return ["train", "--data", str(tree), "--out", str(out), "--supervisor", str(sup),
            "--preset", "tiny", "--max-steps", str(steps), "--num-pairs", "200",
            "--batch-size", "8", "--log-every", "2", "--sample-every", "3", "--ckpt-every", "100",
            "--seed", "3", "--no-progress", "--device", "cpu"]


def test_classifier_run_writes_metrics_and_rebuilds(supervisor, tree):
    run = supervisor.parent
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_test"] == 16 and metrics["n_train_real"] == 48
    assert set(metrics["test"]) >= {"accuracy", "precision", "recall", "auc", "confusion"}
    assert sum(map(sum, metrics["test"]["confusion"])) == 16
    assert metrics["val"]["accuracy"] >= 0.75  # the band is easy to see
    from kecae.inference import load_classifier

    model, ckpt = load_classifier(str(supervisor))
    assert not model.training and ckpt["model_config"]["arch"] == "small"
    rows = (run / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,train_loss") and len(rows) >= 2
    # a finished run folder is not trained again: same metrics back (its config.yaml gives the
    # settings back; the number of epochs is a stopping criterion and may differ)
    again = main(["train-classifier", "--config", str(run / "config.yaml"), "--epochs", "9"])
    assert again == 0 and json.loads((run / "metrics.json").read_text()) == metrics


def test_finished_classifier_refuses_other_arch(supervisor, tree, capsys):
    """Another --arch on a finished folder would print the old model's metrics under the new
    name: refused, with every difference and the way out."""
    run = supervisor.parent
    before = (run / "metrics.json").read_bytes()
    rc = main(["train-classifier", "--data", str(tree), "--out", str(run), "--arch", "siamese",
               "--image-size", "32", "--epochs", "4", "--batch-size", "16", "--lr", "3e-3",
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "arch 'small' there, 'siamese' now" in err and "--fresh" in err
    assert len(err.strip().splitlines()) == 1
    assert (run / "metrics.json").read_bytes() == before


def test_kecae_resume_equals_uninterrupted(tree, supervisor, tmp_path):
    assert main(kecae_args(tree, supervisor, tmp_path / "straight", 6)) == 0
    assert main(kecae_args(tree, supervisor, tmp_path / "split", 3)) == 0
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["step"] == 3
    assert main(kecae_args(tree, supervisor, tmp_path / "split", 6)) == 0  # resumes at 3
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 6
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    # the resumed log continues the first part's rows (the first part also logged its last step)
    steps = [int(r.split(",")[0]) for r in (tmp_path / "split" / "log.csv").read_text().splitlines()[1:]]
    assert steps == [2, 3, 4, 6]
    assert sorted(p.name for p in (tmp_path / "split" / "samples").iterdir()) == [
        "step_0000003.png", "step_0000006.png"]
    summary = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert summary["first_terms"]["step"] == 2 and summary["last_terms"]["step"] == 6


def test_kecae_no_resume_refuses_used_folder(tree, supervisor, tmp_path):
    assert main(kecae_args(tree, supervisor, tmp_path / "r", 2)) == 0
    with pytest.raises(KecaeError, match="--resume"):
        from kecae.training.kecae_trainer import train_kecae

        train_kecae(KECAETrainConfig(data=str(tree), out=str(tmp_path / "r"), supervisor=str(supervisor),
                                     preset="tiny", max_steps=4, num_pairs=100, batch_size=8,
                                     resume=False, progress=False, device="cpu"))


def test_kecae_resume_may_change_stopping_and_logging_and_fresh_starts_a_new_folder(
        tree, supervisor, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(kecae_args(tree, supervisor, out, 2)) == 0
    # more steps, other logging cadence, other device name: a continuation
    assert main([*kecae_args(tree, supervisor, out, 3), "--log-every", "1", "--ckpt-every", "1",
                 "--sample-every", "5", "--device", "auto"]) == 0
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 3
    # another learning rate: refused; with --fresh the run starts in r-2, r is left as it is
    before = (out / "checkpoints" / "last.pt").read_bytes()
    capsys.readouterr()
    assert main([*kecae_args(tree, supervisor, out, 2), "--lr", "5e-4"]) == 2
    assert "lr 0.0001 there, 0.0005 now" in capsys.readouterr().err
    assert main([*kecae_args(tree, supervisor, out, 2), "--lr", "5e-4", "--fresh"]) == 0
    assert (out / "checkpoints" / "last.pt").read_bytes() == before
    fresh = load_checkpoint(tmp_path / "r-2" / "checkpoints" / "last.pt")
    assert fresh["step"] == 2 and fresh["train_config"]["lr"] == 5e-4
    assert "KECAE:" in capsys.readouterr().out


def test_checkpoint_paths_are_stored_relative_inside_the_run_folder(tmp_path):
    """Inside a run root (a folder with run.yaml) paths are stored relative to the checkpoint's
    folder and read back absolute; outside it they stay absolute."""
    from kecae.training.checkpoint import save_checkpoint

    (tmp_path / "run.yaml").write_text("data: data\n")
    cfg = {"data": str(tmp_path / "data"), "supervisor": str(tmp_path / "sup" / "best.pt"),
           "out": str(tmp_path / "kecae"), "cache_dir": None, "augment_dirs": ["/elsewhere/gen"]}
    path = save_checkpoint(tmp_path / "kecae" / "checkpoints" / "last.pt",
                           {"kind": "kecae", "model": {}, "model_config": {}, "train_config": cfg})
    raw = torch.load(path, weights_only=True)["train_config"]
    assert raw["data"] == "../../data" and raw["out"] == ".." and raw["cache_dir"] is None
    assert raw["supervisor"] == "../../sup/best.pt" and raw["augment_dirs"] == ["/elsewhere/gen"]
    assert load_checkpoint(path)["train_config"] == cfg


def test_nan_stops_with_message_and_keeps_checkpoint(tree, supervisor, tmp_path, monkeypatch, capsys):
    out = tmp_path / "nan"
    assert main(kecae_args(tree, supervisor, out, 2)) == 0
    before = load_checkpoint(out / "checkpoints" / "last.pt")
    import kecae.losses

    real = kecae.losses.hybrid_loss

    def poisoned(*args, **kwargs):
        total, terms = real(*args, **kwargs)
        return total * float("nan"), terms

    monkeypatch.setattr(kecae.losses, "hybrid_loss", poisoned)
    assert main(kecae_args(tree, supervisor, out, 5)) == 2
    err = capsys.readouterr().err
    assert "nan at step 2" in err and "last.pt" in err
    after = load_checkpoint(out / "checkpoints" / "last.pt")
    assert after["step"] == before["step"] == 2
    for name, tensor in before["model"].items():
        assert torch.equal(tensor, after["model"][name])


def test_frozen_supervisor_is_eval_and_gradient_free(supervisor, tree):
    from kecae.training.kecae_trainer import load_supervisor

    cfg = KECAETrainConfig(data=str(tree), supervisor=str(supervisor), preset="tiny")
    sup, _ = load_supervisor(cfg, 32, torch.device("cpu"))
    assert not sup.training and not any(p.requires_grad for p in sup.parameters())
    with pytest.raises(KecaeError, match="--image-size 64"):
        load_supervisor(cfg, 64, torch.device("cpu"))
    with pytest.raises(KecaeError, match="--supervisor"):
        load_supervisor(KECAETrainConfig(data=str(tree)), 32, torch.device("cpu"))


def test_joint_mode_trains_supervisor_too(tree, tmp_path):
    out = tmp_path / "joint"
    rc = main(["train", "--data", str(tree), "--out", str(out), "--supervisor-mode", "joint",
               "--joint-arch", "small", "--preset", "tiny", "--max-steps", "2", "--num-pairs", "64",
               "--batch-size", "8", "--log-every", "1", "--no-progress", "--device", "cpu"])
    assert rc == 0
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert "supervisor" in ckpt
    assert "sup_real" in (out / "log.csv").read_text().splitlines()[0]
    first = next(csv.DictReader(open(out / "log.csv")))
    assert float(first["sup_real"]) > 0


def test_config_yaml_round_trip_and_cli_precedence(tmp_path):
    cfg = KECAETrainConfig(data=str(tmp_path / "d"), out=str(tmp_path / "run"), lambda_sup=0.5,
                           model={"width": 0.5})
    save_yaml(cfg, tmp_path / "c.yaml")
    assert load_yaml(KECAETrainConfig, tmp_path / "c.yaml") == cfg
    (tmp_path / "bad.yaml").write_text("lambda_supp: 1\n")
    with pytest.raises(KecaeError, match="lambda_supp"):
        load_yaml(KECAETrainConfig, tmp_path / "bad.yaml")
    from kecae.cli import build_parser
    from kecae.configargs import dataclass_from_args

    args = build_parser().parse_args(["train", "--config", str(tmp_path / "c.yaml"),
                                      "--lambda-sup", "0.25", "--model", "image_size=64"])
    merged = dataclass_from_args(KECAETrainConfig, args)
    assert merged.lambda_sup == 0.25 and merged.data == str(tmp_path / "d")
    assert merged.model == {"width": 0.5, "image_size": 64}
    assert ClassifierTrainConfig().arch == "siamese"


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    from kecae.training.checkpoint import load_checkpoint as load

    with pytest.raises(KecaeError, match="does not exist"):
        load(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(KecaeError, match="cannot read checkpoint"):
        load(tmp_path / "junk.pt")


def emulate_ranks(tree: Path, supervisor: Path, init: dict, world_size: int, steps: int) -> dict:
    """One process doing what `world_size` DDP ranks do: each rank's slice of the global batch
    through the model (BatchNorm over the slice), gradients averaged, one Adam step."""
    from kecae.data import PairSampler, load_image_set
    from kecae.losses import hybrid_loss
    from kecae.models.kecae import KECAE
    from kecae.models.presets import kecae_config
    from kecae.training.kecae_trainer import PairBatches, load_supervisor

    cfg = KECAETrainConfig(data=str(tree), supervisor=str(supervisor), preset="tiny", batch_size=8,
                           num_pairs=64, seed=5)
    kl0 = load_image_set(tree, size=32, split="train", grades=(0,), progress=False)
    kl2 = load_image_set(tree, size=32, split="train", grades=(2,), progress=False)
    sampler = PairSampler(len(kl0.images), len(kl2.images), cfg.num_pairs, seed=cfg.seed)
    model = KECAE(kecae_config("tiny"))
    model.load_state_dict(init)
    model.train()
    sup, _ = load_supervisor(cfg, 32, torch.device("cpu"))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ranks = [PairBatches(kl0, kl2, sampler, cfg.batch_size, cfg.seed, r, world_size)
             for r in range(world_size)]
    for step in range(steps):
        grads = []
        for batches in ranks:
            x1, x2, _ = batches.batch(step)
            y1 = torch.zeros(len(x1), dtype=torch.long)
            total, _ = hybrid_loss(model(x1, x2), x1, x2, y1, y1 + 1, sup)
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
    worker = REPO / "tests" / "ddp_worker.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
                          "--master-port=29533", str(worker), str(tree), str(supervisor),
                          str(tmp_path / "ddp")], env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    load = lambda f: torch.load(tmp_path / "ddp" / f, weights_only=True)  # noqa: E731
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


def test_cli_choice_names_match_registries():
    from kecae.models import CLASSIFIERS, PRESETS
    from kecae.names import CLASSIFIER_NAMES, PRESET_NAMES

    assert sorted(CLASSIFIERS) == sorted(CLASSIFIER_NAMES)
    assert sorted(PRESETS) == sorted(PRESET_NAMES)


@pytest.mark.slow
def test_ddp_train_classifier_under_torchrun(tree, tmp_path):
    """`torchrun -m kecae train-classifier` with 2 gloo processes: rank 0 alone writes the run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = tmp_path / "clf"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
                        "--master-port=29534", "-m", "kecae", "train-classifier", "--data", str(tree),
                        "--out", str(out), "--arch", "small", "--image-size", "32", "--epochs", "2",
                        "--batch-size", "16", "--no-progress", "--device", "cpu"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_test"] == 16 and 0 <= metrics["test_accuracy"] <= 1
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 3  # header + one row per epoch, written once (rank 0 only)
    assert r.stdout.count("test accuracy") == 2  # both ranks report the same tested model
