"""What the report reads from a run folder (layout: :mod:`kecae.runfolder`). Every file is
optional: an absent one reads as None, a damaged one is recorded as a problem (and the report
says which) instead of stopping the page."""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kecae.runfolder import RunLayout
from kecae.training.logs import read_log

log = logging.getLogger(__name__)


@dataclass
class RunData:
    """Everything the report reads from a run folder; ``None`` where a file is absent."""

    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    train_log: dict[str, np.ndarray] | None = None  # kecae/log.csv columns, in file order
    examples: dict[str, np.ndarray] | None = None  # eval/examples.npz
    fidelity: dict[str, np.ndarray] | None = None  # eval/fidelity.npz
    classifiers: dict[str, dict[str, Any]] = field(default_factory=dict)  # supervisor, judge
    problems: dict[str, str] = field(default_factory=dict)  # relative path -> what went wrong
    found: list[str] = field(default_factory=list)  # relative paths that were read

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)

    def section(self, name: str) -> dict[str, Any]:
        """One section of metrics.json ({} when absent or not a mapping)."""
        s = self.metrics.get(name)
        return s if isinstance(s, dict) else {}

    def rel(self, path: Path) -> str:
        """A file of the run folder as the report names it (relative, with /)."""
        return path.relative_to(self.run_dir).as_posix()


def read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object at the top level")
    return data


def read_npz(path: Path) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(path):  # else numpy reports it as "pickled data", which misleads
        raise ValueError("not an .npz archive (damaged or cut short)")
    with np.load(path, allow_pickle=False) as z:
        return {k: np.asarray(z[k]) for k in z.files}


def read_log_columns(path: Path) -> dict[str, np.ndarray]:
    """The log's columns as float arrays; blank or non-numeric cells are NaN."""
    training_log = read_log(path)
    if not training_log.rows:
        raise ValueError("the log has no rows yet")
    return {name: training_log.column(name) for name in training_log.columns}


def load_run(run_dir: str | Path) -> RunData:
    """Read every known file of ``run_dir``; absent or damaged files are recorded, not raised."""
    run = RunData(run_dir=Path(run_dir))
    layout = run.layout
    run.metrics = _read(run, layout.metrics, read_json) or {}
    run.train_log = _read(run, layout.kecae.log, read_log_columns)
    run.examples = _read(run, layout.eval.examples, read_npz)
    run.fidelity = _read(run, layout.eval.fidelity, read_npz)
    for name, classifier in (("supervisor", layout.supervisor), ("judge", layout.judge)):
        data = _read(run, classifier.metrics, read_json)
        if data is not None:
            run.classifiers[name] = data
    return run


def _read(run: RunData, path: Path, reader: Callable[[Path], Any]) -> Any:
    if not path.is_file():
        return None
    rel = run.rel(path)
    try:
        data = reader(path)
    except Exception as exc:  # noqa: BLE001 (a damaged file must not stop the rest of the report)
        run.problems[rel] = f"{type(exc).__name__}: {exc}"
        log.warning("report: could not read %s (%s)", path, exc)
        return None
    run.found.append(rel)
    return data
