"""Training of KECAE (Algorithm 1): pairs (X1 KL-0, X2 KL-2) from the train split, the hybrid
loss J = J_MSE + λ1·J_SUP + λ2·J_LDA, a frozen supervisor (or the released code's joint one).

The batch at global step s is a pure function of (seed, s): epoch e = s // steps_per_epoch takes a
seeded permutation of the N sampled pairs. Together with the restored model, optimiser and RNG
states this makes a resumed run equal an uninterrupted one, and lets torchrun ranks take disjoint
slices of the same global batch without talking to each other.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from kecae.configargs import check_values
from kecae.data.check import require_clean_data
from kecae.runfolder import (KECAERun, fresh_folder, load_path, prepare_output,
                             record_data_problems, store_path)
from kecae.training.checkpoint import (check_resume_settings, load_checkpoint, load_weights,
                                       resume_from, rng_state, save_checkpoint)
from kecae.training.common import autocast, check_finite, memory_format
from kecae.training.config import KECAE_MAY_CHANGE, KECAETrainConfig, save_yaml, to_dict
from kecae.training.distributed import (all_reduce_mean, barrier, broadcast_flag, init_distributed,
                                        wrap_ddp)
from kecae.training.logs import RunLogger
from kecae.utils import KecaeError, atomic_path, atomic_write_text, seed_everything

log = logging.getLogger(__name__)

LOG_FIELDS = ["step", "epoch", "total", "mse", "sup", "lda", "disp", "smooth", "fold", "edit",
              "cycle",
              "same", "key_cls", "nonkey_adv", "sup_real", "pairs_per_s", "lr"]

#: Loss weights of the configuration that must be finite and >= 0.
_WEIGHTS = ("lambda_sup", "lambda_lda", "lambda_disp", "lambda_smooth", "lambda_fold",
            "lambda_edit", "lambda_cycle", "lambda_same", "sup_perturb", "lambda_key_cls", "lambda_nonkey_adv")


def check_loss_settings(cfg: KECAETrainConfig) -> None:
    """Refuse loss settings the hybrid loss cannot use, before any data is read."""
    from kecae.losses import LDA_MODES, RECON_LOSSES

    for name in _WEIGHTS:
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise KecaeError(f"--{name.replace('_', '-')} {value!r} must be a finite number >= 0")
    if cfg.lda_mode not in LDA_MODES:
        raise KecaeError(f"--lda-mode {cfg.lda_mode!r}: choose one of {list(LDA_MODES)}")
    if cfg.recon not in RECON_LOSSES:
        raise KecaeError(f"--recon {cfg.recon!r}: choose one of {list(RECON_LOSSES)}")


def model_config_for(cfg: KECAETrainConfig) -> Any:
    from kecae.models.presets import kecae_config

    try:
        return kecae_config(cfg.preset, **cfg.model)
    except (ValueError, TypeError) as exc:
        raise KecaeError(f"model preset/overrides: {exc}") from exc


def load_supervisor(cfg: KECAETrainConfig, image_size: int, device: torch.device
                    ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The supervisor: frozen (eval mode, no weight gradients) or trainable in joint mode."""
    from kecae.inference import build_from_config
    from kecae.models.classifiers import build_classifier

    if cfg.supervisor:
        ckpt = load_checkpoint(cfg.supervisor, kind="classifier")
        model_config = dict(ckpt["model_config"])
        if (trained_at := model_config.get("image_size")) != image_size:
            raise KecaeError(f"the supervisor {cfg.supervisor} was trained at {trained_at} px "
                             f"but the KECAE preset uses {image_size} px: train the supervisor with "
                             f"--image-size {image_size}")
        sup = build_from_config(cfg.supervisor, lambda: build_classifier(**model_config),
                                "classifier")
        load_weights(sup, ckpt["model"], cfg.supervisor)
    elif cfg.supervisor_mode == "joint":
        model_config = {"arch": cfg.joint_arch, "image_size": image_size, "num_classes": 2}
        sup = build_classifier(**model_config)
    else:
        raise KecaeError("a frozen supervisor needs --supervisor CKPT (train one with "
                         "`kecae train-classifier`), or use --supervisor-mode joint")
    sup = sup.to(device)
    if cfg.supervisor_mode == "frozen":
        # eval mode: BN running statistics and dropout are fixed; the generator's images cannot
        # shift them. Gradients still flow *through* the network to the generator.
        sup.eval().requires_grad_(False)
    elif cfg.supervisor_mode == "joint":
        sup.train()
    else:
        raise KecaeError(f"--supervisor-mode must be 'frozen' or 'joint', not {cfg.supervisor_mode!r}")
    return sup, model_config


