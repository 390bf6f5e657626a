"""Training of a KL-0 vs KL-2 classifier: the KECAE supervisor, the independent judge, and the
downstream models of the augmentation study. Train split to fit, validation to select, test split
reported once with the selected weights.

Two ways to stop (:mod:`kecae.training.schedule`): epochs with early stopping on validation
(the supervisor and the judge), or an exact budget of optimiser steps with the best validation
checkpoint kept (the study's rows, so that every row of a comparison trains as long). Generated
images either join the training pool (``augment_dirs``), or are drawn into every batch at a set
share (``mix_dirs`` with ``mix_ratio``), or pre-train the model before it is fine-tuned on the
real images (``mix_dirs`` with ``pretrain_steps``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kecae import CLASS_GRADES
from kecae.checkpoint import load_checkpoint, load_weights, resume_from, rng_state, save_checkpoint
from kecae.config import check_values, load_yaml, save_yaml, to_dict
from kecae.data import load_image_set
from kecae.data.catalog import load_catalog, task_grades
from kecae.device import autocast, memory_format, seed_everything
from kecae.errors import KecaeError
from kecae.evaluation.metrics import classification_metrics
from kecae.files import atomic_write_text
from kecae.inference import classify
from kecae.models.classifiers import Classifier, ClassifierConfig, build_classifier
from kecae.registry import MIXING
from kecae.reuse import check_resumable, prepare_output, record_data_problems
from kecae.runfolder import ClassifierRun
from kecae.runlock import releases_locks
from kecae.threads import ThreadGovernor
from kecae.training.augment import (
    classic_augment,
    mix_batch,
    mixed_cross_entropy,
    warp_augment,
)
from kecae.training.batches import ArrayBatcher
from kecae.training.config import CLASSIFIER_MAY_CHANGE, ClassifierTrainConfig
from kecae.training.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    broadcast_flag,
    init_distributed,
    wrap_ddp,
)
from kecae.training.logs import RunLogger
from kecae.training.opening import check_training_data, take_run_folder
from kecae.training.schedule import Schedule
from kecae.training.step import check_finite

log = logging.getLogger(__name__)

#: Columns of a classifier's log.csv: ``step`` counts optimiser steps, ``epoch`` the epochs of
#: the training pool seen (fractional with a step budget).
LOG_FIELDS = ["step", "epoch", "train_loss", "val_loss", "val_accuracy", "lr", "images_per_s"]


def _labels(grades: np.ndarray, pair: tuple[int, int]) -> np.ndarray:
    """Class indices of KL grades: 0 for the pair's lower grade, 1 for its higher."""
    lookup = {g: i for i, g in enumerate(pair)}
    return np.array([lookup[int(g)] for g in grades], dtype=np.int64)


@dataclass
class TrainingData:
    """The images of one classifier run: the pools it trains on, and validation and test."""

    train: ArrayBatcher  # the training pool, then the mixed-in pool (global indices)
    n_pool: int  # images of the training pool (real kept + augment_dirs)
    n_mix: int  # images of the mixed-in (generated) pool
    n_real_train: int  # real training images used
    n_generated: int  # generated images in either pool
    val: Any  # ImageSet
    test: Any  # ImageSet

    @property
    def pool_labels(self) -> np.ndarray:
        return self.train.labels[: self.n_pool]

    @property
    def mix_labels(self) -> np.ndarray | None:
        return self.train.labels[self.n_pool :] if self.n_mix else None


