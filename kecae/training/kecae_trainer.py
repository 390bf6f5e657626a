"""Training of KECAE (Algorithm 1): pairs (X1 KL-0, X2 KL-2) from the train split, the hybrid
loss J = J_MSE + λ1·J_SUP + λ2·J_LDA, a frozen supervisor (or the released code's joint one).

The batch at global step s is a pure function of (seed, s) (:class:`PairBatches`). Together with
the restored model, optimiser and RNG states this makes a resumed run equal an uninterrupted one,
and lets torchrun ranks take disjoint slices of the same global batch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from kecae.checkpoint import load_checkpoint, resume_from, rng_state, save_checkpoint
from kecae.config import check_values, save_yaml, to_dict
from kecae.data.cache import ImageSet, load_image_set
from kecae.data.catalog import task_grades
from kecae.data.pairs import PairSampler
from kecae.device import autocast, memory_format, seed_everything
from kecae.errors import KecaeError
from kecae.files import atomic_path, atomic_write_text
from kecae.losses import LossInputs, kecae_loss, logged_names
from kecae.models.autoencoder import KECAE, KECAEConfig
from kecae.paths import load_path, store_path
from kecae.reuse import check_resumable, check_same_model, prepare_output, record_data_problems
from kecae.runfolder import KECAERun
from kecae.runlock import releases_locks
from kecae.threads import ThreadGovernor
from kecae.training.augment import classic_augment
from kecae.training.batches import PairBatches, gather
from kecae.training.config import KECAE_MAY_CHANGE, KECAETrainConfig, kecae_model_config
from kecae.training.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    init_distributed,
    wrap_ddp,
)
from kecae.training.logs import RunLogger, read_log
from kecae.training.loss_modules import (
    build_modules,
    own_optimizers,
    shared_parameters,
    update_modules,
)
from kecae.training.opening import check_training_data, take_run_folder
from kecae.training.schedule import lr_factor
from kecae.training.step import stop_unless_finite
from kecae.training.supervisor import load_members, load_supervisor

log = logging.getLogger(__name__)


def log_fields() -> list[str]:
    """The columns of log.csv: every value the loss logs (kecae.losses.TERMS), then throughput."""
    return ["step", "epoch", "total", *logged_names(), "pairs_per_s", "lr"]


def sample_grid(model: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> np.ndarray:
    """uint8 grid, one row per pair: X1 | X'1 | X̂1 | X2 | X'2 | X̂2 (model in eval mode)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(x1, x2)
    model.train(was_training)
    cols = [x1, out.x1_ex, out.x1_hat, x2, out.x2_ex, out.x2_hat]
    rows = [torch.cat([c[i, 0] for c in cols], dim=1) for i in range(x1.shape[0])]
    grid = torch.cat(rows, dim=0).float().clamp(-1, 1).cpu().numpy()
    return ((grid + 1) * 127.5).round().astype(np.uint8)


@dataclass
class _Trainable:
    """What the optimiser updates and the checkpoint holds."""

    model: KECAE
    supervisor: torch.nn.Module
    supervisor_config: dict[str, Any]
    modules: dict[str, torch.nn.Module]  # the loss terms' modules (kecae.losses.TrainedModule)
    optimizer: torch.optim.Optimizer  # the model's Adam (with a joint supervisor, the probes)
    module_optimizers: dict[str, torch.optim.Optimizer]  # modules with an optimiser of their own
    members: list[torch.nn.Module]  # a supervisor ensemble's members 1..K-1 (frozen, not saved)

    def extra_modules(self, joint: bool) -> dict[str, torch.nn.Module]:
        """Modules saved beside the model: the joint supervisor, the loss terms' modules."""
        return {**({"supervisor": self.supervisor} if joint else {}), **self.modules}

    def extra_states(self, joint: bool) -> dict[str, dict[str, Any]]:
        """What the checkpoint holds beside the model and its optimiser, by name."""
        states = {name: m.state_dict() for name, m in self.extra_modules(joint).items()}
        for name, opt in self.module_optimizers.items():
            states[f"{name}_optimizer"] = opt.state_dict()
        return states


