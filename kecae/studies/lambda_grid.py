"""`kecae study lambda-grid`: one KECAE per (λ1, λ2), SVM-RBF separability of hK and hN of test
images (the paper's Fig. 3).

Every cell shares the run's data, supervisor, preset, pairs, batch and seed; only the two loss
weights differ. The section ``lambda_grid`` of ``RUN/metrics.json`` holds the grid; each cell is a
KECAE run under ``RUN/studies/lambda_grid/`` with its measured ``separability.json``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kecae import CLASS_GRADES
from kecae.config import setting
from kecae.data.cache import load_image_set
from kecae.data.catalog import task_grades
from kecae.device import select_device
from kecae.errors import KecaeError
from kecae.files import atomic_write_text
from kecae.metrics_file import jsonable, write_section
from kecae.registry import PRESETS
from kecae.results import LambdaGrid
from kecae.reuse import differences
from kecae.runfolder import KECAERun, RunLayout
from kecae.studies.subruns import (
    KECAEStudyConfig,
    Progress,
    check_sub_run,
    kecae_run_config,
    resolve_data,
)
from kecae.training.config import KECAETrainConfig, kecae_model_config

# The trainer, checkpoints and measures (torch, SciPy, scikit-learn) are imported when the grid
# trains: the command line imports this module for its settings and stays light.

#: KECAE settings that must match for a grid cell to be resumed (more steps may be added).
KECAE_REUSE_FIELDS = (
    "data",
    "supervisor",
    "supervisor_mode",
    "preset",
    "model",
    "num_pairs",
    "oversample",
    "batch_size",
    "lr",
    "lambda_sup",
    "lambda_lda",
    "lda_eps",
    "lda_mode",
    "seed",
)


@dataclass
class LambdaGridConfig(KECAEStudyConfig):
    """Fig. 3: one KECAE per (λ1, λ2), SVM-RBF accuracy on the latents of test images."""

    lambda1: list[float] = field(default_factory=lambda: [1e-5, 1e-3, 1e-1, 1.0])  # rows: J_SUP
    lambda2: list[float] = field(default_factory=lambda: [1e-5, 1e-3, 1e-1, 1.0])  # cols: J_LDA
    kecae_steps: int = 300  # optimiser steps per KECAE (scaled down from the paper's 1,000 epochs)
    supervisor: str | None = None  # default RUN/supervisor/best.pt, else the run's supervisor
    preset: str | None = setting(None, choices=PRESETS)  # default: the run's KECAE preset
    batch_size: int | None = None  # default: the run's KECAE batch
    num_pairs: int | None = None  # default: the run's N pairs
    images: int = 1000  # most test images for the SVM (half per class, 5-fold)
    seed: int | None = None  # default: the run's KECAE seed (same init and batches in every cell)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("lambda1", "lambda2"):
            values = getattr(self, name)
            if not values or min(values) < 0 or len(set(values)) != len(values):
                raise ValueError(
                    f"{name} must be distinct weights >= 0, e.g. 1e-5 1e-3 1e-1 1; got {values}"
                )
        if self.kecae_steps < 1:
            raise ValueError(f"kecae_steps must be >= 1, got {self.kecae_steps}")
        if self.images < 10:
            raise ValueError(f"images must be >= 10 (5-fold SVM, both classes), got {self.images}")


@dataclass
class CellResult:
    """What one cell measured (its ``separability.json``), and what it was measured with."""

    svm_hk_accuracy: float
    svm_hk_std: float
    svm_hn_accuracy: float
    svm_hn_std: float
    final_mse: float | None  # J_MSE of the cell's last log row
    latent_dim: int
    steps: int
    n_images: int
    seed: int


def run_lambda_grid(cfg: LambdaGridConfig) -> dict[str, Any]:
    """Train one KECAE per (λ1, λ2), measure SVM separability; write and return ``lambda_grid``.

    Accuracies are 5-fold SVM-RBF on hK (and hN) of the same test images.
    """
    run = Path(cfg.run).resolve()
    layout = RunLayout(run)
    template = _cell_template(cfg, layout)
    data = template.data
    size = int(kecae_model_config(template).image_size)
    images, labels = latent_sample(
        data,
        size,
        cfg.images,
        template.seed,
        cfg.cache_dir,
        template.patient_regex,
        task_grades(template.grades),
    )
    if min(np.bincount(labels, minlength=2)) < 5:
        raise KecaeError(
            f"the test split of {data} has fewer than 5 images of a class: the "
            "5-fold SVM needs at least 5 KL-0 and 5 KL-2 test images"
        )

    # every cell: trained once, measured once (a rerun reads its separability.json)
    shape = (len(cfg.lambda1), len(cfg.lambda2))
    hk, hk_std, hn, hn_std, mse = (np.full(shape, np.nan) for _ in range(5))
    progress = Progress("lambda-grid", shape[0] * shape[1])
    for i, l1 in enumerate(cfg.lambda1):
        for j, l2 in enumerate(cfg.lambda2):
            cell = layout.studies.lambda_cell(l1, l2)
            kcfg = dataclasses.replace(template, out=str(cell.folder), lambda_sup=l1, lambda_lda=l2)
            result = _measured_cell(cfg, kcfg, layout, cell, images, labels)
            hk[i, j], hk_std[i, j] = result.svm_hk_accuracy, result.svm_hk_std
            hn[i, j], hn_std[i, j] = result.svm_hn_accuracy, result.svm_hn_std
            mse[i, j] = np.nan if result.final_mse is None else result.final_mse
            progress.step(
                f"λ1 = {l1:g}, λ2 = {l2:g}: SVM on hK {result.svm_hk_accuracy:.4f}, "
                f"on hN {result.svm_hn_accuracy:.4f}"
            )

    section = LambdaGrid(
        lambda1=list(cfg.lambda1),
        lambda2=list(cfg.lambda2),
        svm_hk_accuracy=hk.tolist(),
        svm_hk_accuracy_std=hk_std.tolist(),
        svm_hn_accuracy=hn.tolist(),
        svm_hn_accuracy_std=hn_std.tolist(),
        final_mse=mse.tolist(),
        steps=cfg.kecae_steps,
        n_images=len(labels),
        folds=5,
        preset=template.preset,
        batch_size=template.batch_size,
        num_pairs=template.num_pairs,
        seed=template.seed,
        image_size=size,
        note="rows λ1 (J_SUP weight), columns λ2 (J_LDA weight); one KECAE per cell, trained "
        "with the same data, supervisor, preset, pairs, batch and seed; SVM-RBF 5-fold "
        "accuracy on the latents of the same test images. final_mse: J_MSE of the last log "
        "row (a weight that wrecks reconstruction shows here).",
    )
    write_section(run, LambdaGrid.NAME, section.to_dict())
    return jsonable(section.to_dict())


def _cell_template(cfg: LambdaGridConfig, layout: RunLayout) -> KECAETrainConfig:
    """The training settings every cell shares: the run's KECAE config with the grid's own."""
    base = kecae_run_config(layout.root) or KECAETrainConfig()
    data = resolve_data(cfg.data, layout.root)
    own = layout.supervisor.best
    supervisor = cfg.supervisor or (str(own) if own.is_file() else base.supervisor)
    if base.supervisor_mode == "frozen" and not (supervisor and Path(supervisor).is_file()):
        raise KecaeError(
            f"no supervisor checkpoint: {own} is absent; train one (`kecae "
            "train-classifier --out DIR/supervisor`) or pass --supervisor"
        )
    return dataclasses.replace(
        base,
        data=data,
        supervisor=str(Path(supervisor).resolve()) if supervisor else "",
        preset=cfg.preset or base.preset,
        batch_size=cfg.batch_size or base.batch_size,
        num_pairs=cfg.num_pairs or base.num_pairs,
        seed=base.seed if cfg.seed is None else cfg.seed,
        max_steps=cfg.kecae_steps,
        log_every=min(base.log_every, cfg.kecae_steps),
        sample_every=cfg.kecae_steps,
        ckpt_every=cfg.kecae_steps,
        device=cfg.device,
        cache_dir=cfg.cache_dir,
        progress=cfg.progress,
        resume=True,
    )


def latent_sample(
    data: str,
    size: int,
    n_images: int,
    seed: int,
    cache_dir: str | None,
    patient_regex: str | None = None,
    grades: tuple[int, int] = CLASS_GRADES,
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n_images`` test images, half per class (seeded), and their labels (0/1)."""

    rng = np.random.default_rng(seed)
    picks, labels = [], []
    for label, grade in enumerate(grades):
        images = load_image_set(
            data,
            size=size,
            split="test",
            grades=(grade,),
            cache_dir=cache_dir,
            progress=False,
            patient_regex=patient_regex,
        )
        idx = np.sort(rng.permutation(len(images.images))[: n_images // 2])
        picks.append(np.asarray(images.images[idx], np.float32))
        labels.append(np.full(len(idx), label))
    return np.concatenate(picks), np.concatenate(labels)


def _measured_cell(
    cfg: LambdaGridConfig,
    kcfg: KECAETrainConfig,
    layout: RunLayout,
    cell: KECAERun,
    images: np.ndarray,
    labels: np.ndarray,
) -> CellResult:
    """One cell's result: read when it was measured with these settings, else trained (or
    resumed) and measured now."""
    check_sub_run(cell.folder, kcfg, KECAE_REUSE_FIELDS)
    want = {"steps": cfg.kecae_steps, "n_images": len(labels), "seed": kcfg.seed}
    path = layout.studies.lambda_separability(cell)
    if path.is_file():
        stored = json.loads(path.read_text())
        if not differences(stored, want, fields=want):
            return CellResult(
                **{f.name: stored.get(f.name) for f in dataclasses.fields(CellResult)}
            )
    result = _train_and_measure(cfg, kcfg, cell, images, labels)
    atomic_write_text(path, json.dumps(jsonable(dataclasses.asdict(result)), indent=2))
    return result


def _train_and_measure(
    cfg: LambdaGridConfig,
    kcfg: KECAETrainConfig,
    cell: KECAERun,
    images: np.ndarray,
    labels: np.ndarray,
) -> CellResult:
    """Train (or resume) one cell's KECAE, then measure hK / hN separability."""
    from kecae import inference
    from kecae.checkpoint import load_checkpoint
    from kecae.evaluation.metrics import svm_separability
    from kecae.training import kecae_trainer

    if cell.last.is_file():
        done = int(load_checkpoint(cell.last, kind="kecae")["step"])
        if done > cfg.kecae_steps:
            raise KecaeError(
                f"{cell.last} was trained for {done} steps, more than the "
                f"{cfg.kecae_steps} asked: pass --kecae-steps {done}, or delete "
                f"{cell.folder.parent} to run the grid again"
            )
    summary = kecae_trainer.train_kecae(kcfg)
    device = select_device(cfg.device)
    model, _ = inference.load_kecae(str(cell.last), device)
    hk, hn = inference.encode(model, images, device=device)
    key = svm_separability(hk, labels, seed=kcfg.seed)
    nonkey = svm_separability(hn, labels, seed=kcfg.seed)
    last = summary.get("last_terms") or {}
    return CellResult(
        svm_hk_accuracy=key["mean"],
        svm_hk_std=key["std"],
        svm_hn_accuracy=nonkey["mean"],
        svm_hn_std=nonkey["std"],
        final_mse=last.get("mse"),
        latent_dim=int(hk.shape[1]),
        steps=cfg.kecae_steps,
        n_images=len(labels),
        seed=kcfg.seed,
    )


def format_lambda_grid(section: dict[str, Any]) -> str:
    """Fig. 3 as text: SVM accuracy on hK (and hN in brackets), rows λ1, columns λ2."""
    grid = LambdaGrid.from_dict(section)
    head = "λ1 \\ λ2".ljust(10) + "".join(f"{v:>16g}" for v in grid.lambda2)
    lines = [
        f"SVM-RBF accuracy % on hK (hN), {grid.steps} steps, {grid.n_images} test images",
        head,
    ]
    for l1, hk_row, hn_row in zip(
        grid.lambda1, grid.svm_hk_accuracy, grid.svm_hn_accuracy, strict=True
    ):
        cells = "".join(
            f"{_pct(a)} ({_pct(b)})".rjust(16) for a, b in zip(hk_row, hn_row, strict=True)
        )
        lines.append(f"{l1:<10g}{cells}")
    return "\n".join(lines)


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.1f}"