class PairBatches:
    """Global batch at step s -> (x1, x2) tensors of this rank's slice."""

    def __init__(self, kl0: Any, kl2: Any, sampler: Any, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        self.kl0, self.kl2, self.sampler = kl0, kl2, sampler
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = max(1, len(sampler) // batch_size)
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def pair_positions(self, step: int) -> np.ndarray:
        """Positions (into the N sampled pairs) of this rank's share of global batch ``step``."""
        epoch, b = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = np.random.default_rng([self.seed, epoch, 29]).permutation(len(self.sampler))
        glob = self._perm[b * self.batch_size:(b + 1) * self.batch_size]
        local = len(glob) // self.world_size
        return glob[self.rank * local:(self.rank + 1) * local]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        pos = self.pair_positions(step)
        ij = np.array([self.sampler[int(k)] for k in pos], dtype=np.int64).reshape(-1, 2)
        x1 = _gather(self.kl0.images, ij[:, 0])
        x2 = _gather(self.kl2.images, ij[:, 1])
        return x1, x2, ij


def _gather(images: np.ndarray, index: np.ndarray) -> torch.Tensor:
    order = np.argsort(index)
    block = np.empty((len(index),) + images.shape[1:], dtype=np.float32)
    block[order] = images[index[order]]
    return torch.from_numpy(block)[:, None]  # (B, 1, S, S)


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


def train_kecae(cfg: KECAETrainConfig,
                callback: Callable[[str, torch.nn.Module], None] | None = None) -> dict[str, Any]:
    """Train KECAE; returns a summary (also written to ``<out>/summary.json``).

    ``callback(event, model)``, if given, is called on every rank with the bare model at
    ``"start"`` (initialised or resumed weights) and ``"end"`` (final weights).
    """
    from kecae import CLASS_GRADES
    from kecae.data import PairSampler, load_image_set
    from kecae.losses import GradeProbes, consistency_terms, hybrid_loss, probe_terms
    from kecae.models.kecae import KECAE

    check_values(cfg)
    check_loss_settings(cfg)
    dist_info, device = init_distributed(cfg.device)
    main = dist_info.is_main
    if cfg.batch_size % dist_info.world_size:
        raise KecaeError(f"--batch-size {cfg.batch_size} must be divisible by the number of "
                         f"processes ({dist_info.world_size})")
    mcfg = model_config_for(cfg)
    size = mcfg.image_size

    # the run folder: this one (unused, or a run of the same settings to continue), or with
    # --fresh a new one; settings are checked before any data is read
    run = KECAERun(Path(cfg.out))
    if cfg.fresh and (run.last.exists() or run.config.exists()):
        cfg = dataclasses.replace(cfg, out=str(fresh_folder(run.folder)))
        barrier(dist_info)  # every rank has chosen the same folder before rank 0 creates it
        if main:
            log.info("%s is used: training afresh in %s", run.folder, cfg.out)
        run = KECAERun(Path(cfg.out))
    out, ckpt_path = run.folder, run.last
    old_ckpt = load_checkpoint(ckpt_path, kind="kecae") if ckpt_path.is_file() else None
    if old_ckpt is not None and cfg.resume:
        check_resume_settings(out, old_ckpt.get("train_config", {}), cfg, KECAE_MAY_CHANGE)
    if main:
        prepare_output(out)
    problems = require_clean_data(cfg.data, patient_regex=cfg.patient_regex,
                                  accept=cfg.accept_data_problems, cache_dir=cfg.cache_dir,
                                  progress=cfg.progress and main)
    if main and problems:
        record_data_problems(out, problems)
    seed_everything(cfg.seed)

    # data: KL-0 and KL-2 of the train split, pairs from their product
    load = lambda split, grade: load_image_set(cfg.data, size=size, split=split, grades=(grade,),  # noqa: E731
                                               cache_dir=cfg.cache_dir, progress=cfg.progress and main,
                                               patient_regex=cfg.patient_regex)
    kl0, kl2 = load("train", CLASS_GRADES[0]), load("train", CLASS_GRADES[1])
    total_pairs = len(kl0.images) * len(kl2.images)
    num_pairs = cfg.num_pairs
    if num_pairs > total_pairs and not cfg.oversample:
        log.warning("N=%d pairs asked but the train split has only %d KL-0 x KL-2 pairs: using all",
                    num_pairs, total_pairs)
        num_pairs = total_pairs
    sampler = PairSampler(len(kl0.images), len(kl2.images), num_pairs, seed=cfg.seed,
                          oversample=cfg.oversample)
    batches = PairBatches(kl0, kl2, sampler, cfg.batch_size, cfg.seed, dist_info.rank,
                          dist_info.world_size)
    total_steps = cfg.max_steps or cfg.epochs * batches.steps_per_epoch

    # model, supervisor, optimiser
    fmt = memory_format(cfg.channels_last)
    model = KECAE(mcfg).to(device, memory_format=fmt)
    supervisor, sup_config = load_supervisor(cfg, size, device)
    supervisor = supervisor.to(memory_format=fmt)
    params = list(model.parameters())
    if cfg.supervisor_mode == "joint":
        params += list(supervisor.parameters())
    probes = None
    if cfg.lambda_key_cls > 0 or cfg.lambda_nonkey_adv > 0:
        probes = GradeProbes(math.prod(mcfg.key_shape), mcfg.latent_dim).to(device)
        params += list(probes.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)

    extra_modules = {"supervisor": supervisor, **({"probes": probes} if probes is not None else {})}
    ckpt = resume_from(ckpt_path, "kecae", model, opt, allowed=cfg.resume, ckpt=old_ckpt,
                       **extra_modules)
    start_step = int(ckpt["step"]) if ckpt is not None else 0
    if ckpt is not None and main:
        log.info("resuming %s at step %d of %d", out, start_step, total_steps)
    if main:
        save_yaml(cfg, run.config)

    net = wrap_ddp(model, dist_info, device)
    sup_net = wrap_ddp(supervisor, dist_info, device) if cfg.supervisor_mode == "joint" else supervisor
    logger = RunLogger(out, LOG_FIELDS, enabled=main, resume_step=start_step)
    val0, val2 = load("val", CLASS_GRADES[0]), load("val", CLASS_GRADES[1])
    k = min(4, len(val0.images), len(val2.images))
    fixed_x1 = _gather(val0.images, np.arange(k)).to(device)
    fixed_x2 = _gather(val2.images, np.arange(k)).to(device)

    def checkpoint(step: int) -> None:
        payload = {"kind": "kecae", "model_config": to_dict(mcfg), "model": model.state_dict(),
                   "optimizer": opt.state_dict(), "train_config": to_dict(cfg), "step": step,
                   "epoch": step // batches.steps_per_epoch, "rng": rng_state(),
                   "supervisor_config": sup_config}
        if cfg.supervisor_mode == "joint":
            payload["supervisor"] = supervisor.state_dict()
        if probes is not None:
            payload["probes"] = probes.state_dict()
        save_checkpoint(ckpt_path, payload)

    def samples(step: int) -> None:
        grid = sample_grid(model, fixed_x1, fixed_x2)
        path = run.sample(step)
        with atomic_path(path) as tmp:
            Image.fromarray(grid).save(tmp, format="PNG")
        logger.image("samples/X1_X1ex_X1hat_X2_X2ex_X2hat", grid, step)

    if callback:
        callback("start", model)
    model.train()
    bar = tqdm(total=total_steps, initial=start_step, desc="KECAE", disable=not (cfg.progress and main),
               unit="step")
    terms_acc: list[dict[str, float]] = []
    t_last, pairs_since = time.perf_counter(), 0
    y1 = torch.zeros(cfg.batch_size // dist_info.world_size, dtype=torch.long, device=device)
    y2 = torch.ones_like(y1)
    for step in range(start_step, total_steps):
        x1, x2, _ = batches.batch(step)
        x1 = x1.to(device, memory_format=fmt, non_blocking=True)
        x2 = x2.to(device, memory_format=fmt, non_blocking=True)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # pure function of step
        with autocast(device, cfg.amp):
            out_ = net(x1, x2)
            total, terms = hybrid_loss(out_, x1, x2, y1, y2, sup_net, lambda_sup=cfg.lambda_sup,
                                       lambda_lda=cfg.lambda_lda, lda_eps=cfg.lda_eps,
                                       lda_mode=cfg.lda_mode, recon=cfg.recon,
                                       lambda_disp=cfg.lambda_disp,
                                       lambda_smooth=cfg.lambda_smooth,
                                       lambda_fold=cfg.lambda_fold, sup_perturb=cfg.sup_perturb,
                                       lambda_edit=cfg.lambda_edit, generator=gen)
            if cfg.lambda_cycle > 0 or cfg.lambda_same > 0:
                extra = consistency_terms(model, out_, x1, x2, cycle=cfg.lambda_cycle > 0,
                                          same=cfg.lambda_same > 0, generator=gen)
                total = (total + cfg.lambda_cycle * extra.get("cycle", 0.0)
                         + cfg.lambda_same * extra.get("same", 0.0))
                terms = {**terms, **{k: v.detach() for k, v in extra.items()},
                         "total": total.detach()}
            if probes is not None:
                extra = probe_terms(probes, out_, y1, y2)
                total = (total + cfg.lambda_key_cls * extra["key_cls"]
                         + cfg.lambda_nonkey_adv * extra["nonkey_adv"])
                terms = {**terms, **{k: v.detach() for k, v in extra.items()},
                         "total": total.detach()}
            if cfg.supervisor_mode == "joint":
                # the jointly trained supervisor also learns the real labels; without this term
                # the supervisor and the generator could agree on any private code
                logits = sup_net(torch.cat([x1, x2]))
                sup_real = torch.nn.functional.cross_entropy(logits.float(), torch.cat([y1, y2]))
                total = total + cfg.lambda_sup * sup_real
                terms = {**terms, "sup_real": sup_real.detach(), "total": total.detach()}
        opt.zero_grad(set_to_none=True)
        total.backward()
        value = float(total.detach())
        bad = broadcast_flag(not np.isfinite(value), dist_info)
        if bad:
            check_finite(float("nan") if np.isfinite(value) else value, step, "the hybrid loss",
                         str(ckpt_path) if ckpt_path.exists() else None)
        opt.step()
        terms_acc.append({name: float(v) for name, v in terms.items()})
        pairs_since += cfg.batch_size
        done = step + 1
        if done % cfg.log_every == 0 or done == total_steps:
            now = time.perf_counter()
            mean = {n: all_reduce_mean(float(np.mean([r[n] for r in terms_acc])), dist_info)
                    for n in terms_acc[0]}
            rate = pairs_since / max(now - t_last, 1e-9)
            logger.log({**mean, "epoch": done / batches.steps_per_epoch, "pairs_per_s": rate,
                        "lr": cfg.lr}, step=done)
            bar.set_postfix({n: f"{v:.3g}" for n, v in mean.items() if n != "sup_real"} |
                            {"pairs/s": f"{rate:.0f}"})
            terms_acc, t_last, pairs_since = [], now, 0
        if main and (done % cfg.sample_every == 0 or done == total_steps):
            samples(done)
        if main and (done % cfg.ckpt_every == 0 or done == total_steps):
            checkpoint(done)
        bar.update(1)
    bar.close()
    logger.close()
    if callback:
        callback("end", model)
    barrier(dist_info)
    if main and start_step < total_steps:
        rows = read_log(run.log)
        summary = {"steps": total_steps, "num_pairs": num_pairs, "candidate_pairs": total_pairs,
                   "n_kl0_train": len(kl0.images), "n_kl2_train": len(kl2.images),
                   "first_terms": rows[0] if rows else None, "last_terms": rows[-1] if rows else None,
                   "checkpoint": store_path(ckpt_path, out), "world_size": dist_info.world_size}
        atomic_write_text(run.summary, json.dumps(summary, indent=2))
    if not run.summary.exists():
        return {}
    summary = json.loads(run.summary.read_text())
    return {**summary, "checkpoint": load_path(summary["checkpoint"], out, legacy=True),
            "out": str(out)}


def read_log(path: Path) -> list[dict[str, float]]:
    """The rows of a run's log.csv as floats (empty cells dropped)."""
    import csv

    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(fh)]
