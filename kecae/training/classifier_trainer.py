"""Training of a KL-0 vs KL-2 classifier: the KECAE supervisor, the independent judge, and the
downstream models of the augmentation study. Train split to fit, validation to select (early
stopping), test split reported once with the selected weights."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kecae import CLASS_GRADES
from kecae.checkpoint import load_checkpoint, load_weights, resume_from, rng_state, save_checkpoint
from kecae.config import check_values, load_yaml, save_yaml, to_dict
from kecae.device import seed_everything
from kecae.errors import KecaeError
from kecae.files import atomic_write_text
from kecae.inference import classify
from kecae.models.classifiers import Classifier
from kecae.runfolder import (
    ClassifierRun,
    check_resumable,
    fresh_folder,
    prepare_output,
    record_data_problems,
)
from kecae.training.augment import classic_augment, mix_batch, mixed_cross_entropy
from kecae.training.batches import ArrayBatcher, epoch_order
from kecae.training.config import CLASSIFIER_MAY_CHANGE, ClassifierTrainConfig
from kecae.training.distributed import (
    all_reduce_mean,
    barrier,
    broadcast_flag,
    init_distributed,
    wrap_ddp,
)
from kecae.training.logs import RunLogger
from kecae.training.step import autocast, check_finite, memory_format

log = logging.getLogger(__name__)

#: Augmentations that mix two images of a batch (their loss weighs both labels).
MIXING = ("mixup", "cutmix")


def _labels(grades: np.ndarray) -> np.ndarray:
    lookup = {g: i for i, g in enumerate(CLASS_GRADES)}
    return np.array([lookup[int(g)] for g in grades], dtype=np.int64)


def load_splits(cfg: ClassifierTrainConfig, progress: bool) -> dict[str, Any]:
    """Train (+ generated sets), val and test image sets at the classifier's size."""
    from kecae.data import load_image_set

    def load(source: str, split: str | None, regex: str | None = None):
        return load_image_set(
            source,
            size=cfg.image_size,
            split=split,
            grades=CLASS_GRADES,
            cache_dir=cfg.cache_dir,
            progress=progress,
            patient_regex=regex,
        )

    sets = {split: load(cfg.data, split, cfg.patient_regex) for split in ("train", "val", "test")}
    extra = [load(d, None) for d in cfg.augment_dirs]
    arrays = [sets["train"].images] + [e.images for e in extra]
    labels = [_labels(sets["train"].grades)] + [_labels(e.grades) for e in extra]
    if cfg.max_train and cfg.max_train < len(sets["train"].images):
        keep = np.sort(
            np.random.default_rng(cfg.seed).choice(
                len(sets["train"].images), cfg.max_train, replace=False
            )
        )
        arrays[0], labels[0] = sets["train"].images[keep], labels[0][keep]
    return {
        "train": ArrayBatcher(arrays, labels),
        "val": sets["val"],
        "test": sets["test"],
        "n_real_train": len(labels[0]),
        "n_generated": int(sum(len(y) for y in labels[1:])),
    }


def evaluate_split(
    model: Classifier, image_set: Any, device: torch.device, amp: bool = False
) -> dict[str, Any]:
    """Classification metrics and the cross-entropy of ``model`` on one split."""
    from kecae.evaluation.metrics import classification_metrics

    y = _labels(image_set.grades)
    model.eval()
    p = classify(model, image_set.images, device=device, amp=amp)[:, 1]
    metrics = classification_metrics(y, (p >= 0.5).astype(int), p)
    eps = 1e-7
    metrics["loss"] = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
    return metrics


