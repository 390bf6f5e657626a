"""KECAE's supervisor: a trained classifier's checkpoint, checked against KECAE's grade pair and
input size, frozen (eval mode, batch norm folded, no weight gradients: gradients flow *through*
it to the generator), or in joint mode a fresh classifier trained along with KECAE.

With ``--supervisors K`` > 1 the supervisor is an ensemble: ``--supervisor`` is member 0 (the
supervisor of a single-supervisor run, and the one the evaluation uses) and
``--supervisor-members`` the K - 1 others, each loaded and frozen the same way; J_SUP is the
mean of their losses (:func:`kecae.supervision_losses.ensemble_supervision`)."""

from __future__ import annotations

from typing import Any

import torch

from kecae.checkpoint import load_checkpoint, load_weights
from kecae.data.catalog import grades_of, task_grades
from kecae.errors import KecaeError
from kecae.inference import build_from_config
from kecae.models.classifiers import build_classifier
from kecae.models.fold import fold_batchnorm
from kecae.registry import SUPERVISOR_MODES
from kecae.training.config import KECAETrainConfig


def _from_checkpoint(
    path: str, cfg: KECAETrainConfig, image_size: int
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A classifier checkpoint that tells KECAE's two grades apart at its input size."""
    ckpt = load_checkpoint(path, kind="classifier")
    model_config = dict(ckpt["model_config"])
    if (told := grades_of(ckpt.get("train_config"))) != task_grades(cfg.grades):
        low, high = task_grades(cfg.grades)
        raise KecaeError(
            f"the supervisor {path} tells KL-{told[0]} from KL-{told[1]} but KECAE "
            f"exchanges KL-{low} and KL-{high}: train the supervisor with --grades {low} {high}"
        )
    if (trained_at := model_config.get("image_size")) != image_size:
        raise KecaeError(
            f"the supervisor {path} was trained at {trained_at} px "
            f"but the KECAE preset uses {image_size} px: train the supervisor "
            f"with --image-size {image_size}"
        )
    sup = build_from_config(path, lambda: build_classifier(**model_config), "classifier")
    load_weights(sup, ckpt["model"], path)
    return sup, model_config


def _frozen(sup: torch.nn.Module) -> torch.nn.Module:
    # eval mode: BN running statistics and dropout are fixed; the generator's images cannot
    # shift them. Gradients still flow *through* the network to the generator.
    sup.eval().requires_grad_(False)
    return fold_batchnorm(sup)  # same function, no batch-norm work at every step


def load_supervisor(
    cfg: KECAETrainConfig, image_size: int, device: torch.device
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The supervisor (member 0 of an ensemble): frozen (eval mode, no weight gradients) or
    trainable in joint mode."""
    if cfg.supervisor_mode not in SUPERVISOR_MODES:
        raise KecaeError(
            f"--supervisor-mode must be 'frozen' or 'joint', not {cfg.supervisor_mode!r}"
        )
    if cfg.supervisor:
        sup, model_config = _from_checkpoint(cfg.supervisor, cfg, image_size)
    elif cfg.supervisor_mode == "joint":
        model_config = {"arch": cfg.joint_arch, "image_size": image_size, "num_classes": 2}
        sup = build_classifier(**model_config)
    else:
        raise KecaeError(
            "a frozen supervisor needs --supervisor CKPT (train one with "
            "`kecae train-classifier`), or use --supervisor-mode joint"
        )
    sup = sup.to(device)
    if cfg.supervisor_mode == "frozen":
        sup = _frozen(sup)
    else:
        sup.train()
    return sup, model_config


def load_members(
    cfg: KECAETrainConfig, image_size: int, device: torch.device
) -> list[torch.nn.Module]:
    """Members 1..K-1 of the supervisor ensemble (``--supervisor-members``), each checked and
    frozen like member 0; empty with one supervisor."""
    return [
        _frozen(_from_checkpoint(path, cfg, image_size)[0].to(device))
        for path in cfg.supervisor_members
    ]
