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

from kecae.utils import KecaeError, atomic_write_text

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

#: Every row the ablation knows, in table order.
ROWS: dict[str, AblationRow] = {r.name: r for r in [
    AblationRow("paper", "the paper's model and loss at 64 px: 1×1 latent, decoded exchange, "
                "λ1 = 1e-2, λ2 = 1e-3"),
    AblationRow("paper_loglda", "paper, J_LDA in its bounded form log(1 + ratio)",
                train={"lda_mode": "log"}),
    AblationRow("paper_l1", "paper, L1 reconstruction instead of MSE", train={"recon": "l1"}),
    AblationRow("spatial", "4×4 spatial latent (depth 4), λ1 = 0.1, λ2 = 0", _SPATIAL, _NO_LDA),
    AblationRow("spatial_pooled", "+ position-free key (the key map averaged over the grid)",
                _POOLED, _NO_LDA),
    AblationRow("residual", "+ residual exchange X′ = X + blur(D(h′) − D(h)), σ 1 px",
                {**_POOLED, "exchange": "residual"}, _NO_LDA),
    AblationRow("warp_free", "+ warp exchange (8×8 field, ≤ 3 px), no displacement penalty",
                _WARP, _NO_LDA),
    AblationRow("warp", "+ warp exchange, displacement penalty 0.01 px⁻²", _WARP, _WARP_LOSS),
    AblationRow("warp_grid16", "warp with a 16×16 displacement grid", {**_WARP, "warp_grid": 16},
                _WARP_LOSS),
    AblationRow("warp_fold", "warp + fold penalty relu(0.5 − det J), weight 1", _WARP,
                {**_WARP_LOSS, "lambda_fold": 1.0}),
    AblationRow("warp_perturb", "warp, the supervisor sees X′ shifted / blurred by up to 1 px",
                _WARP, {**_WARP_LOSS, "sup_perturb": 1.0}),
    AblationRow("warp_residual", "warp + a blurred residual for new bone, L1 edit penalty 10",
                {**_WARP, "warp_residual": True}, {**_WARP_LOSS, "lambda_edit": 10.0}),
    AblationRow("warp_cycle", "warp + re-encoding X′ gives back its latents (weight 1)", _WARP,
                {**_WARP_LOSS, "lambda_cycle": 1.0}),
    AblationRow("warp_same", "warp + a key exchanged within one grade changes little (weight 1)",
                _WARP, {**_WARP_LOSS, "lambda_same": 1.0}),
    AblationRow("warp_probes", "warp + linear grade probes: on hK (weight 0.1), adversarial on hN "
                "(0.1)", _WARP, {**_WARP_LOSS, "lambda_key_cls": 0.1, "lambda_nonkey_adv": 0.1}),
    AblationRow("warp_sup03", "warp with λ1 = 0.3", _WARP, {**_WARP_LOSS, "lambda_sup": 0.3}),
    AblationRow("warp_wide", "warp, channel width 0.25 instead of 0.125", {**_WARP, "width": 0.25},
                _WARP_LOSS),
    AblationRow("combo_g16", "warp_grid16 + width 0.25 + cycle",
                {**_WARP, "warp_grid": 16, "width": 0.25}, {**_WARP_LOSS, "lambda_cycle": 1.0}),
    AblationRow("combo_sup03", "warp + λ1 = 0.3 + width 0.25 + cycle", {**_WARP, "width": 0.25},
                {**_WARP_LOSS, "lambda_sup": 0.3, "lambda_cycle": 1.0}),
    AblationRow("combo_all", "warp_grid16 + λ1 = 0.3 + width 0.25 + cycle + probes",
                {**_WARP, "warp_grid": 16, "width": 0.25},
                {**_WARP_LOSS, "lambda_sup": 0.3, "lambda_cycle": 1.0, "lambda_key_cls": 0.1,
                 "lambda_nonkey_adv": 0.1}),
]}