def pgd_attack(
    net: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """The batch ``x`` (B, 1, S, S) moved within ``eps`` (L-inf, images kept in [-1, 1]) to raise
    the classifier's cross-entropy on ``y``: projected gradient ascent on the sign of the
    gradient from a random start, ``steps`` steps of 2.5 · eps / steps (Madry et al. 2018).
    Training on these makes a classifier whose gradient is a change of the image a person
    would see, not a faint pattern only it responds to; the network's weights get no gradient."""
    alpha = 2.5 * eps / steps
    noise = torch.rand(x.shape, generator=gen, device="cpu").to(x.device, x.dtype)
    x0 = x.detach()
    adv = (x0 + (2 * noise - 1) * eps).clamp(-1, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(net(adv).float(), y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * grad.sign()
        adv = torch.minimum(torch.maximum(adv, x0 - eps), x0 + eps).clamp(-1, 1)
    return adv.detach()


def load_splits(cfg: ClassifierTrainConfig, progress: bool) -> TrainingData:
    """Train (the real grades kept, + ``augment_dirs``; then ``mix_dirs``), val and test image
    sets at the classifier's size."""

    pair = task_grades(cfg.grades)

    def load(source: str, split: str | None, grades: Any = pair, regex: Any = None):
        return load_image_set(
            source,
            size=cfg.image_size,
            split=split,
            grades=grades,
            cache_dir=cfg.cache_dir,
            progress=progress,
            patient_regex=regex,
        )

    def generated(source: str) -> tuple[np.ndarray, np.ndarray]:
        # a generated set may hold one grade only (one direction of the exchange)
        grades = sorted({r.grade for r in load_catalog(source).records} & set(pair))
        s = load(source, None, grades)
        return s.images, _labels(s.grades, pair)

    val, test = (load(cfg.data, split, regex=cfg.patient_regex) for split in ("val", "test"))
    real_grades = pair if cfg.real_grades is None else tuple(cfg.real_grades)
    arrays, labels = [], []
    if real_grades:
        train = load(cfg.data, "train", real_grades, cfg.patient_regex)
        images, y = train.images, _labels(train.grades, pair)
        if cfg.max_train and cfg.max_train < len(images):
            keep = np.sort(
                np.random.default_rng(cfg.seed).choice(len(images), cfg.max_train, replace=False)
            )
            images, y = images[keep], y[keep]
        arrays.append(images)
        labels.append(y)
    n_real = int(sum(len(y) for y in labels))
    extra = [generated(d) for d in cfg.augment_dirs]
    mixed = [generated(d) for d in cfg.mix_dirs]
    for a, y in extra + mixed:
        arrays.append(a)
        labels.append(y)
    n_pool = n_real + int(sum(len(y) for _, y in extra))
    if n_pool == 0:
        raise KecaeError(
            f"the classifier of {cfg.out} has no training images: keep a real grade "
            "(--real-grades) or add generated images (--augment-dir)"
        )
    n_mix = int(sum(len(y) for _, y in mixed))
    return TrainingData(
        train=ArrayBatcher(arrays, labels),
        n_pool=n_pool,
        n_mix=n_mix,
        n_real_train=n_real,
        n_generated=n_pool - n_real + n_mix,
        val=val,
        test=test,
    )


def evaluate_split(
    model: Classifier,
    image_set: Any,
    device: torch.device,
    amp: bool = False,
    grades: tuple[int, int] = CLASS_GRADES,
) -> dict[str, Any]:
    """Classification metrics and the cross-entropy of ``model`` on one split (of ``grades``)."""

    y = _labels(image_set.grades, grades)
    model.eval()
    p = classify(model, image_set.images, device=device, amp=amp)[:, 1]
    metrics = classification_metrics(y, (p >= 0.5).astype(int), p)
    eps = 1e-7
    metrics["loss"] = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
    return metrics


def schedule_of(cfg: ClassifierTrainConfig, data: TrainingData) -> Schedule:
    """The batches of a run with these settings and these pools."""
    if (cfg.mix_ratio > 0 or cfg.pretrain_steps) and not cfg.mix_dirs:
        raise KecaeError("--mix-ratio and --pretrain-steps draw from --mix-dirs: give one")
    if cfg.mix_dirs and not cfg.max_steps:
        raise KecaeError("--mix-dirs works with a step budget: pass --max-steps")
    try:
        return Schedule(
            data.pool_labels,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            balance=cfg.balance,
            epochs=cfg.epochs,
            max_steps=cfg.max_steps,
            eval_every=cfg.eval_every,
            mix_labels=data.mix_labels,
            mix_ratio=cfg.mix_ratio,
            pretrain_steps=cfg.pretrain_steps,
        )
    except ValueError as exc:
        raise KecaeError(f"{cfg.out}: {exc}") from exc


@releases_locks
def train_classifier(cfg: ClassifierTrainConfig) -> dict[str, Any]:
    """Train, select on validation, test once; returns (and writes) ``metrics.json``.

    A finished run folder made with the same settings returns its metrics; an interrupted one
    resumes. A folder made with other settings (another --arch, lr, data, ...) is refused, or,
    with ``fresh``, left alone while the run starts in a new folder.
    """

    check_values(cfg)
    dist_info, device = init_distributed(cfg.device)
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
    cfg, run, finished, last = _open_run(cfg, dist_info)
    if finished is not None:
        return finished
    if dist_info.is_main:
        prepare_output(run.folder)

    seed_everything(cfg.seed)
    data = load_splits(cfg, progress=cfg.progress and dist_info.is_main)
    schedule = schedule_of(cfg, data)
    model = build_classifier(**model_config).to(device)
    model = model.to(memory_format=memory_format(cfg.channels_last))
    loop = _Loop(cfg, run, model, model_config, data, schedule, dist_info, device)
    loop.resume(last)
    loop.train()
    return _test(cfg, run, model, data, device, dist_info)


def _open_run(
    cfg: ClassifierTrainConfig, dist_info: DistInfo
) -> tuple[ClassifierTrainConfig, ClassifierRun, dict[str, Any] | None, dict[str, Any] | None]:
    """The run folder: this one (same settings, or unused), or with --fresh a new one, locked,
    and the data checked (accepted problems recorded). Returns the settings (``out`` changed by
    --fresh, the data version filled in), the folder, the metrics of a finished run (None
    otherwise) and the checkpoint to resume from (None: start)."""
    run = ClassifierRun(Path(cfg.out))
    used = any(p.exists() for p in (run.config, run.last, run.best))
    cfg, run = take_run_folder(cfg, run, used, dist_info)
    cfg, checked = check_training_data(cfg, dist_info, cfg.image_size)
    if dist_info.is_main and checked.accepted:
        prepare_output(run.folder)
        record_data_problems(run.folder, checked.accepted)
    if run.finished:
        old = (
            to_dict(load_yaml(ClassifierTrainConfig, run.config))
            if run.config.is_file()
            else load_checkpoint(run.best, kind="classifier").get("train_config", {})
        )
        check_resumable(run.folder, old, cfg, CLASSIFIER_MAY_CHANGE)
        if dist_info.is_main:
            log.info("%s is complete; delete it to train again", run.folder)
        return cfg, run, {**json.loads(run.metrics.read_text()), "out": str(run.folder)}, None
    last = load_checkpoint(run.last, kind="classifier") if run.last.is_file() else None
    if last is not None and cfg.resume:
        check_resumable(run.folder, last.get("train_config", {}), cfg, CLASSIFIER_MAY_CHANGE)
    return cfg, run, None, last


class _Loop:
    """The optimiser steps of one run, its validations, checkpoints and log."""

    def __init__(
        self,
        cfg: ClassifierTrainConfig,
        run: ClassifierRun,
        model: Classifier,
        model_config: dict[str, Any],
        data: TrainingData,
        schedule: Schedule,
        dist_info: DistInfo,
        device: torch.device,
    ) -> None:
        self.cfg, self.run, self.model, self.model_config = cfg, run, model, model_config
        self.data, self.schedule, self.dist, self.device = data, schedule, dist_info, device
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.start, self.stale = 0, 0
        self.best: dict[str, Any] = {"accuracy": -1.0, "loss": float("inf"), "epoch": -1}
        self.fmt = memory_format(cfg.channels_last)

    def resume(self, last: dict[str, Any] | None) -> None:
        """Continue an interrupted run from last.pt (model, optimiser, RNG, counters)."""
        cfg = self.cfg
        ckpt = resume_from(self.run.last, "classifier", self.model, self.opt, cfg.resume, last)
        if ckpt is not None:
            # a checkpoint of an older kecae counts epochs only
            done = ckpt.get("step", (ckpt["epoch"] + 1) * self.schedule.steps_per_epoch - 1)
            self.start, self.best, self.stale = done + 1, ckpt["best"], ckpt["stale"]
            if self.dist.is_main:
                log.info("resuming %s at step %d", self.run.folder, self.start)
        if self.dist.is_main:
            save_yaml(cfg, self.run.config)

    def train(self) -> None:
        cfg, schedule, main = self.cfg, self.schedule, self.dist.is_main
        net = wrap_ddp(self.model, self.dist, self.device)
        logger = RunLogger(self.run.folder, LOG_FIELDS, enabled=main, resume_step=self.start)
        gen = torch.Generator()
        local = cfg.batch_size // self.dist.world_size
        bar = tqdm(
            range(self.start, schedule.total),
            desc=f"{cfg.arch} steps",
            leave=False,
            disable=not (cfg.progress and main),
        )
        loss_sum, n_losses, t0 = torch.zeros(()), 0, time.perf_counter()
        governor = ThreadGovernor.from_environment()  # CPU threads: the idle cores, or fixed
        for step in bar:
            governor.tick(step)
            self.model.train()
            seed = schedule.augment_seed(step)
            if seed is not None:
                gen.manual_seed(seed)
            idx = schedule.batch(step)
            idx = idx[self.dist.rank * local : (self.dist.rank + 1) * local]
            self._set_lr(step)
            loss = self._step(net, idx, gen)
            loss_sum, n_losses = loss_sum + loss.detach().float().cpu(), n_losses + 1
            if not schedule.evaluates(step):
                continue
            train_loss = all_reduce_mean(float(loss_sum) / n_losses, self.dist)
            check_finite(train_loss, step, "the classifier's training loss", self._last_path())
            seen = n_losses * cfg.batch_size / (time.perf_counter() - t0)
            stop = self._validate(step, train_loss, seen, logger) if main else False
            loss_sum, n_losses, t0 = torch.zeros(()), 0, time.perf_counter()
            if broadcast_flag(stop, self.dist):
                break
        logger.close()
        barrier(self.dist)

    def _last_path(self) -> str | None:
        return str(self.run.last) if self.run.last.exists() else None

    def _step(self, net: torch.nn.Module, idx: np.ndarray, gen: torch.Generator) -> torch.Tensor:
        """One optimiser step on the batch ``idx``; returns its loss."""
        cfg = self.cfg
        x = self.data.train.images(idx).to(self.device, memory_format=self.fmt)
        y = torch.from_numpy(self.data.train.labels[idx]).to(self.device)
        if cfg.augment == "classic":
            x = classic_augment(x, gen)
        elif cfg.augment == "warp":
            x = warp_augment(x, gen)
        if cfg.adv_eps > 0:
            # the attack runs on the bare network: its passes are not the step's (DDP)
            x = pgd_attack(getattr(net, "module", net), x, y, cfg.adv_eps, cfg.adv_steps, gen)
        mixed = mix_batch(cfg.augment, x, y, gen) if cfg.augment in MIXING else None
        with autocast(self.device, cfg.amp):
            if mixed is None:
                loss = F.cross_entropy(net(x).float(), y)
            else:
                loss = mixed_cross_entropy(net(mixed.x).float(), mixed)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss

    def _set_lr(self, step: int) -> float:
        lr = self.cfg.lr * self.schedule.lr_factor(step, self.cfg.lr_schedule)
        for group in self.opt.param_groups:
            group["lr"] = lr
        return lr

    def _validate(self, step: int, train_loss: float, images_per_s: float, logger: Any) -> bool:
        """Validation after ``step``: the best weights kept, last.pt and a log row written.
        Returns whether early stopping ends the run."""
        cfg, schedule = self.cfg, self.schedule
        val = evaluate_split(
            self.model, self.data.val, self.device, cfg.amp, task_grades(cfg.grades)
        )
        epoch = schedule.epoch_of(step)
        better = (val["accuracy"], -val["loss"]) > (self.best["accuracy"], -self.best["loss"])
        if better and schedule.selectable(step):
            self.best = {"accuracy": val["accuracy"], "loss": val["loss"], "epoch": epoch}
            self.best["step"] = step + 1
            save_checkpoint(self.run.best, self._payload(step, val=val))
            self.stale = 0
        else:
            self.stale += 1
        logger.log(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val["loss"],
                "val_accuracy": val["accuracy"],
                "lr": self.opt.param_groups[0]["lr"],
                "images_per_s": images_per_s,
            },
            step=step + 1,
        )
        state = {"optimizer": self.opt.state_dict(), "best": self.best, "stale": self.stale}
        save_checkpoint(self.run.last, self._payload(step, **state, rng=rng_state()))
        log.info(
            "%s step %d (epoch %.1f): train loss %.4f, val acc %.4f (best %.4f at step %s)",
            cfg.arch,
            step + 1,
            epoch,
            train_loss,
            val["accuracy"],
            self.best["accuracy"],
            self.best.get("step", "-"),
        )
        return schedule.epoch_mode and self.stale >= cfg.patience

    def _payload(self, step: int, **extra: Any) -> dict[str, Any]:
        return {
            "kind": "classifier",
            "model_config": self.model_config,
            "model": self.model.state_dict(),
            "train_config": to_dict(self.cfg),
            "epoch": int(self.schedule.epoch_of(step)),
            "step": step,
            **extra,
        }


def _test(
    cfg: ClassifierTrainConfig,
    run: ClassifierRun,
    model: Classifier,
    data: TrainingData,
    device: torch.device,
    dist_info: DistInfo,
) -> dict[str, Any]:
    """The selected weights, tested once; metrics.json written."""
    ckpt = load_checkpoint(run.best, kind="classifier")
    load_weights(model, ckpt["model"], run.best)
    metrics = {
        "arch": cfg.arch,
        "image_size": cfg.image_size,
        "best_epoch": ckpt["epoch"] + 1,
        "best_step": ckpt.get("step", -1) + 1,
        "steps": cfg.max_steps or None,
        "val": ckpt["val"],
        "test": evaluate_split(model, data.test, device, cfg.amp, task_grades(cfg.grades)),
        "n_train_real": data.n_real_train,
        "n_train_generated": data.n_generated,
        "n_val": len(data.val.images),
        "n_test": len(data.test.images),
        "augment": cfg.augment,
        "seed": cfg.seed,
        "grades": list(task_grades(cfg.grades)),
    }
    metrics["test_accuracy"] = metrics["test"]["accuracy"]
    if dist_info.is_main:
        atomic_write_text(run.metrics, json.dumps(metrics, indent=2))
        log.info(
            "%s: test accuracy %.4f (n=%d), written %s",
            cfg.arch,
            metrics["test_accuracy"],
            metrics["n_test"],
            run.metrics,
        )
    return {**metrics, "out": str(run.folder)}