@dataclass
class _Pairs:
    """The training split's two grades and the N pairs sampled from their product."""

    kl0: ImageSet
    kl2: ImageSet
    sampler: PairSampler
    candidates: int  # size of the KL-0 x KL-2 product


@releases_locks
def train_kecae(
    cfg: KECAETrainConfig, callback: Callable[[str, torch.nn.Module], None] | None = None
) -> dict[str, Any]:
    """Train KECAE; returns a summary (also written to ``<out>/summary.json``).

    ``callback(event, model)``, if given, is called on every rank with the bare model at
    ``"start"`` (initialised or resumed weights) and ``"end"`` (final weights).
    """
    # settings: checked before any data is read
    check_values(cfg)
    dist_info, device = init_distributed(cfg.device)
    model_config = _checked_model_config(cfg, dist_info)

    # the run folder: this one (unused, or a run of the same settings to continue), or with
    # --fresh a new one; then the data check
    cfg, run, old_ckpt = _open_run_folder(cfg, dist_info, model_config)
    seed_everything(cfg.seed)

    # data: KL-0 and KL-2 of the train split, pairs from their product
    pairs = _training_pairs(cfg, model_config.image_size, dist_info.is_main)
    batches = PairBatches(
        pairs.kl0,
        pairs.kl2,
        pairs.sampler,
        cfg.batch_size,
        cfg.seed,
        dist_info.rank,
        dist_info.world_size,
    )
    total_steps = cfg.max_steps or cfg.epochs * batches.steps_per_epoch

    # model, supervisor, probes and optimiser, then the state of an interrupted run
    fmt = memory_format(cfg.channels_last)
    parts = _build_trainable(cfg, model_config, device, fmt)
    joint = cfg.supervisor_mode == "joint"
    start_step = _resume(cfg, run, parts, old_ckpt, dist_info.is_main, total_steps)

    # the loop
    net = wrap_ddp(parts.model, dist_info, device)
    sup_net = wrap_ddp(parts.supervisor, dist_info, device) if joint else parts.supervisor
    logger = RunLogger(run.folder, log_fields(), enabled=dist_info.is_main, resume_step=start_step)
    fixed = _fixed_sample_pairs(cfg, model_config.image_size, device)
    if callback:
        callback("start", parts.model)
    parts.model.train()
    bar = tqdm(
        total=total_steps,
        initial=start_step,
        desc="KECAE",
        unit="step",
        disable=not (cfg.progress and dist_info.is_main),
    )
    meter = _TermMeter(dist_info)
    y1 = torch.zeros(cfg.batch_size // dist_info.world_size, dtype=torch.long, device=device)
    y2 = torch.ones_like(y1)
    governor = ThreadGovernor.from_environment()  # CPU threads: the idle cores, or fixed
    for step in range(start_step, total_steps):
        governor.tick(step)
        x1, x2, _ = batches.batch(step)
        if cfg.augment_pairs:  # its own generator: the loss's random draws stay as without it
            aug = torch.Generator().manual_seed(
                (cfg.seed * 1_000_003 + step) * 64 + dist_info.rank + 7_919
            )
            x1, x2 = classic_augment(x1, aug), classic_augment(x2, aug)
        x1 = x1.to(device, memory_format=fmt, non_blocking=True)
        x2 = x2.to(device, memory_format=fmt, non_blocking=True)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # pure function of step
        rate = _set_lr(parts, lr_factor(cfg.lr_schedule, step, total_steps))
        with autocast(device, cfg.amp):
            inputs = LossInputs(
                net(x1, x2), x1, x2, y1, y2, sup_net, parts.model, gen, step, joint, parts.modules
            )
            inputs.members = parts.members
        terms = _optimise(cfg, parts, inputs, device, step, _last(run), dist_info)
        meter.add(terms, cfg.batch_size)
        done = step + 1
        if done % cfg.log_every == 0 or done == total_steps:
            row = meter.flush()
            logger.log(
                {**row, "epoch": done / batches.steps_per_epoch, "lr": cfg.lr * rate}, step=done
            )
            bar.set_postfix(
                {n: f"{v:.3g}" for n, v in row.items() if n not in ("sup_real", "pairs_per_s")}
                | {"pairs/s": f"{row['pairs_per_s']:.0f}"}
            )
        if dist_info.is_main and (done % cfg.sample_every == 0 or done == total_steps):
            _save_samples(run, parts.model, fixed, logger, done)
        if dist_info.is_main and (done % cfg.ckpt_every == 0 or done == total_steps):
            _save_checkpoint(run, cfg, model_config, parts, done, batches.steps_per_epoch)
        bar.update(1)
    bar.close()
    logger.close()
    if callback:
        callback("end", parts.model)
    barrier(dist_info)

    # the summary (written once by the run that trained the last step)
    if dist_info.is_main and start_step < total_steps:
        _write_summary(run, pairs, total_steps, dist_info.world_size)
    return _read_summary(run)


def _set_lr(parts: _Trainable, factor: float) -> float:
    """Set every optimiser of the step (the model's and the loss terms' modules') to ``factor``
    times the rate it was made with, and return ``factor``. The made rate travels in the
    optimiser's state (``initial_lr``, as torch's schedulers keep it), so a resumed run sets the
    same rates."""
    for opt in (parts.optimizer, *parts.module_optimizers.values()):
        for group in opt.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor
    return factor


def _checked_model_config(cfg: KECAETrainConfig, dist_info: DistInfo) -> KECAEConfig:
    """The model's configuration, once the settings that depend on the processes and on the
    model are checked."""
    if cfg.batch_size % dist_info.world_size:
        raise KecaeError(
            f"--batch-size {cfg.batch_size} must be divisible by the number of "
            f"processes ({dist_info.world_size})"
        )
    model_config = kecae_model_config(cfg)
    if (cfg.lambda_mask_area, cfg.lambda_mask_tv, cfg.lambda_mask_self) != (0, 0, 0) and not (
        model_config.edit
    ):
        raise KecaeError(
            "--lambda-mask-area / --lambda-mask-tv / --lambda-mask-self price the edit's mask: "
            "add --model edit=true (with exchange=warp), or set them to 0"
        )
    healthy = model_config.edit and model_config.edit_appearance == "healthy"
    if healthy != (cfg.lambda_inpaint > 0):
        raise KecaeError(
            "--model edit_appearance=healthy (with edit=true) and --lambda-inpaint go together: "
            "the healthy inpainter learns only from that term (e.g. --lambda-inpaint 1), and the "
            "term has nothing to train without it"
        )
    if cfg.lambda_control > 0 and not healthy:
        raise KecaeError(
            "--lambda-control prices what the healthy fill changes on the no-exchange control: "
            "it needs --model edit=true --model edit_appearance=healthy, or set it to 0"
        )
    if cfg.local_fakes_from != "exchanged" and not cfg.local_fakes:
        raise KecaeError(
            f"--local-fakes-from {cfg.local_fakes_from} chooses the local critic's fakes: add "
            "--local-fakes"
        )
    if cfg.local_fakes_from == "warped" and model_config.exchange != "warp":
        raise KecaeError(
            "--local-fakes-from warped moves the recipient by X'2's warp: it needs "
            "--model exchange=warp"
        )
    if cfg.local_fakes and cfg.lambda_local_sup <= 0:
        raise KecaeError(
            "--local-fakes trains the local grade critic on X'2 too: it needs the critic "
            "(--lambda-local-sup > 0, e.g. 0.1)"
        )
    return model_config


def _optimise(
    cfg: KECAETrainConfig,
    parts: _Trainable,
    inputs: LossInputs,
    device: torch.device,
    step: int,
    last: str | None,
    dist_info: DistInfo,
) -> dict[str, torch.Tensor]:
    """One optimiser step on the KECAE loss of ``inputs``, then the updates of the loss terms'
    modules that have an optimiser of their own; the logged terms. A non-finite loss stops the
    run with the last checkpoint named."""
    with autocast(device, cfg.amp):
        total, terms = kecae_loss(inputs, cfg)
    parts.optimizer.zero_grad(set_to_none=True)
    total.backward()
    stop_unless_finite(terms, step, last, dist_info, parts.optimizer)
    parts.optimizer.step()
    with autocast(device, cfg.amp):
        updates = update_modules(parts.module_optimizers, inputs, cfg)
    stop_unless_finite(updates, step, last, dist_info)  # an exploding adversary
    return terms | updates


def _resume(
    cfg: KECAETrainConfig,
    run: KECAERun,
    parts: _Trainable,
    old_ckpt: dict[str, Any] | None,
    is_main: bool,
    total_steps: int,
) -> int:
    """Load the state of an interrupted run into ``parts`` (the model, its Adam, the supervisor,
    the loss terms' modules and their optimisers); write config.yaml; the step to start at."""
    ckpt = resume_from(
        run.last,
        "kecae",
        parts.model,
        parts.optimizer,
        allowed=cfg.resume,
        ckpt=old_ckpt,
        supervisor=parts.supervisor,
        **parts.modules,
    )
    if ckpt is not None:
        for name, opt in parts.module_optimizers.items():
            if f"{name}_optimizer" in ckpt:
                opt.load_state_dict(ckpt[f"{name}_optimizer"])
    start_step = int(ckpt["step"]) if ckpt is not None else 0
    if is_main:
        if ckpt is not None:
            log.info("resuming %s at step %d of %d", run.folder, start_step, total_steps)
        save_yaml(cfg, run.config)
    return start_step


def _open_run_folder(
    cfg: KECAETrainConfig, dist_info: DistInfo, model_config: KECAEConfig
) -> tuple[KECAETrainConfig, KECAERun, dict[str, Any] | None]:
    """The run folder to train in (``--fresh``: a new one when this one is used), locked, and
    checked against the settings and the model of the checkpoint it holds, the data version
    included; the data checked (accepted problems recorded, images under the model's size
    reported)."""
    run = KECAERun(Path(cfg.out))
    cfg, run = take_run_folder(cfg, run, run.last.exists() or run.config.exists(), dist_info)
    old_ckpt = load_checkpoint(run.last, kind="kecae") if run.last.is_file() else None
    cfg, checked = check_training_data(cfg, dist_info, model_config.image_size)
    if old_ckpt is not None and cfg.resume:
        check_resumable(run.folder, old_ckpt.get("train_config", {}), cfg, KECAE_MAY_CHANGE)
        check_same_model(run.folder, old_ckpt.get("model_config"), model_config)
    if dist_info.is_main:
        prepare_output(run.folder)
        if checked.accepted:
            record_data_problems(run.folder, checked.accepted)
    return cfg, run, old_ckpt


def _load_grade(
    cfg: KECAETrainConfig, size: int, split: str, grade: int, progress: bool
) -> ImageSet:
    return load_image_set(
        cfg.data,
        size=size,
        split=split,
        grades=(grade,),
        cache_dir=cfg.cache_dir,
        progress=progress,
        patient_regex=cfg.patient_regex,
    )


def _training_pairs(cfg: KECAETrainConfig, size: int, main: bool) -> _Pairs:
    """KL-0 and KL-2 of the train split and ``num_pairs`` pairs of their product (all of them,
    with a warning, when fewer exist and oversampling is off)."""
    progress = cfg.progress and main
    low, high = task_grades(cfg.grades)
    kl0 = _load_grade(cfg, size, "train", low, progress)
    kl2 = _load_grade(cfg, size, "train", high, progress)
    candidates = len(kl0.images) * len(kl2.images)
    num_pairs = cfg.num_pairs
    if num_pairs > candidates and not cfg.oversample:
        log.warning(
            "N=%d pairs asked but the train split has only %d KL-0 x KL-2 pairs: using all",
            num_pairs,
            candidates,
        )
        num_pairs = candidates
    sampler = PairSampler(
        len(kl0.images), len(kl2.images), num_pairs, seed=cfg.seed, oversample=cfg.oversample
    )
    return _Pairs(kl0, kl2, sampler, candidates)


def _build_trainable(
    cfg: KECAETrainConfig, model_config: KECAEConfig, device: torch.device, fmt: torch.memory_format
) -> _Trainable:
    """The model, the supervisor (trained along in joint mode), the modules of the loss terms
    that are on, one Adam over the model, the joint supervisor and the modules without an
    optimiser of their own, and an ensemble's other supervisors (frozen). Built in this order:
    each draws its initial weights from the seeded generator."""
    model = KECAE(model_config).to(device).to(memory_format=fmt)
    supervisor, supervisor_config = load_supervisor(cfg, model_config.image_size, device)
    supervisor = supervisor.to(memory_format=fmt)
    params = list(model.parameters())
    if cfg.supervisor_mode == "joint":
        params += list(supervisor.parameters())
    modules = {name: m.to(device) for name, m in build_modules(cfg, model_config).items()}
    params += list(shared_parameters(modules))
    # last: building them draws from the generator, and the rest starts as with one supervisor
    members = [m.to(memory_format=fmt) for m in load_members(cfg, model_config.image_size, device)]
    return _Trainable(
        model,
        supervisor,
        supervisor_config,
        modules,
        torch.optim.Adam(params, lr=cfg.lr),
        own_optimizers(modules),
        members,
    )


def _last(run: KECAERun) -> str | None:
    return str(run.last) if run.last.exists() else None


class _TermMeter:
    """Loss terms and throughput since the last log row, averaged over steps and ranks."""

    def __init__(self, dist_info: DistInfo) -> None:
        self.dist_info = dist_info
        self.rows: list[dict[str, float]] = []
        self.pairs = 0
        self.since = time.perf_counter()

    def add(self, terms: dict[str, torch.Tensor], pairs: int) -> None:
        self.rows.append({name: float(v) for name, v in terms.items()})
        self.pairs += pairs

    def flush(self) -> dict[str, float]:
        """The mean of each term, and ``pairs_per_s``; starts the next interval."""
        now = time.perf_counter()
        means = {
            name: all_reduce_mean(float(np.mean([r[name] for r in self.rows])), self.dist_info)
            for name in self.rows[0]
        }
        means["pairs_per_s"] = self.pairs / max(now - self.since, 1e-9)
        self.rows, self.pairs, self.since = [], 0, now
        return means


def _fixed_sample_pairs(
    cfg: KECAETrainConfig, size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to four validation pairs shown in every sample grid."""
    low, high = task_grades(cfg.grades)
    val0 = _load_grade(cfg, size, "val", low, False)
    val2 = _load_grade(cfg, size, "val", high, False)
    k = min(4, len(val0.images), len(val2.images))
    return (
        gather(val0.images, np.arange(k)).to(device),
        gather(val2.images, np.arange(k)).to(device),
    )


def _save_samples(
    run: KECAERun,
    model: KECAE,
    fixed: tuple[torch.Tensor, torch.Tensor],
    logger: RunLogger,
    step: int,
) -> None:
    grid = sample_grid(model, *fixed)
    with atomic_path(run.sample(step)) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    logger.image("samples/X1_X1ex_X1hat_X2_X2ex_X2hat", grid, step)


def _save_checkpoint(
    run: KECAERun,
    cfg: KECAETrainConfig,
    model_config: KECAEConfig,
    parts: _Trainable,
    step: int,
    steps_per_epoch: int,
) -> None:
    payload = {
        "kind": "kecae",
        "model_config": to_dict(model_config),
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "train_config": to_dict(cfg),
        "step": step,
        "epoch": step // steps_per_epoch,
        "rng": rng_state(),
        "supervisor_config": parts.supervisor_config,
    }
    payload.update(parts.extra_states(cfg.supervisor_mode == "joint"))
    save_checkpoint(run.last, payload)


def _write_summary(run: KECAERun, pairs: _Pairs, steps: int, world_size: int) -> None:
    rows = read_log(run.log).rows
    summary = {
        "steps": steps,
        "num_pairs": len(pairs.sampler),
        "candidate_pairs": pairs.candidates,
        "n_kl0_train": len(pairs.kl0.images),
        "n_kl2_train": len(pairs.kl2.images),
        "first_terms": rows[0] if rows else None,
        "last_terms": rows[-1] if rows else None,
        "checkpoint": store_path(run.last, run.folder),
        "world_size": world_size,
    }
    atomic_write_text(run.summary, json.dumps(summary, indent=2))


def _read_summary(run: KECAERun) -> dict[str, Any]:
    """summary.json with the checkpoint's path absolute, and the run folder (``{}`` when no run
    has finished in this folder)."""
    if not run.summary.exists():
        return {}
    summary = json.loads(run.summary.read_text())
    return {
        **summary,
        "checkpoint": load_path(summary["checkpoint"], run.folder, legacy=True),
        "out": str(run.folder),
    }
