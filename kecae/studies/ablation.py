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

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kecae.config import setting
from kecae.data.catalog import grades_of
from kecae.errors import KecaeError
from kecae.files import atomic_write_text
from kecae.metrics_file import read_metrics, write_section, write_sections
from kecae.paths import store_path
from kecae.results import (
    Ablation,
    AblationCell,
    AblationRowResult,
    Target,
    lookup,
    read_targets,
)
from kecae.reuse import differences
from kecae.runfolder import AblationRun, RunLayout
from kecae.studies.ablation_rows import BASE_MODEL, COLUMNS, ROWS, TIMING, AblationRow
from kecae.studies.subruns import (
    KECAEStudyConfig,
    kecae_run_config,
    train_supervisor_members,
)
from kecae.training.config import KECAETrainConfig
from kecae.training.logs import read_log

# The trainers, checkpoints and evaluation (torch, SciPy, scikit-learn) are imported when a row
# trains: the command line imports this module for its settings and stays light.

log = logging.getLogger(__name__)


@dataclass
class AblationConfig(KECAEStudyConfig):
    """The ablation: rows of KECAE options on one shared budget."""

    rows: list[str] = setting(factory=lambda: list(ROWS), choices=ROWS)  # rows to train (all)
    steps: int = 2000  # optimiser steps per row (the demo's budget)
    batch_size: int = 32  # pairs per step (paper: 32)
    lr: float = 1e-3  # Adam learning rate of every row
    num_pairs: int = 100_000  # N pairs sampled from the train split (paper: 100k)
    eval_pairs: int = 400  # test pairs each row is evaluated on (the same for every row)
    seeds: int = 1  # seeds per row
    best_rows: int = 2  # rows that get best_seeds seeds
    best_seeds: int = 3  # seeds of the best rows
    judge: str | None = None  # default: DIR/judge/best.pt

    def __post_init__(self) -> None:
        super().__post_init__()
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
    members: tuple[str, ...] = ()  # the supervisor ensemble's members 1.. (rows with supervisors)


def row_train_config(
    row: AblationRow, cfg: AblationConfig, *, inputs: SharedInputs, out: Path, seed: int
) -> Any:
    """The KECAE training configuration of one row and seed."""

    return KECAETrainConfig(
        data=inputs.data,
        out=str(out),
        supervisor=inputs.supervisor,
        supervisor_members=list(inputs.members[: row.train.get("supervisors", 1) - 1]),
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
    inputs = _with_members(cfg, layout, inputs)
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


def _with_members(cfg: AblationConfig, layout: RunLayout, inputs: SharedInputs) -> SharedInputs:
    """The inputs with the run's supervisor ensemble, as large as the rows ask for (trained,
    resumed or reused in ``RUN/supervisor_<k>``)."""
    count = max(ROWS[n].train.get("supervisors", 1) for n in cfg.rows)
    if count > 1 and cfg.supervisor:
        raise KecaeError(
            f"--supervisor {cfg.supervisor}: rows with a supervisor ensemble train the run's "
            "supervisor at other seeds; drop --supervisor or those rows"
        )
    members = train_supervisor_members(layout, count, cfg.device, cfg.cache_dir, cfg.progress)
    return dataclasses.replace(inputs, members=tuple(members))


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
    absolute = {k: str(Path(v).resolve()) for k, v in paths.items()}
    return SharedInputs(
        absolute["data"],
        absolute["supervisor"],
        absolute["judge"],
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
