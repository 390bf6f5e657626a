"""KECAE's supervisor: a trained classifier's checkpoint, checked against KECAE's grade pair and
input size, frozen (eval mode, batch norm folded, no weight gradients: gradients flow *through*
it to the generator), or in joint mode a fresh classifier trained along with KECAE."""

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


def load_supervisor(
    cfg: KECAETrainConfig, image_size: int, device: torch.device
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The supervisor: frozen (eval mode, no weight gradients) or trainable in joint mode."""
    if cfg.supervisor_mode not in SUPERVISOR_MODES:
        raise KecaeError(
            f"--supervisor-mode must be 'frozen' or 'joint', not {cfg.supervisor_mode!r}"
        )
    if cfg.supervisor:
        ckpt = load_checkpoint(cfg.supervisor, kind="classifier")
        model_config = dict(ckpt["model_config"])
        if (told := grades_of(ckpt.get("train_config"))) != task_grades(cfg.grades):
            low, high = task_grades(cfg.grades)
            raise KecaeError(
                f"the supervisor {cfg.supervisor} tells KL-{told[0]} from KL-{told[1]} but KECAE "
                f"exchanges KL-{low} and KL-{high}: train the supervisor with --grades {low} {high}"
            )
        if (trained_at := model_config.get("image_size")) != image_size:
            raise KecaeError(
                f"the supervisor {cfg.supervisor} was trained at {trained_at} px "
                f"but the KECAE preset uses {image_size} px: train the supervisor "
                f"with --image-size {image_size}"
            )
        sup = build_from_config(
            cfg.supervisor, lambda: build_classifier(**model_config), "classifier"
        )
        load_weights(sup, ckpt["model"], cfg.supervisor)
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
        # eval mode: BN running statistics and dropout are fixed; the generator's images cannot
        # shift them. Gradients still flow *through* the network to the generator.
        sup.eval().requires_grad_(False)
        sup = fold_batchnorm(sup)  # same function, no batch-norm work at every step
    else:
        sup.train()
    return sup, model_config
