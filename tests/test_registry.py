"""The registry (kecae.registry): names listed without torch, every registered component loads,
and the models, the losses and the command line use the same lists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kecae import registry
from kecae.registry import CLASSIFIERS, LDA_MODES, PRESETS, RECON_LOSSES

REPO = Path(__file__).resolve().parents[1]


def test_names_are_listed_without_importing_torch():
    code = (
        "import sys; from kecae.registry import CLASSIFIERS, PRESETS; "
        "print(list(PRESETS), list(CLASSIFIERS), 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout
    assert out.strip() == (
        "['paper', 'cpu', 'cpu_fill', 'tiny'] "
        "['resnet18', 'vgg11', 'densenet201', 'siamese', 'small'] False"
    )


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_loads_and_builds_its_config(name):
    from kecae.models.autoencoder import KECAEConfig
    from kecae.models.presets import kecae_config

    config = PRESETS[name].load()()
    assert isinstance(config, KECAEConfig) and config == kecae_config(name)


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_every_classifier_loads_and_builds_its_model(name):
    from kecae.models.classifiers import Classifier, ClassifierConfig

    size = CLASSIFIERS[name].details["min_size"]
    model = CLASSIFIERS[name].load()(ClassifierConfig(arch=name, image_size=size))
    assert isinstance(model, Classifier) and model.config.arch == name


def test_cli_choices_and_checks_read_the_registry():
    from kecae.cli import build_parser
    from kecae.losses import lda_term

    sub = build_parser()._subparsers._group_actions[0].choices
    train = {a.dest: a for a in sub["train"]._actions}
    assert list(train["preset"].choices) == list(PRESETS)
    assert list(train["lda_mode"].choices) == list(LDA_MODES)
    assert list(train["recon"].choices) == list(RECON_LOSSES)
    assert list(train["joint_arch"].choices) == list(CLASSIFIERS)
    import torch

    with pytest.raises(ValueError, match=r"choose one of \['image', 'batch', 'log'\]"):
        lda_term(torch.zeros(1, 2), torch.ones(1, 2), mode="nope")


def test_unknown_names_and_plain_options():
    with pytest.raises(KeyError, match="unknown classifier 'nope'; choose one of"):
        CLASSIFIERS["nope"]
    with pytest.raises(TypeError, match="option name"):
        LDA_MODES["image"].load()
    assert "image: the paper's Eq. 7" in LDA_MODES.describe()
    assert list(registry.AUGMENTATIONS) == ["none", "classic", "warp", "mixup", "cutmix"]
