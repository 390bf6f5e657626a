"""The classifier trainer (kecae.training.classifier_trainer): a finished run writes its
metrics and rebuilds, and refuses other settings."""

from __future__ import annotations

import json

import pytest

from kecae.cli import main
from kecae.errors import KecaeError


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
    rc = main(
        [
            "train-classifier",
            "--data",
            str(tree),
            "--out",
            str(run),
            "--arch",
            "siamese",
            "--image-size",
            "32",
            "--epochs",
            "4",
            "--batch-size",
            "16",
            "--lr",
            "3e-3",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "arch 'small' there, 'siamese' now" in err and "--fresh" in err
    assert len(err.strip().splitlines()) == 1
    assert (run / "metrics.json").read_bytes() == before


def _budget_cfg(tree, out, **kw):
    from kecae.training.config import ClassifierTrainConfig

    base = dict(
        data=str(tree),
        out=str(out),
        arch="small",
        image_size=32,
        batch_size=8,
        lr=3e-3,
        max_steps=6,
        eval_every=2,
        device="cpu",
        progress=False,
    )
    return ClassifierTrainConfig(**{**base, **kw})


def test_step_budget_mixes_generated_images_and_resumes_exactly(tree, tmp_path, monkeypatch):
    """A step budget trains exactly max_steps steps with validation every eval_every, keeps the
    best validation step, draws the mixed-in set into the batches, and a run cut after its
    second validation resumes to the same weights and metrics as an uninterrupted one."""
    import torch

    from kecae.checkpoint import load_checkpoint
    from kecae.training import classifier_trainer as ct
    from kecae.training.logs import read_log

    # the 'generated' set: the tree's own test images, drawn 1 per real image into each batch
    gen = tree / "test"
    whole = ct.train_classifier(_budget_cfg(tree, tmp_path / "a", mix_dirs=[str(gen)], mix_ratio=1))
    assert whole["steps"] == 6 and whole["n_train_real"] == 48 and whole["n_train_generated"] == 16
    rows = read_log(tmp_path / "a" / "log.csv").rows
    assert [r["step"] for r in rows] == [2, 4, 6]
    # epochs of the real pool: 4 real images per step, 48 real images
    assert [r["epoch"] for r in rows] == pytest.approx([8 / 48, 16 / 48, 24 / 48], rel=1e-5)
    acc = [r["val_accuracy"] for r in rows]
    assert whole["val"]["accuracy"] == pytest.approx(max(acc))
    assert whole["best_step"] == rows[acc.index(max(acc))]["step"]

    calls = {"n": 0}
    validate = ct._Loop._validate

    def cut(self, *args, **kwargs):
        out = validate(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return out

    cfg = _budget_cfg(tree, tmp_path / "b", mix_dirs=[str(gen)], mix_ratio=1)
    monkeypatch.setattr(ct._Loop, "_validate", cut)
    with pytest.raises(KeyboardInterrupt):
        ct.train_classifier(cfg)
    assert load_checkpoint(tmp_path / "b" / "last.pt", kind="classifier")["step"] == 3
    monkeypatch.setattr(ct._Loop, "_validate", validate)
    resumed = ct.train_classifier(cfg)
    assert resumed["test"] == whole["test"] and resumed["best_step"] == whole["best_step"]
    a = load_checkpoint(tmp_path / "a" / "last.pt", kind="classifier")["model"]
    b = load_checkpoint(tmp_path / "b" / "last.pt", kind="classifier")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in read_log(tmp_path / "b" / "log.csv").rows] == [2, 4, 6]


def test_generated_only_and_pretraining(tree, tmp_path):
    """real_grades keeps one real grade (the other from generated images, as the label check
    does); pre-training draws its batches from the generated set and selects only after it."""
    import shutil

    from kecae.training import classifier_trainer as ct
    from kecae.training.logs import read_log

    gen = tree / "test"
    kl2 = tmp_path / "kl2"
    shutil.copytree(gen / "2", kl2 / "2")  # a set of one grade, as one exchange direction gives
    one = ct.train_classifier(
        _budget_cfg(tree, tmp_path / "one", real_grades=[0], augment_dirs=[str(kl2)])
    )
    assert one["n_train_real"] == 24 and one["n_train_generated"] == 8
    pre = ct.train_classifier(
        _budget_cfg(tree, tmp_path / "pre", mix_dirs=[str(gen)], pretrain_steps=4)
    )
    rows = read_log(tmp_path / "pre" / "log.csv").rows
    assert pre["best_step"] == 6 and [r["epoch"] for r in rows] == pytest.approx(
        [0, 0, 16 / 48], rel=1e-5
    )
    with pytest.raises(KecaeError, match="no training images"):
        ct.train_classifier(_budget_cfg(tree, tmp_path / "none", real_grades=[]))


def test_pgd_attack_stays_in_its_ball_and_raises_the_loss():
    import torch
    import torch.nn.functional as F

    from kecae.training.classifier_trainer import pgd_attack

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    x = torch.rand(8, 1, 8, 8) * 2 - 1
    x[0, 0, 0, 0] = 1.0  # a pixel at the range's edge stays inside it
    y = torch.tensor([0, 1] * 4)
    adv = pgd_attack(net, x, y, eps=0.1, steps=5, gen=torch.Generator().manual_seed(1))
    assert adv.shape == x.shape and not adv.requires_grad
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= -1 and adv.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(net(adv), y) > F.cross_entropy(net(x), y) + 0.05
    assert all(p.grad is None for p in net.parameters())  # the attack trains nothing
    # a linear model's loss rises fastest along the sign of its weights: PGD reaches the corner
    w = net[1].weight.detach()
    toward = torch.where(y[:, None] == 0, w[1] - w[0], w[0] - w[1]).sign().view(8, 1, 8, 8)
    inside = (x - 0.1 > -1) & (x + 0.1 < 1)
    assert torch.allclose((adv - x)[inside], 0.1 * toward[inside], atol=1e-5)


def test_adversarial_training_option(tree, tmp_path, capsys):
    """--adv-eps trains on the attacked batches and is recorded; a value out of range or with
    mixup is refused at parse time."""
    out = tmp_path / "robust"
    args = ["train-classifier", "--data", str(tree), "--out", str(out), "--arch", "small"]
    args += ["--image-size", "32", "--epochs", "1", "--batch-size", "16", "--no-progress"]
    assert main([*args, "--adv-eps", "0.05", "--adv-steps", "2"]) == 0
    import yaml

    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["adv_eps"] == 0.05 and saved["adv_steps"] == 2
    for bad, says in (
        (["--adv-eps", "1.5"], "--adv-eps 1.5: must be"),
        (["--adv-eps", "0.05", "--adv-steps", "0"], "--adv-steps 0: must be"),
        (["--adv-eps", "0.05", "--augment", "mixup"], "one label per image"),
    ):
        assert main([*args[:4], str(tmp_path / "other"), *args[5:], *bad]) == 2
        assert says in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["classic", "warp"])
def test_augmentation_reaches_every_batch(tree, tmp_path, monkeypatch, kind):
    """--augment classic / warp runs its function on every training batch (and on nothing else:
    the validation images are the data's own)."""
    from kecae.training import augment
    from kecae.training import classifier_trainer as ct

    seen = []
    real = {"classic": augment.classic_augment, "warp": augment.warp_augment}[kind]

    def spy(x, generator):
        seen.append(x.shape[0])
        return real(x, generator)

    monkeypatch.setattr(ct, f"{kind}_augment", spy)
    out = ct.train_classifier(_budget_cfg(tree, tmp_path / kind, augment=kind))
    assert out["steps"] == 6 and seen == [8] * 6
