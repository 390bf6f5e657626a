"""How paths are written into the files of a run folder, and read back.

**Paths inside a run folder survive a move.** Every path a run writes into a file (config.yaml,
checkpoints, generation.json, manifests) is stored relative to the folder of that file when it
lies inside the run's root (the nearest folder above holding ``run.yaml``, else the training
run's own folder), and absolute when it lies outside. Reading resolves it against the file's
folder again, so ``cp -a runs/demo /x/demo`` gives a run that works from any working folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: The file that marks the root of a pipeline run folder (the pipeline's settings).
RUN_MARKER = "run.yaml"


#: Configuration fields (of every config dataclass) that hold file or folder paths.
PATH_FIELDS = frozenset(
    {
        "data",
        "out",
        "supervisor",
        "supervisor_members",
        "augment_dirs",
        "mix_dirs",
        "cache_dir",
        "checkpoint",
        "run",
        "kecae_checkpoint",
        "judge",
        "generated",
    }
)


def run_root(folder: str | os.PathLike) -> Path:
    """The nearest folder at or above ``folder`` holding ``run.yaml``, else ``folder`` itself
    (absolute)."""
    folder = Path(folder).expanduser().resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / RUN_MARKER).is_file():
            return candidate
    return folder


def store_path(target: str | os.PathLike, base: str | os.PathLike) -> str:
    """``target`` as written into a file that lives in folder ``base``: relative to ``base`` when
    it lies inside the run root of ``base``, absolute otherwise."""
    t = Path(target).expanduser().resolve()
    base = Path(base).expanduser().resolve()
    root = run_root(base)
    if t == root or root in t.parents:
        return Path(os.path.relpath(t, base)).as_posix()
    return str(t)


def load_path(stored: str, base: str | os.PathLike, legacy: bool = False) -> str:
    """A path read from a file in folder ``base``, made absolute. ``legacy``: the file may come
    from an older kecae that wrote paths relative to the working folder; such a path is taken
    as it is when it exists there and not next to the file."""
    p = Path(stored).expanduser()
    if p.is_absolute():
        return str(p)
    anchored = Path(base).expanduser().resolve() / p
    if legacy and not anchored.exists() and p.exists():
        return str(p.resolve())
    return os.path.normpath(anchored)


def _map_paths(values: dict[str, Any], fn: Any) -> dict[str, Any]:
    out = dict(values)
    for name in PATH_FIELDS & set(values):
        v = values[name]
        if isinstance(v, str) and v:
            out[name] = fn(v)
        elif isinstance(v, (list, tuple)):
            out[name] = [fn(x) if isinstance(x, str) and x else x for x in v]
    return out


def store_paths(values: dict[str, Any], base: str | os.PathLike) -> dict[str, Any]:
    """A configuration dict with its path fields written for a file in folder ``base``."""
    return _map_paths(values, lambda v: store_path(v, base))


def load_paths(
    values: dict[str, Any], base: str | os.PathLike, legacy: bool = False
) -> dict[str, Any]:
    """A configuration dict read from a file in folder ``base``, its path fields absolute."""
    return _map_paths(values, lambda v: load_path(v, base, legacy))


def absolute_paths(values: dict[str, Any]) -> dict[str, Any]:
    """A configuration dict whose path fields are absolute (relative ones are taken from the
    working folder, as on the command line)."""
    return _map_paths(values, lambda v: str(Path(v).expanduser().resolve()))
