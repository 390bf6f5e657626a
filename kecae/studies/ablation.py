"""`kecae study ablation --run DIR`: which KECAE options make the key exchange work, measured.

Every row trains one KECAE on the same data, with the same frozen supervisor, judged by the same
independent judge on the same test pairs, for the same budget (optimiser steps × batch, learning
rate, seed); only the options of the row differ. Each row is then evaluated with
:func:`kecae.evaluation.evaluate.evaluate` (the fair metrics, each beside its control). The best
rows (by targets met, then by how close the others came) get more seeds. Sub-runs live under
``DIR/studies/ablation/<row>/seed_<k>/`` (a rerun reuses finished ones); the section ``ablation``
of ``DIR/metrics.json`` holds the table, and ``DIR/studies/ablation/table.md`` a Markdown copy.

The rows are absolute: each starts from the paper's architecture at the CPU size (64 px,
channel width 0.125, seven blocks, a 1×1 latent, decoded exchange, λ1 = 1e-2, λ2 = 1e-3) and
names every option it changes, so the table does not move when a preset does.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kecae.config import setting
from kecae.data.catalog import grades_of
from kecae.errors import KecaeError
from kecae.files import atomic_write_text
from kecae.results import (
    KL0_TO_KL2,
    KL2_TO_KL0,
    Ablation,
    AblationCell,
    AblationColumn,
    AblationRowResult,
    ClassifierRates,
    ExchangeSuccess,
    Fidelity,
    FidelityDirection,
    GradeMatch,
    Plausibility,
    Quality,
    Separability,
    Target,
    lookup,
    read_targets,
)
from kecae.runfolder import (
    AblationRun,
    RunLayout,
    differences,
    read_metrics,
    store_path,
    write_section,
    write_sections,
)
from kecae.studies.subruns import kecae_run_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AblationRow:
    """One row: model fields and training fields changed from the CPU-size paper baseline."""

    name: str
    description: str
    model: dict[str, Any] = field(default_factory=dict)  # KECAEConfig fields
    train: dict[str, Any] = field(default_factory=dict)  # KECAETrainConfig fields


#: The paper's architecture at the CPU size: what every row starts from.
BASE_MODEL: dict[str, Any] = {"image_size": 64, "width": 0.125}

_SPATIAL = {"depth": 4}
_POOLED = {"depth": 4, "key_pool": "mean"}
_WARP = {"depth": 4, "key_pool": "mean", "exchange": "warp"}
_NO_LDA = {"lambda_sup": 0.1, "lambda_lda": 0.0}
_WARP_LOSS = {**_NO_LDA, "lambda_disp": 0.01}
_G32 = {**_WARP, "warp_grid": 32}
_G32_EDIT = {**_G32, "edit": True}
_EDIT_LOSS = {
    **_WARP_LOSS,
    "lambda_mask_area": 0.1,
    "lambda_mask_tv": 0.01,
    "lambda_mask_self": 0.1,
}

#: Every row the ablation knows, in table order.
ROWS: dict[str, AblationRow] = {
    r.name: r
    for r in [
        AblationRow(
            "paper",
            "the paper's model and loss at 64 px: 1×1 latent, decoded exchange, "
            "λ1 = 1e-2, λ2 = 1e-3",
        ),
        AblationRow(
            "paper_loglda",
            "paper, J_LDA in its bounded form log(1 + ratio)",
            train={"lda_mode": "log"},
        ),
        AblationRow("paper_l1", "paper, L1 reconstruction instead of MSE", train={"recon": "l1"}),
        AblationRow("spatial", "4×4 spatial latent (depth 4), λ1 = 0.1, λ2 = 0", _SPATIAL, _NO_LDA),
        AblationRow(
            "spatial_pooled",
            "+ position-free key (the key map averaged over the grid)",
            _POOLED,
            _NO_LDA,
        ),
        AblationRow(
            "residual",
            "+ residual exchange X′ = X + blur(D(h′) − D(h)), σ 1 px",
            {**_POOLED, "exchange": "residual"},
            _NO_LDA,
        ),
        AblationRow(
            "warp_free",
            "+ warp exchange (8×8 field, ≤ 3 px), no displacement penalty",
            _WARP,
            _NO_LDA,
        ),
        AblationRow("warp", "+ warp exchange, displacement penalty 0.01 px⁻²", _WARP, _WARP_LOSS),
        AblationRow(
            "warp_grid16",
            "warp with a 16×16 displacement grid",
            {**_WARP, "warp_grid": 16},
            _WARP_LOSS,
        ),
        AblationRow(
            "warp_fold",
            "warp + fold penalty relu(0.5 − det J), weight 1",
            _WARP,
            {**_WARP_LOSS, "lambda_fold": 1.0},
        ),
        AblationRow(
            "warp_perturb",
            "warp, the supervisor sees X′ shifted / blurred by up to 1 px",
            _WARP,
            {**_WARP_LOSS, "sup_perturb": 1.0},
        ),
        AblationRow(
            "warp_residual",
            "warp + a blurred residual for new bone, L1 edit penalty 10",
            {**_WARP, "warp_residual": True},
            {**_WARP_LOSS, "lambda_edit": 10.0},
        ),
        AblationRow(
            "warp_cycle",
            "warp + re-encoding X′ gives back its latents (weight 1)",
            _WARP,
            {**_WARP_LOSS, "lambda_cycle": 1.0},
        ),
        AblationRow(
            "warp_same",
            "warp + a key exchanged within one grade changes little (weight 1)",
            _WARP,
            {**_WARP_LOSS, "lambda_same": 1.0},
        ),
        AblationRow(
            "warp_probes",
            "warp + linear grade probes: on hK (weight 0.1), adversarial on hN (0.1)",
            _WARP,
            {**_WARP_LOSS, "lambda_key_cls": 0.1, "lambda_nonkey_adv": 0.1},
        ),
        AblationRow("warp_sup03", "warp with λ1 = 0.3", _WARP, {**_WARP_LOSS, "lambda_sup": 0.3}),
        AblationRow(
            "warp_wide",
            "warp, channel width 0.25 instead of 0.125",
            {**_WARP, "width": 0.25},
            _WARP_LOSS,
        ),
        AblationRow(
            "combo_g16",
            "warp_grid16 + width 0.25 + cycle",
            {**_WARP, "warp_grid": 16, "width": 0.25},
            {**_WARP_LOSS, "lambda_cycle": 1.0},
        ),
        AblationRow(
            "combo_sup03",
            "warp + λ1 = 0.3 + width 0.25 + cycle",
            {**_WARP, "width": 0.25},
            {**_WARP_LOSS, "lambda_sup": 0.3, "lambda_cycle": 1.0},
        ),
        AblationRow(
            "combo_all",
            "warp_grid16 + λ1 = 0.3 + width 0.25 + cycle + probes",
            {**_WARP, "warp_grid": 16, "width": 0.25},
            {
                **_WARP_LOSS,
                "lambda_sup": 0.3,
                "lambda_cycle": 1.0,
                "lambda_key_cls": 0.1,
                "lambda_nonkey_adv": 0.1,
            },
        ),
        AblationRow(
            "warp_grid32",
            "warp with a 32×32 displacement grid",
            {**_WARP, "warp_grid": 32},
            _WARP_LOSS,
        ),
        AblationRow(
            "warp_donor",
            "warp, J_SUP asks for the supervisor's call on the donor, not its grade label",
            _WARP,
            {**_WARP_LOSS, "sup_target": "donor"},
        ),
        AblationRow(
            "combo_g32",
            "warp_grid32 + λ1 = 0.3 + width 0.25 + cycle",
            {**_WARP, "warp_grid": 32, "width": 0.25},
            {**_WARP_LOSS, "lambda_sup": 0.3, "lambda_cycle": 1.0},
        ),
        AblationRow(
            "combo_g32_donor",
            "combo_g32 with J_SUP on the supervisor's call on the donor",
            {**_WARP, "warp_grid": 32, "width": 0.25},
            {**_WARP_LOSS, "lambda_sup": 0.3, "lambda_cycle": 1.0, "sup_target": "donor"},
        ),
        AblationRow(
            "g32_patch",
            "warp_grid32 + a grade-conditional patch discriminator on crops around the change "
            "(weight 0.1, ramped over 500 steps)",
            _G32,
            {**_WARP_LOSS, "lambda_patch_adv": 0.1},
        ),
        AblationRow(
            "g32_edit",
            "warp_grid32 + the masked appearance edit; mask area above 5 % and the control's mask "
            "weight 0.1, TV 0.01",
            _G32_EDIT,
            _EDIT_LOSS,
        ),
        AblationRow(
            "g32_edit_m1",
            "g32_edit with the mask area (and the control's) priced 1.0 (ten times)",
            _G32_EDIT,
            {**_EDIT_LOSS, "lambda_mask_area": 1.0, "lambda_mask_self": 1.0},
        ),
        AblationRow(
            "g32_edit_patch",
            "g32_edit + the patch discriminator (weight 0.1, ramped over 500 steps)",
            _G32_EDIT,
            {**_EDIT_LOSS, "lambda_patch_adv": 0.1},
        ),
        AblationRow(
            "g32_edit_probes",
            "g32_edit + grade probes: positive on hK (0.1), adversarial on hN (0.1)",
            _G32_EDIT,
            {**_EDIT_LOSS, "lambda_key_cls": 0.1, "lambda_nonkey_adv": 0.1},
        ),
        AblationRow(
            "g32_decoded_patch",
            "g32_edit_patch with G = warp(X) + D(h′) − warp(D(h)): the mask places the "
            "decoder's own change (sharp), the head predicts the mask alone",
            {**_G32_EDIT, "edit_appearance": "decoded"},
            {**_EDIT_LOSS, "lambda_patch_adv": 0.1},
        ),
        AblationRow(
            "g32_decoded_free",
            "g32_decoded_patch without the control's mask price: with G = warp(X) + D(h′) − "
            "warp(D(h)) the control is the recipient whatever its mask, and that price drives "
            "the shared head's mask to 0 everywhere",
            {**_G32_EDIT, "edit_appearance": "decoded"},
            {**_EDIT_LOSS, "lambda_patch_adv": 0.1, "lambda_mask_self": 0.0},
        ),
        AblationRow(
            "g32_decoded",
            "g32_edit with G = warp(X) + D(h′) − warp(D(h)) (no discriminator)",
            {**_G32_EDIT, "edit_appearance": "decoded"},
            _EDIT_LOSS,
        ),
    ]
}


def _judge(name: str, direction: str) -> str:
    return ExchangeSuccess.path(ClassifierRates.key(name, "judge", direction))


def _fidelity(name: str, direction: str) -> str:
    return Fidelity.path(FidelityDirection.key(name, direction))


#: The row's timing file, beside its metrics (see :class:`kecae.runfolder.AblationRun`).
TIMING = "timing"

#: Table columns: name -> what they show (``section.key`` of the row's metrics.json, kind, which
#: side is better). kind "pct" shows percent.
COLUMNS: dict[str, AblationColumn] = {
    "agreement KL-0→KL-2": AblationColumn(_judge("agreement", KL0_TO_KL2), "pct", "high"),
    "agreement KL-2→KL-0": AblationColumn(_judge("agreement", KL2_TO_KL0), "pct", "high"),
    "label-only X′1": AblationColumn(_judge("raw", KL0_TO_KL2), "pct", "high"),
    "control X′1": AblationColumn(_judge("control", KL0_TO_KL2), "pct", "info"),
    "label-only X′2": AblationColumn(_judge("raw", KL2_TO_KL0), "pct", "high"),
    "control X′2": AblationColumn(_judge("control", KL2_TO_KL0), "pct", "info"),
    "plausible X′ / real": AblationColumn(Plausibility.path("ratio_to_real"), "num", "high"),
    "key transfer KL-0→KL-2": AblationColumn(
        _fidelity("key_transfer_median", KL0_TO_KL2), "num", "high"
    ),
    "key transfer KL-2→KL-0": AblationColumn(
        _fidelity("key_transfer_median", KL2_TO_KL0), "num", "high"
    ),
    "key transfer vs X̂, KL-0→KL-2": AblationColumn(
        _fidelity("recon_key_transfer_median", KL0_TO_KL2), "num", "info"
    ),
    "osteophytes X′1 (real KL-2)": AblationColumn(
        Fidelity.path("osteophyte_rate_x1_ex"), "pct", "info"
    ),
    "osteophytes X′2 (real KL-0)": AblationColumn(
        Fidelity.path("osteophyte_rate_x2_ex"), "pct", "info"
    ),
    "osteophyte removal X′2": AblationColumn(
        Fidelity.path("osteophyte_removal_rate"), "pct", "high"
    ),
    "caricature excess X′1": AblationColumn(
        GradeMatch.key(KL0_TO_KL2, "caricature_excess"), "pct", "low"
    ),
    "caricature excess X′2": AblationColumn(
        GradeMatch.key(KL2_TO_KL0, "caricature_excess"), "pct", "low"
    ),
    "JSW Wasserstein X′2 px": AblationColumn(
        GradeMatch.key(KL2_TO_KL0, "jsw.wasserstein"), "num", "low"
    ),
    "overshoot X′2": AblationColumn(GradeMatch.key(KL2_TO_KL0, "overshoot_rate"), "pct", "low"),
    "X′2 disagreed: osteophyte kept": AblationColumn(
        GradeMatch.key(KL2_TO_KL0, "failures.osteophyte_extra"), "int", "low"
    ),
    "X′2 disagreed: joint too narrow": AblationColumn(
        GradeMatch.key(KL2_TO_KL0, "failures.joint_narrow"), "int", "low"
    ),
    "X′2 disagreed: artefact / other": AblationColumn(
        GradeMatch.key(KL2_TO_KL0, "failures.other"), "int", "low"
    ),
    "mask area X′2": AblationColumn(Quality.path("edit_mask_area_kl2_to_kl0"), "pct", "info"),
    "refused X′": AblationColumn(Fidelity.path("refusal_rate"), "pct", "low"),
    "non-key SSIM": AblationColumn(Fidelity.path("nonkey_ssim_median"), "num", "high"),
    "SVM hK": AblationColumn(Separability.path("svm_hk_accuracy"), "pct", "high"),
    "SVM hN": AblationColumn(Separability.path("svm_hn_accuracy"), "pct", "low"),
    "recon PSNR dB": AblationColumn(Quality.path("recon_psnr"), "db", "high"),
    "recon SSIM": AblationColumn(Quality.path("recon_ssim"), "num", "high"),
    "pairs/s": AblationColumn(f"{TIMING}.pairs_per_s", "int", "high"),
    "train s": AblationColumn(f"{TIMING}.train_seconds", "int", "low"),
}


@dataclass
class AblationConfig:
    """The ablation: rows of KECAE options on one shared budget."""

    run: str = setting(
        "", required=True, metavar="DIR"
    )  # run folder with the data, supervisor/, judge/
    rows: list[str] = setting(factory=lambda: list(ROWS), choices=ROWS)  # rows to train (all)
    steps: int = 2000  # optimiser steps per row (the demo's budget)
    batch_size: int = 32  # pairs per step (paper: 32)
    lr: float = 1e-3  # Adam learning rate of every row
    num_pairs: int = 100_000  # N pairs sampled from the train split (paper: 100k)
    eval_pairs: int = 400  # test pairs each row is evaluated on (the same for every row)
    seeds: int = 1  # seeds per row
    best_rows: int = 2  # rows that get best_seeds seeds
    best_seeds: int = 3  # seeds of the best rows
    data: str | None = None  # default: the run's KECAE data set
    supervisor: str | None = None  # default: DIR/supervisor/best.pt
    judge: str | None = None  # default: DIR/judge/best.pt
    device: str = "auto"  # auto / cpu / cuda
    cache_dir: str | None = None  # preprocessed-image cache
    progress: bool = True  # the trainer's progress bar

    def __post_init__(self) -> None:
        if not self.run:
            raise ValueError("run is empty: pass the run folder (e.g. runs/demo)")
        unknown = [r for r in self.rows if r not in ROWS]
        if not self.rows or unknown:
            raise ValueError(
                f"unknown or missing row(s) {unknown or self.rows}: choose from {list(ROWS)}"
            )
        for name in ("steps", "batch_size", "num_pairs", "eval_pairs", "seeds", "best_seeds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.best_rows < 0:
            raise ValueError(f"best_rows must be >= 0, got {self.best_rows}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr}")


@dataclass(frozen=True)
class SharedInputs:
    """What every row shares: the data set (and its patient regex), supervisor and judge."""

    data: str
    supervisor: str
    judge: str
    patient_regex: str | None
    grades: tuple[int, int] = (0, 2)  # the run's grade pair


def row_train_config(
    row: AblationRow, cfg: AblationConfig, *, inputs: SharedInputs, out: Path, seed: int
) -> Any:
    """The KECAE training configuration of one row and seed."""
    from kecae.training.config import KECAETrainConfig

    return KECAETrainConfig(
        data=inputs.data,
        out=str(out),
        supervisor=inputs.supervisor,
        preset="paper",
        model={**BASE_MODEL, **row.model},
        num_pairs=cfg.num_pairs,
        max_steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=seed,
        log_every=min(10, cfg.steps),
        sample_every=cfg.steps,
        ckpt_every=max(1, cfg.steps // 4),
        device=cfg.device,
        cache_dir=cfg.cache_dir,
        progress=cfg.progress,
        resume=True,
        patient_regex=inputs.patient_regex,
        grades=list(inputs.grades),
        **row.train,
    )


def _run_row_seed(
    row: AblationRow, cfg: AblationConfig, inputs: SharedInputs, folder: AblationRun, seed: int
) -> dict[str, Any]:
    """Train (or resume, or reuse) one row at one seed and evaluate it; returns its metrics."""
    from kecae.checkpoint import load_checkpoint
    from kecae.evaluation.evaluate import EvaluateConfig, evaluate
    from kecae.training.kecae_trainer import train_kecae
    from kecae.training.logs import read_log

    kcfg = row_train_config(row, cfg, inputs=inputs, out=folder.kecae.folder, seed=seed)
    # a row folder trained with other settings is refused by the trainer's strict resume
    want = {"steps": cfg.steps, "eval_pairs": cfg.eval_pairs, "judge": inputs.judge}
    done = read_metrics(folder.root)
    if "targets" in done and not differences(done.get("ablation_run") or {}, want):
        return done
    ckpt = folder.kecae.last
    step = int(load_checkpoint(ckpt, kind="kecae")["step"]) if ckpt.is_file() else 0
    if step > cfg.steps:
        raise KecaeError(
            f"{ckpt} has more than --steps {cfg.steps} steps: pass the same --steps "
            f"as before, or delete {folder.root}"
        )
    if step < cfg.steps or not folder.timing.is_file():
        t0 = time.perf_counter()
        train_kecae(kcfg)
        rows = read_log(folder.kecae.log).rows
        rates = [r["pairs_per_s"] for r in rows if "pairs_per_s" in r][1:]  # row 1: warm-up
        timing = {
            "train_seconds": time.perf_counter() - t0,
            "steps": cfg.steps,
            "resumed_at": step,
            "pairs_per_s": float(np.median(rates)) if rates else math.nan,
        }
        atomic_write_text(folder.timing, json.dumps(timing, indent=2))
    timing = json.loads(folder.timing.read_text())
    evaluate(
        EvaluateConfig(
            run=str(folder.root),
            kecae_checkpoint=str(ckpt),
            judge=inputs.judge,
            supervisor=inputs.supervisor,
            data=inputs.data,
            patient_regex=inputs.patient_regex,
            pairs=cfg.eval_pairs,
            seed=0,
            device=cfg.device,
            cache_dir=cfg.cache_dir,
            progress=cfg.progress,
        )
    )
    return write_sections(folder.root, {TIMING: timing, "ablation_run": want})


def _score(metrics: dict[str, Any]) -> tuple[int, float]:
    """(targets met, mean closeness to the targets in [0, 1]): the row ranking."""
    met, closeness = 0, []
    for t in read_targets(metrics.get("targets")).values():
        met += t.met is True
        closeness.append(_closeness(t))
    return met, float(np.mean(closeness)) if closeness else 0.0


def _closeness(t: Target) -> float:
    """How close a value came to its target: 1 when met, 0 when not computed."""
    value, threshold = t.value, t.threshold
    if value is None or not math.isfinite(value):
        return 0.0
    if t.op == ">=":
        return float(np.clip(value / threshold, 0, 1)) if threshold > 0 else 1.0
    return float(np.clip(threshold / max(value, 1e-9), 0, 1))


def _summarise(row: AblationRow, per_seed: list[dict[str, Any]]) -> AblationRowResult:
    cells = {}
    for name, column in COLUMNS.items():
        values = [lookup(m, column.metric) for m in per_seed]
        finite = [float(v) for v in values if v is not None and math.isfinite(v)]
        cells[name] = AblationCell(
            mean=float(np.mean(finite)) if finite else None,
            std=float(np.std(finite, ddof=1)) if len(finite) > 1 else None,
            values=[None if v is None else float(v) for v in values],
        )
    scores = [_score(m) for m in per_seed]
    targets = {
        name: [read_targets(m["targets"])[name].met for m in per_seed]
        for name in per_seed[0].get("targets", {})
    }
    return AblationRowResult(
        name=row.name,
        description=row.description,
        model={**BASE_MODEL, **row.model},
        train=dict(row.train),
        seeds=len(per_seed),
        cells=cells,
        targets_met=float(np.mean([s[0] for s in scores])),
        closeness=float(np.mean([s[1] for s in scores])),
        targets=targets,
    )


def run_ablation(cfg: AblationConfig) -> dict[str, Any]:
    """Train and evaluate every row (and the best rows at more seeds); write ``ablation``."""
    run = Path(cfg.run).resolve()
    layout = RunLayout(run)
    inputs = _shared_inputs(cfg, layout)
    seeds = list(range(cfg.seeds))

    # every row at the first seeds, ranked; the best rows at more seeds
    results: dict[str, list[dict[str, Any]]] = {}
    t_start = time.perf_counter()
    for k, name in enumerate(cfg.rows):
        results[name] = [
            _run_row_seed(ROWS[name], cfg, inputs, layout.studies.ablation_row(name, s), s)
            for s in seeds
        ]
        met, close = _score(results[name][0])
        log.info(
            "[ablation %d/%d] %s: %d targets met, closeness %.3f (%.0f s in all)",
            k + 1,
            len(cfg.rows),
            name,
            met,
            close,
            time.perf_counter() - t_start,
        )
    ranked = sorted(cfg.rows, key=lambda n: _score(results[n][0]), reverse=True)
    best = ranked[: cfg.best_rows]
    extra = [s for s in range(cfg.best_seeds) if s not in seeds]
    for name in best:
        for s in extra:
            results[name].append(
                _run_row_seed(ROWS[name], cfg, inputs, layout.studies.ablation_row(name, s), s)
            )
            log.info("[ablation] best row %s, seed %d done", name, s)

    # the table
    section = Ablation(
        rows=[_summarise(ROWS[n], results[n]) for n in cfg.rows],
        ranking=ranked,
        best=best,
        columns=COLUMNS,
        budget={
            "steps": cfg.steps,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "pairs_seen": cfg.steps * cfg.batch_size,
            "num_pairs": cfg.num_pairs,
            "eval_pairs": cfg.eval_pairs,
            "seeds": seeds,
            "best_seeds": list(range(cfg.best_seeds)),
        },
        shared={
            "data": store_path(inputs.data, run),
            "supervisor": store_path(inputs.supervisor, run),
            "judge": store_path(inputs.judge, run),
            "patient_regex": inputs.patient_regex,
        },
        examples={
            n: store_path(layout.studies.ablation_row(n, 0).eval.examples, run) for n in best
        },
        note="every row: the same data, frozen supervisor, judge, test pairs and budget; rows "
        "start from the paper's architecture at 64 px, width 0.125 and name every option "
        "they change. Cells are means over the row's seeds (std where > 1 seed).",
    )
    written = section.to_dict()
    write_section(run, Ablation.NAME, written)
    atomic_write_text(layout.studies.ablation_table, format_ablation_markdown(written))
    return written


def _shared_inputs(cfg: AblationConfig, layout: RunLayout) -> SharedInputs:
    """The shared inputs: data set (and its patient regex), supervisor and judge, absolute."""
    base = kecae_run_config(layout.root)
    data = cfg.data or (base.data if base else None)
    if not data:
        raise KecaeError(
            f"no data set given and {layout.kecae.config} does not name one: pass --data"
        )
    paths = {
        "data": data,
        "supervisor": cfg.supervisor or str(layout.supervisor.best),
        "judge": cfg.judge or str(layout.judge.best),
    }
    for what, path in paths.items():
        if not Path(path).exists():
            raise KecaeError(
                f"the {what} {path} does not exist: run `kecae demo --out "
                f"{layout.root}` first, or pass --{what}"
            )
    return SharedInputs(
        **{k: str(Path(v).resolve()) for k, v in paths.items()},
        patient_regex=base.patient_regex if base else None,
        grades=grades_of({"grades": base.grades} if base else None),
    )


def _cell_text(cell: AblationCell, kind: str) -> str:
    m, s = cell.mean, cell.std
    if m is None:
        return "—"
    if kind == "pct":
        return f"{100 * m:.1f}" + (f" ± {100 * s:.1f}" if s is not None else "")
    if kind == "int":
        return f"{m:.0f}"
    if kind == "db":
        return f"{m:.1f}" + (f" ± {s:.1f}" if s is not None else "")
    return f"{m:.2f}" + (f" ± {s:.2f}" if s is not None else "")


def format_ablation_markdown(section: dict[str, Any]) -> str:
    """The ablation as a Markdown table (rows in the order run, best rows marked)."""
    table = Ablation.from_dict(section)
    cols = list(table.columns)
    b = table.budget
    lines = [
        f"Budget per row: {b['steps']} steps × {b['batch_size']} pairs "
        f"({b['pairs_seen']:,} pairs), lr {b['lr']:g}; evaluated on {b['eval_pairs']} test "
        "pairs. Percentages for rates; ± is the sample std over seeds.",
        "",
        "| row | seeds | targets met | " + " | ".join(cols) + " |",
        "|---|---|---|" + "---|" * len(cols),
    ]
    for r in table.rows:
        mark = " **(best)**" if r.name in table.best else ""
        cells = [_cell_text(r.cells[c], table.columns[c].kind) for c in cols]
        lines.append(
            f"| `{r.name}`{mark} | {r.seeds} | {r.targets_met:.1f} | " + " | ".join(cells) + " |"
        )
    lines += ["", "Rows:", ""]
    lines += [f"- `{r.name}`: {r.description}" for r in table.rows]
    return "\n".join(lines) + "\n"


def format_ablation(section: dict[str, Any]) -> str:
    """A compact terminal table: the headline columns of each row."""
    table = Ablation.from_dict(section)
    show = [
        "agreement KL-0→KL-2",
        "agreement KL-2→KL-0",
        "key transfer KL-0→KL-2",
        "key transfer KL-2→KL-0",
        "non-key SSIM",
        "SVM hK",
        "SVM hN",
        "pairs/s",
    ]
    lines = [f"{'row':<24}{'met':>5}" + "".join(f"{c[:14]:>16}" for c in show)]
    for r in table.rows:
        cells = "".join(f"{_cell_text(r.cells[c], table.columns[c].kind):>16}" for c in show)
        lines.append(f"{r.name[:23]:<24}{r.targets_met:>5.1f}{cells}")
    lines.append(f"best: {', '.join(table.best)}")
    return "\n".join(lines)