#: Table columns: name -> (metrics.json path, kind, better). kind "pct" shows percent.
COLUMNS: dict[str, tuple[str, str, str]] = {
    "agreement KL-0→KL-2": ("exchange_success.judge_agreement_kl0_to_kl2", "pct", "high"),
    "agreement KL-2→KL-0": ("exchange_success.judge_agreement_kl2_to_kl0", "pct", "high"),
    "label-only X′1": ("exchange_success.judge_kl0_to_kl2_raw", "pct", "high"),
    "control X′1": ("exchange_success.judge_control_kl0_to_kl2", "pct", "info"),
    "label-only X′2": ("exchange_success.judge_kl2_to_kl0_raw", "pct", "high"),
    "control X′2": ("exchange_success.judge_control_kl2_to_kl0", "pct", "info"),
    "plausible X′ / real": ("plausibility.ratio_to_real", "num", "high"),
    "key transfer KL-0→KL-2": ("fidelity.key_transfer_median", "num", "high"),
    "key transfer KL-2→KL-0": ("fidelity.key_transfer_median_kl2_to_kl0", "num", "high"),
    "key transfer vs X̂, KL-0→KL-2": ("fidelity.recon_key_transfer_median", "num", "info"),
    "osteophytes X′1 (real KL-2)": ("fidelity.osteophyte_rate_x1_ex", "pct", "info"),
    "osteophytes X′2 (real KL-0)": ("fidelity.osteophyte_rate_x2_ex", "pct", "info"),
    "refused X′": ("fidelity.refusal_rate", "pct", "low"),
    "non-key SSIM": ("fidelity.nonkey_ssim_median", "num", "high"),
    "SVM hK": ("separability.svm_hk_accuracy", "pct", "high"),
    "SVM hN": ("separability.svm_hn_accuracy", "pct", "low"),
    "recon PSNR dB": ("quality.recon_psnr", "db", "high"),
    "recon SSIM": ("quality.recon_ssim", "num", "high"),
    "pairs/s": ("timing.pairs_per_s", "int", "high"),
    "train s": ("timing.train_seconds", "int", "low"),
}


