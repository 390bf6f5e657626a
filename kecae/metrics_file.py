"""A run's ``metrics.json``, read and written section by section.

**metrics.json** is one JSON object whose sections are written by different commands (evaluate,
the studies, the pipeline). Every writer goes through :func:`write_sections`, which holds a lock
while it reads, updates and atomically rewrites the file, so commands running at the same time
never lose each other's sections.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kecae.errors import KecaeError
from kecae.files import atomic_write_text, output_error
from kecae.runfolder import METRICS


def jsonable(x: Any) -> Any:
    """Plain JSON types; NaN/inf become null (strict JSON readers refuse NaN)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


@contextlib.contextmanager
def metrics_lock(run: Path) -> Iterator[None]:
    """Serialise read-update-write of metrics.json between processes."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename still prevents torn files
        yield
        return
    lock = run / ".metrics.json.lock"
    try:
        run.mkdir(parents=True, exist_ok=True)
        fh = open(lock, "a")  # noqa: SIM115 (closed below, after the unlock)
    except OSError as exc:
        raise output_error(lock, exc) from exc
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_metrics(run: str | Path) -> dict[str, Any]:
    """The run's metrics.json ({} when absent); a damaged file is a KecaeError naming it."""
    path = Path(run) / METRICS
    if not path.exists():
        return {}
    try:
        merged = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise KecaeError(
            f"{path} is not valid JSON ({exc}): repair it or move it away "
            "(each command only rewrites its own sections)"
        ) from exc
    if not isinstance(merged, dict):
        raise KecaeError(f"{path} does not hold a JSON object: move it away and rerun")
    return merged


def write_sections(run: str | Path, sections: dict[str, Any]) -> dict[str, Any]:
    """Set ``metrics.json[name] = value`` for each section, keeping every other section;
    returns the whole merged object."""
    run = Path(run)
    with metrics_lock(run):
        merged = read_metrics(run)
        merged.update(jsonable(sections))
        atomic_write_text(run / METRICS, json.dumps(merged, indent=2))
    return merged


def write_section(run: str | Path, name: str, section: dict[str, Any]) -> Path:
    """Set one section of ``run``/metrics.json; returns the file's path."""
    write_sections(run, {name: section})
    return Path(run) / METRICS
