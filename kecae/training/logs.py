"""Run logging: a CSV of every logged scalar and TensorBoard events, written by the main rank
only, and the one reader of that CSV (the trainer's summary, the studies and the report use it).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kecae.errors import KecaeError
from kecae.runfolder import LOG, TENSORBOARD


class RunLogger:
    """Appends scalar rows to ``<run>/log.csv`` and mirrors them to TensorBoard (``<run>/tb``).

    On resume the CSV keeps the rows up to the resumed step and drops the rest, so a resumed run's
    log reads as one uninterrupted run.
    """

    def __init__(
        self,
        run_dir: str | Path,
        fields: list[str],
        enabled: bool = True,
        resume_step: int | None = None,
        tensorboard: bool = True,
    ) -> None:
        self.enabled = enabled
        self.fields = list(fields)
        self.path = Path(run_dir) / LOG
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[dict[str, str]] = []
        if resume_step is not None and self.path.exists():
            kept = [r for step, r in _logged_rows(self.path) if step <= resume_step]
        with open(self.path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(
                log_dir=str(Path(run_dir) / TENSORBOARD), purge_step=resume_step
            )

    def log(self, row: Mapping[str, Any], step: int) -> None:
        if not self.enabled:
            return
        row = {"step": step, **row}
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore").writerow(
                {k: _fmt(row.get(k)) for k in self.fields}
            )
        if self._tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and np.isfinite(value):
                    self._tb.add_scalar(key, value, step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """Add an (H, W) uint8 image to TensorBoard."""
        if self.enabled and self._tb is not None:
            self._tb.add_image(tag, image[None], step, dataformats="CHW")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None


def _logged_rows(path: Path) -> list[tuple[float, dict[str, str]]]:
    """(step, row) of every row of a log being resumed. A last row cut short by a kill is
    dropped; a row inside the file whose step is not a number means the file was edited or
    damaged: a :class:`KecaeError` names the line, before anything is rewritten."""
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for n, row in enumerate(rows):
        try:
            step = float(row.get("step") or "")
        except ValueError:
            step = math.nan
        if math.isfinite(step):
            out.append((step, row))
        elif n < len(rows) - 1:
            raise KecaeError(
                f"{path} line {n + 2}: step {row.get('step')!r} is not a number, so the log "
                "cannot be continued: repair or delete that line (or move log.csv away; the "
                "checkpoint, not the log, holds the run's state)"
            )
    return out


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


@dataclass
class TrainingLog:
    """A run's log.csv: its columns in file order and one dict per row, as floats (a blank cell is
    left out of its row, a cell that is not a number is NaN)."""

    columns: list[str]
    rows: list[dict[str, float]]

    def column(self, name: str) -> np.ndarray:
        """One column over every row (NaN where a row has no value)."""
        return np.array([r.get(name, math.nan) for r in self.rows], dtype=np.float64)


def read_log(path: str | Path) -> TrainingLog:
    """The rows of a run's log.csv (no rows when the file is absent)."""
    path = Path(path)
    if not path.exists():
        return TrainingLog([], [])
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = [
            {k: _number(v) for k, v in r.items() if k is not None and v not in ("", None)}
            for r in reader
        ]
        return TrainingLog([c for c in reader.fieldnames or [] if c is not None], rows)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan
