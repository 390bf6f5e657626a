"""`kecae evaluate` on a run folder that agrees with itself.

- **The run's own settings by default.** On a ``kecae run`` / ``kecae demo`` folder, the
  settings the pipeline evaluated with (its test pairs, seed and device) are the defaults of
  ``kecae evaluate --run``; every folder's preprocessed images go to ``RUN/.kecae_cache``.
- **Other settings write beside.** ``metrics.json`` holds the run's evaluation and records its
  settings (section ``evaluation``). An evaluation with other settings (more pairs, another
  seed, the validation split, another judge) is written to ``RUN/evaluations/<name>/``
  (metrics.json and eval/), named by what differs, and never over the run's own numbers.
- **A no-op rerun re-uses.** When the settings and the inputs (the bytes of the KECAE, judge and
  supervisor checkpoints and of the run's data.csv) are those already recorded, the evaluation
  is read back instead of computed again. New checkpoints (KECAE trained further) evaluate again
  in place.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from kecae.config import read_yaml_mapping
from kecae.evaluation.evaluate import EvaluateConfig, evaluate
from kecae.files import atomic_write_text, file_sha256
from kecae.metrics_file import read_metrics, write_sections
from kecae.results import EVALUATION_SECTION
from kecae.runfolder import RunLayout

#: Where evaluations with settings other than the run's own go: RUN/evaluations/<name>/.
BESIDE = "evaluations"

#: EvaluateConfig fields that change the numbers (device, cache and run folder do not).
SETTINGS = (
    "pairs",
    "separability_images",
    "examples",
    "seed",
    "split",
    "band",
    "plausibility_quantile",
    "kecae_checkpoint",
    "judge",
    "supervisor",
    "data",
    "patient_regex",
)

#: Short names of settings in a beside folder's name.
_SHORT = {"separability_images": "svm", "plausibility_quantile": "quantile"}


def run_defaults(run: str | Path) -> dict[str, Any]:
    """The evaluation settings a run folder was made with: ``cache_dir`` always (its own
    ``.kecae_cache``); on a pipeline folder also its test pairs, seed and device."""
    layout = RunLayout(run)
    out: dict[str, Any] = {"cache_dir": str(layout.root / ".kecae_cache")}
    if layout.marker.is_file():
        settings = read_yaml_mapping(layout.marker, "run settings")
        for key in ("seed", "device"):
            if settings.get(key) is not None:
                out[key] = settings[key]
        pairs = settings.get("eval_pairs")
        if pairs is None and layout.data_check.is_file():
            pairs = json.loads(layout.data_check.read_text()).get("eval_pairs")
        if pairs is not None:
            out["pairs"] = int(pairs)
    return out


def settings_of(cfg: EvaluateConfig) -> dict[str, Any]:
    """The settings of ``cfg`` that change the numbers (paths absolute)."""
    out = {}
    for key in SETTINGS:
        value = getattr(cfg, key)
        if key in ("kecae_checkpoint", "judge", "supervisor", "data") and value:
            value = str(Path(value).resolve())
        out[key] = value
    return out


def inputs_of(cfg: EvaluateConfig, layout: RunLayout) -> dict[str, str | None]:
    """SHA-256 of the files the numbers are computed from (None where absent)."""
    files = {
        "kecae": cfg.kecae_checkpoint or layout.kecae.last,
        "judge": cfg.judge or layout.judge.best,
        "supervisor": cfg.supervisor or layout.supervisor.best,
        "data": cfg.data or layout.data_view,
    }
    return {
        name: file_sha256(path) if Path(path).is_file() else None for name, path in files.items()
    }


def beside_name(settings: dict[str, Any], own: dict[str, Any]) -> str:
    """The folder name of an evaluation with ``settings`` beside one with ``own``: what differs,
    e.g. ``pairs500`` or ``seed1-split_val``."""
    parts = []
    for key in SETTINGS:
        value = settings.get(key)
        if value == own.get(key):
            continue
        word = _SHORT.get(key, key)
        if isinstance(value, str):
            parts.append(f"{word}_{Path(value).stem if '/' in value else value}")
        else:
            parts.append(f"{word}{value:g}" if isinstance(value, float) else f"{word}{value}")
    name = "-".join(parts) or "other"
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:80]


def evaluate_run(cfg: EvaluateConfig, own: bool = False) -> tuple[dict[str, Any], Path, bool]:
    """Evaluate ``cfg.run`` as the module docstring says.

    Args:
        cfg: the evaluation (its ``run`` is the run folder).
        own: these are the run's own settings (the pipeline's evaluate step): they replace the
            recorded ones in metrics.json instead of going beside.
    Returns:
        ``(metrics, where, reused)``: the merged metrics.json object, the folder it was written
        to (the run, or ``RUN/evaluations/<name>``), and whether it was read back unchanged.
    """
    layout = RunLayout(cfg.run)
    settings, inputs = settings_of(cfg), inputs_of(cfg, layout)
    recorded = read_metrics(layout.root).get(EVALUATION_SECTION)
    target = layout.root
    if not own and isinstance(recorded, dict) and recorded.get("settings") != settings:
        target = layout.root / BESIDE / beside_name(settings, recorded.get("settings") or {})
        recorded = read_metrics(target).get(EVALUATION_SECTION) if target.is_dir() else None
    if (
        isinstance(recorded, dict)
        and recorded.get("settings") == settings
        and recorded.get("inputs") == inputs
        and (target / "metrics.json").is_file()
    ):
        return read_metrics(target), target, True
    if target != layout.root:
        # a folder of its own: the run's models and data named explicitly
        target.mkdir(parents=True, exist_ok=True)
        cfg = dataclasses.replace(
            cfg,
            run=str(target),
            kecae_checkpoint=cfg.kecae_checkpoint or str(layout.kecae.last.resolve()),
            judge=cfg.judge or str(layout.judge.best.resolve()),
            supervisor=cfg.supervisor
            or (
                str(layout.supervisor.best.resolve()) if layout.supervisor.best.is_file() else None
            ),
        )
    if target == layout.root:
        keep_unrecorded(layout.root)
    evaluate(cfg)
    metrics = write_sections(target, {EVALUATION_SECTION: {"settings": settings, "inputs": inputs}})
    return metrics, target, False


#: Where an evaluation that recorded no settings (written by an earlier kecae) is kept.
UNRECORDED = "unrecorded"


def keep_unrecorded(run: Path) -> Path | None:
    """Before a run's metrics.json is evaluated again in place: when it holds an evaluation
    (targets) but no record of its settings, as an earlier kecae wrote it, a copy goes to
    ``RUN/evaluations/unrecorded/metrics.json`` (once; the first copy is never replaced), so the
    numbers it had stay readable. Returns the copy's path when one was written."""
    metrics = read_metrics(run)
    if not metrics.get("targets") or isinstance(metrics.get(EVALUATION_SECTION), dict):
        return None
    copy = run / BESIDE / UNRECORDED / "metrics.json"
    if copy.exists():
        return None
    copy.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(copy, (run / "metrics.json").read_text(encoding="utf-8"))
    print(
        f"metrics.json held an evaluation without a record of its settings (an earlier kecae): "
        f"kept as {copy} before evaluating again",
        flush=True,
    )
    return copy