def train_classifier(cfg: ClassifierTrainConfig) -> dict[str, Any]:
    """Train, select on validation, test once; returns (and writes) ``metrics.json``.

    A finished run folder made with the same settings returns its metrics; an interrupted one
    resumes. A folder made with other settings (another --arch, lr, data, ...) is refused, or,
    with ``fresh``, left alone while the run starts in a new folder.
    """
    from kecae.data.check import require_clean_data
    from kecae.models.classifiers import ClassifierConfig, build_classifier

    check_values(cfg)
    dist_info, device = init_distributed(cfg.device)
    main = dist_info.is_main
    if cfg.batch_size % dist_info.world_size:
        raise KecaeError(
            f"--batch-size {cfg.batch_size} must be divisible by the number of "
            f"processes ({dist_info.world_size})"
        )
    try:
        model_config = dataclasses.asdict(
            ClassifierConfig(
                **{**cfg.model, "arch": cfg.arch, "image_size": cfg.image_size, "num_classes": 2}
            )
        )
    except (ValueError, TypeError) as exc:
        raise KecaeError(str(exc)) from exc

    # the run folder: this one (same settings, or unused), or with --fresh a new one
    run = ClassifierRun(Path(cfg.out))
    if cfg.fresh and any(p.exists() for p in (run.config, run.last, run.best)):
        cfg = dataclasses.replace(cfg, out=str(fresh_folder(run.folder)))
        barrier(dist_info)  # every rank has chosen the same folder before rank 0 creates it
        if main:
            log.info("%s is used: training afresh in %s", run.folder, cfg.out)
        run = ClassifierRun(Path(cfg.out))
    out, last_path, best_path = run.folder, run.last, run.best
    if run.finished:
        old = (
            to_dict(load_yaml(ClassifierTrainConfig, run.config))
            if run.config.is_file()
            else load_checkpoint(best_path, kind="classifier").get("train_config", {})
        )
        check_resumable(out, old, cfg, CLASSIFIER_MAY_CHANGE)
        if main:
            log.info("%s is complete; delete it to train again", out)
        return {**json.loads(run.metrics.read_text()), "out": str(out)}
    last = load_checkpoint(last_path, kind="classifier") if last_path.is_file() else None
    if last is not None and cfg.resume:
        check_resumable(out, last.get("train_config", {}), cfg, CLASSIFIER_MAY_CHANGE)
    if main:
        prepare_output(out)
    problems = require_clean_data(
        cfg.data,
        patient_regex=cfg.patient_regex,
        accept=cfg.accept_data_problems,
        cache_dir=cfg.cache_dir,
        progress=cfg.progress and main,
    )
    if main and problems:
        record_data_problems(out, problems)

    seed_everything(cfg.seed)
    data = load_splits(cfg, progress=cfg.progress and main)
    fmt = memory_format(cfg.channels_last)
    model = build_classifier(**model_config).to(device).to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    # resume: an interrupted run continues from last.pt
    start_epoch, best, stale = 0, {"accuracy": -1.0, "loss": float("inf"), "epoch": -1}, 0
    ckpt = resume_from(last_path, "classifier", model, opt, allowed=cfg.resume, ckpt=last)
    if ckpt is not None:
        start_epoch, best, stale = ckpt["epoch"] + 1, ckpt["best"], ckpt["stale"]
        if main:
            log.info("resuming %s at epoch %d", out, start_epoch)
    if main:
        save_yaml(cfg, run.config)
    net = wrap_ddp(model, dist_info, device)
    logger = RunLogger(
        out,
        ["step", "epoch", "train_loss", "val_loss", "val_accuracy", "lr", "images_per_s"],
        enabled=main,
        resume_step=start_epoch - 1,
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    local_batch = cfg.batch_size // dist_info.world_size
    train = data["train"]

    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        order = epoch_order(train.labels, epoch, cfg.seed, cfg.balance)
        if len(order) >= cfg.batch_size:
            order = order[: len(order) - len(order) % cfg.batch_size]
        steps = max(1, len(order) // cfg.batch_size)
        gen.manual_seed(cfg.seed * 1000003 + epoch)
        t0, losses = time.perf_counter(), []
        bar = tqdm(
            range(steps),
            desc=f"{cfg.arch} epoch {epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=not (cfg.progress and main),
        )
        for step in bar:
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            idx = idx[dist_info.rank * local_batch : (dist_info.rank + 1) * local_batch]
            x = train.images(idx).to(device, memory_format=fmt)
            y = torch.from_numpy(train.labels[idx]).to(device)
            if cfg.augment == "classic":
                x = classic_augment(x, gen)
            mixed = mix_batch(cfg.augment, x, y, gen) if cfg.augment in MIXING else None
            with autocast(device, cfg.amp):
                if mixed is None:
                    loss = F.cross_entropy(net(x).float(), y)
                else:
                    loss = mixed_cross_entropy(net(mixed.x).float(), mixed)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        train_loss = all_reduce_mean(float(np.mean(losses)), dist_info)
        check_finite(
            train_loss,
            epoch,
            "the classifier's training loss",
            str(last_path) if last_path.exists() else None,
        )
        seen = steps * cfg.batch_size
        # selection on validation (main rank decides, everyone follows)
        stop = False
        if main:
            val = evaluate_split(model, data["val"], device, cfg.amp)
            better = (val["accuracy"], -val["loss"]) > (best["accuracy"], -best["loss"])
            if better:
                best = {"accuracy": val["accuracy"], "loss": val["loss"], "epoch": epoch}
                save_checkpoint(
                    best_path,
                    {
                        "kind": "classifier",
                        "model_config": model_config,
                        "model": model.state_dict(),
                        "train_config": to_dict(cfg),
                        "epoch": epoch,
                        "val": val,
                    },
                )
                stale = 0
            else:
                stale += 1
            logger.log(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_loss": val["loss"],
                    "val_accuracy": val["accuracy"],
                    "lr": cfg.lr,
                    "images_per_s": seen / (time.perf_counter() - t0),
                },
                step=epoch,
            )
            save_checkpoint(
                last_path,
                {
                    "kind": "classifier",
                    "model_config": model_config,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "train_config": to_dict(cfg),
                    "epoch": epoch,
                    "best": best,
                    "stale": stale,
                    "rng": rng_state(),
                },
            )
            log.info(
                "%s epoch %d: train loss %.4f, val acc %.4f (best %.4f @ %d)",
                cfg.arch,
                epoch + 1,
                train_loss,
                val["accuracy"],
                best["accuracy"],
                best["epoch"] + 1,
            )
            stop = stale >= cfg.patience
        if broadcast_flag(stop, dist_info):
            break
    logger.close()
    barrier(dist_info)

    # the selected weights, tested once
    ckpt = load_checkpoint(best_path, kind="classifier")
    load_weights(model, ckpt["model"], best_path)
    metrics = {
        "arch": cfg.arch,
        "image_size": cfg.image_size,
        "best_epoch": ckpt["epoch"] + 1,
        "val": ckpt["val"],
        "test": evaluate_split(model, data["test"], device, cfg.amp),
        "n_train_real": data["n_real_train"],
        "n_train_generated": data["n_generated"],
        "n_val": len(data["val"].images),
        "n_test": len(data["test"].images),
        "augment": cfg.augment,
        "seed": cfg.seed,
    }
    metrics["test_accuracy"] = metrics["test"]["accuracy"]
    if main:
        atomic_write_text(run.metrics, json.dumps(metrics, indent=2))
        log.info(
            "%s: test accuracy %.4f (n=%d), written %s",
            cfg.arch,
            metrics["test_accuracy"],
            metrics["n_test"],
            run.metrics,
        )
    return {**metrics, "out": str(out)}