@dataclass
class AblationConfig:
    """The ablation: rows of KECAE options on one shared budget."""

    run: str = ""  # run folder with the data set, supervisor/ and judge/ (as made by kecae demo)
    rows: list[str] = field(default_factory=lambda: list(ROWS))  # rows to train (default: all)
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
            raise ValueError(f"unknown or missing row(s) {unknown or self.rows}: choose from "
                             f"{list(ROWS)}")
        for name in ("steps", "batch_size", "num_pairs", "eval_pairs", "seeds", "best_seeds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.best_rows < 0:
            raise ValueError(f"best_rows must be >= 0, got {self.best_rows}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr}")


def _get(d: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def row_train_config(row: AblationRow, cfg: AblationConfig, *, data: str, supervisor: str,
                     out: Path, seed: int, patient_regex: str | None = None) -> Any:
    """The KECAE training configuration of one row and seed."""
    from kecae.training.config import KECAETrainConfig

    return KECAETrainConfig(
        data=data, out=str(out), supervisor=supervisor, preset="paper",
        model={**BASE_MODEL, **row.model}, num_pairs=cfg.num_pairs, max_steps=cfg.steps,
        batch_size=cfg.batch_size, lr=cfg.lr, seed=seed, log_every=min(10, cfg.steps),
        sample_every=cfg.steps, ckpt_every=max(1, cfg.steps // 4), device=cfg.device,
        cache_dir=cfg.cache_dir, progress=cfg.progress, resume=True,
        patient_regex=patient_regex, **row.train)


def _run_row_seed(row: AblationRow, cfg: AblationConfig, paths: dict[str, str], root: Path,
                  seed: int) -> dict[str, Any]:
    """Train (or resume, or reuse) one row at one seed and evaluate it; returns its metrics."""
    from kecae.evaluation.evaluate import EvaluateConfig, evaluate
    from kecae.runfolder import read_metrics, write_sections
    from kecae.training.checkpoint import load_checkpoint
    from kecae.training.kecae_trainer import read_log, train_kecae

    folder = root / row.name / f"seed_{seed}"
    kcfg = row_train_config(row, cfg, data=paths["data"], supervisor=paths["supervisor"],
                            out=folder / "kecae", seed=seed, patient_regex=paths["patient_regex"])
    # a row folder trained with other settings is refused by the trainer's strict resume
    want = {"steps": cfg.steps, "eval_pairs": cfg.eval_pairs, "judge": paths["judge"]}
    done = read_metrics(folder)
    if done.get("ablation_run") == want and "targets" in done:
        return done
    ckpt = folder / "kecae" / "checkpoints" / "last.pt"
    step = int(load_checkpoint(ckpt, kind="kecae")["step"]) if ckpt.is_file() else 0
    if step > cfg.steps:
        raise KecaeError(f"{ckpt} has more than --steps {cfg.steps} steps: pass the same --steps "
                         f"as before, or delete {folder}")
    timing_path = folder / "timing.json"
    if step < cfg.steps or not timing_path.is_file():
        t0 = time.perf_counter()
        train_kecae(kcfg)
        rows = read_log(folder / "kecae" / "log.csv")
        rates = [r["pairs_per_s"] for r in rows if "pairs_per_s" in r][1:]  # row 1: warm-up
        timing = {"train_seconds": time.perf_counter() - t0, "steps": cfg.steps,
                  "resumed_at": step,
                  "pairs_per_s": float(np.median(rates)) if rates else math.nan}
        atomic_write_text(timing_path, json.dumps(timing, indent=2))
    timing = json.loads(timing_path.read_text())
    evaluate(EvaluateConfig(run=str(folder), kecae_checkpoint=str(ckpt), judge=paths["judge"],
                            supervisor=paths["supervisor"], data=paths["data"],
                            patient_regex=paths["patient_regex"],
                            pairs=cfg.eval_pairs, seed=0, device=cfg.device,
                            cache_dir=cfg.cache_dir))
    return write_sections(folder, {"timing": timing, "ablation_run": want})


def _score(metrics: dict[str, Any]) -> tuple[int, float]:
    """(targets met, mean closeness to the targets in [0, 1]): the row ranking."""
    met, closeness = 0, []
    for t in (metrics.get("targets") or {}).values():
        value, (op, thr) = t.get("value"), t["target"].split()
        thr = float(thr)
        met += t.get("met") is True
        if value is None or not math.isfinite(value):
            closeness.append(0.0)
        elif op == ">=":
            closeness.append(float(np.clip(value / thr, 0, 1)) if thr > 0 else 1.0)
        else:
            closeness.append(float(np.clip(thr / max(value, 1e-9), 0, 1)))
    return met, float(np.mean(closeness)) if closeness else 0.0


def _summarise(row: AblationRow, per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    cells = {}
    for col, (path, _kind, _better) in COLUMNS.items():
        values = [_get(m, path) for m in per_seed]
        finite = [float(v) for v in values if v is not None and math.isfinite(v)]
        cells[col] = {"mean": float(np.mean(finite)) if finite else None,
                      "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else None,
                      "values": [None if v is None else float(v) for v in values]}
    scores = [_score(m) for m in per_seed]
    targets = {name: [m["targets"][name].get("met") for m in per_seed]
               for name in per_seed[0].get("targets", {})}
    return {"name": row.name, "description": row.description, "model": {**BASE_MODEL, **row.model},
            "train": dict(row.train), "seeds": len(per_seed), "cells": cells,
            "targets_met": float(np.mean([s[0] for s in scores])),
            "closeness": float(np.mean([s[1] for s in scores])), "targets": targets}


def run_ablation(cfg: AblationConfig) -> dict[str, Any]:
    """Train and evaluate every row (and the best rows at more seeds); write ``ablation``."""
    from kecae.runfolder import store_path, write_section

    run = Path(cfg.run).resolve()
    root = run / "studies" / "ablation"
    paths = _resolve_paths(cfg, run)
    seeds = list(range(cfg.seeds))
    results: dict[str, list[dict[str, Any]]] = {}
    t_start = time.perf_counter()
    for k, name in enumerate(cfg.rows):
        results[name] = [_run_row_seed(ROWS[name], cfg, paths, root, s) for s in seeds]
        met, close = _score(results[name][0])
        log.info("[ablation %d/%d] %s: %d targets met, closeness %.3f (%.0f s in all)", k + 1,
                 len(cfg.rows), name, met, close, time.perf_counter() - t_start)
    ranked = sorted(cfg.rows, key=lambda n: _score(results[n][0]), reverse=True)
    best = ranked[:cfg.best_rows]
    extra = [s for s in range(cfg.best_seeds) if s not in seeds]
    for name in best:
        for s in extra:
            results[name].append(_run_row_seed(ROWS[name], cfg, paths, root, s))
            log.info("[ablation] best row %s, seed %d done", name, s)
    rows = [_summarise(ROWS[n], results[n]) for n in cfg.rows]
    section = {
        "rows": rows, "ranking": ranked, "best": best,
        "columns": {c: {"metric": p, "kind": k, "better": b} for c, (p, k, b) in COLUMNS.items()},
        "budget": {"steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
                   "pairs_seen": cfg.steps * cfg.batch_size, "num_pairs": cfg.num_pairs,
                   "eval_pairs": cfg.eval_pairs, "seeds": seeds,
                   "best_seeds": list(range(cfg.best_seeds))},
        "shared": {k: store_path(v, run) if k != "patient_regex" and v else v
                   for k, v in paths.items()},
        "examples": {n: f"studies/ablation/{n}/seed_0/eval/examples.npz" for n in best},
        "note": "every row: the same data, frozen supervisor, judge, test pairs and budget; "
                "rows start from the paper's architecture at 64 px, width 0.125 and name every "
                "option they change. Cells are means over the row's seeds (std where > 1 seed).",
    }
    write_section(run, "ablation", section)
    atomic_write_text(root / "table.md", format_ablation_markdown(section))
    return section


def _resolve_paths(cfg: AblationConfig, run: Path) -> dict[str, Any]:
    """The shared inputs: data set (and its patient regex), supervisor and judge, absolute."""
    from kecae.runfolder import RunLayout
    from kecae.training.config import KECAETrainConfig, load_yaml

    layout = RunLayout(run)
    base_cfg = layout.kecae.config
    base = load_yaml(KECAETrainConfig, base_cfg) if base_cfg.is_file() else None
    data = cfg.data or (base.data if base else None)
    if not data:
        raise KecaeError(f"no data set given and {base_cfg} does not name one: pass --data")
    paths = {"data": data, "supervisor": cfg.supervisor or str(layout.supervisor.best),
             "judge": cfg.judge or str(layout.judge.best)}
    for what, path in paths.items():
        if not Path(path).exists():
            raise KecaeError(f"the {what} {path} does not exist: run `kecae demo --out {run}` "
                             f"first, or pass --{what}")
    return {**{k: str(Path(v).resolve()) for k, v in paths.items()},
            "patient_regex": base.patient_regex if base else None}


def _cell_text(cell: dict[str, Any], kind: str) -> str:
    m, s = cell.get("mean"), cell.get("std")
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
    cols = list(section["columns"])
    b = section["budget"]
    lines = [f"Budget per row: {b['steps']} steps × {b['batch_size']} pairs "
             f"({b['pairs_seen']:,} pairs), lr {b['lr']:g}; evaluated on {b['eval_pairs']} test "
             "pairs. Percentages for rates; ± is the sample std over seeds.", "",
             "| row | seeds | targets met | " + " | ".join(cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for r in section["rows"]:
        mark = " **(best)**" if r["name"] in section["best"] else ""
        cells = [_cell_text(r["cells"][c], section["columns"][c]["kind"]) for c in cols]
        lines.append(f"| `{r['name']}`{mark} | {r['seeds']} | {r['targets_met']:.1f} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Rows:", ""]
    lines += [f"- `{r['name']}`: {r['description']}" for r in section["rows"]]
    return "\n".join(lines) + "\n"


def format_ablation(section: dict[str, Any]) -> str:
    """A compact terminal table: the headline columns of each row."""
    show = ["agreement KL-0→KL-2", "agreement KL-2→KL-0", "key transfer KL-0→KL-2",
            "key transfer KL-2→KL-0", "non-key SSIM", "SVM hK", "SVM hN", "pairs/s"]
    head = f"{'row':<24}{'met':>5}" + "".join(f"{c[:14]:>16}" for c in show)
    lines = [head]
    for r in section["rows"]:
        cells = "".join(f"{_cell_text(r['cells'][c], section['columns'][c]['kind']):>16}"
                        for c in show)
        lines.append(f"{r['name'][:23]:<24}{r['targets_met']:>5.1f}{cells}")
    lines.append(f"best: {', '.join(section['best'])}")
    return "\n".join(lines)
