"""The classifier trainer (kecae.training.classifier_trainer): a finished run writes its
metrics and rebuilds, and refuses other settings."""

from __future__ import annotations

import json

from kecae.cli import main


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
