"""Checkpoints: written atomically, loaded with ``weights_only=True``, enough to rebuild the model.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so that
``torch.load(weights_only=True)`` can read it without executing any pickled code:

- ``kind``: ``"kecae"`` or ``"classifier"``;
- ``model_config``: the model's dataclass as a dict (rebuilds the model on its own);
- ``model``: the state dict; ``optimizer``: the optimiser state dict (absent in exported weights);
- ``train_config``: the training configuration as a dict; its paths are written relative to the
  checkpoint's folder when they lie inside the run folder (``relative_paths: True``; see
  :mod:`kecae.paths`), and :func:`load_checkpoint` gives them back absolute;
- ``step``, ``epoch``: progress counters; ``rng``: random-generator states (see :func:`rng_state`);
- anything else the trainer adds (``metrics``, ``best``...).
"""

from __future__ import annotations

import errno
import os
import random
import shutil
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import torch

from kecae.errors import KecaeError
from kecae.files import atomic_path
from kecae.paths import load_paths, store_paths


def rng_state() -> dict[str, Any]:
    """Capture Python, NumPy and torch generator states in a ``weights_only``-safe form."""
    py = random.getstate()
    np_state = cast("tuple[Any, ...]", np.random.get_state())  # the legacy tuple form
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states captured by :func:`rng_state`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), *np_state[2:]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _open_for_write(path: Path) -> IO[bytes]:
    return open(path, "wb")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically: an interrupted save keeps the previous file, and
    a full disk is a :class:`KecaeError` naming the file (the previous file is kept)."""
    path = Path(path)
    if isinstance(payload.get("train_config"), dict) and not payload.get("relative_paths"):
        payload = {
            **payload,
            "train_config": store_paths(payload["train_config"], path.parent),
            "relative_paths": True,
        }
    with atomic_path(path) as tmp:
        try:
            with _open_for_write(tmp) as fh:
                torch.save(payload, fh)
                fh.flush()
                os.fsync(fh.fileno())
        except RuntimeError as exc:  # torch's writer may report a failed write this way
            if shutil.disk_usage(path.parent).free < (1 << 20) or "write" in str(exc).lower():
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp)) from exc
            raise
    return path


def _checkpoint_in(folder: Path) -> str:
    """What to pass instead of a run folder: the checkpoint files it holds, best first."""
    names = ("best.pt", "checkpoints/last.pt", "last.pt", "kecae/checkpoints/last.pt")
    found = [folder / n for n in names if (folder / n).is_file()]
    found += sorted(p for p in folder.glob("**/*.pt") if p not in found)[:3]
    if found:
        return "pass the checkpoint file inside it, e.g. " + " or ".join(map(str, found[:3]))
    return (
        "pass a checkpoint file (a classifier run's best.pt, a KECAE run's "
        "checkpoints/last.pt); this folder holds none"
    )


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", kind: str | None = None
) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``), check its ``kind`` and structure, and
    make the paths of its training configuration absolute."""
    path = Path(path)
    if path.is_dir():
        raise KecaeError(f"checkpoint {path} is a folder, not a file: {_checkpoint_in(path)}")
    if not path.is_file():
        raise KecaeError(
            f"checkpoint {path} does not exist: check the path, or train one first "
            "(`kecae train-classifier` / `kecae train`)"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated file, foreign pickle, not a checkpoint at all
        raise KecaeError(
            f"cannot read checkpoint {path} ({type(exc).__name__}: {exc}); it may "
            "be truncated or not a kecae checkpoint: use another file or retrain"
        ) from exc
    if not isinstance(ckpt, dict) or "kind" not in ckpt or "model" not in ckpt:
        raise KecaeError(f"{path} is not a kecae checkpoint (no 'kind'/'model' entries)")
    if kind is not None and ckpt["kind"] != kind:
        raise KecaeError(
            f"{path} holds a {ckpt['kind']} model, but a {kind} checkpoint is needed "
            "here: pass the other file"
        )
    if not isinstance(ckpt.get("model_config"), dict) or not isinstance(ckpt["model"], dict):
        raise KecaeError(
            f"{path} is damaged: its 'model_config' or 'model' entry is not a "
            "mapping; use another checkpoint or retrain"
        )
    tcfg = ckpt.get("train_config")
    if isinstance(tcfg, dict) and ckpt.get("relative_paths"):
        ckpt["train_config"] = load_paths(tcfg, path.parent)
    return ckpt


def load_weights(
    module: torch.nn.Module, state: Any, path: str | Path, what: str = "model"
) -> None:
    """``module.load_state_dict(state)``; weights that do not fit are a :class:`KecaeError`."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        lines = [x.strip() for x in str(exc).splitlines() if x.strip()] or [type(exc).__name__]
        first = " ".join(lines[:2])
        raise KecaeError(
            f"{path}: the {what} weights do not fit the model its configuration "
            f"describes ({first[:300]}); the file is damaged or was edited: use "
            "another checkpoint or retrain"
        ) from exc


def resume_from(
    path: Path,
    kind: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    allowed: bool,
    ckpt: dict[str, Any] | None = None,
    **modules: torch.nn.Module,
) -> dict[str, Any] | None:
    """Restore an interrupted run from ``path`` if it exists (``ckpt``: the checkpoint already
    loaded from it): model, optimiser, RNG states and any extra ``modules`` saved under their
    names. Returns the checkpoint (for the trainer's own counters), or None for a fresh run.
    With ``allowed=False`` an existing run is refused."""
    if not path.exists():
        return None
    if not allowed:
        raise KecaeError(
            f"{path.parent} already holds a run ({path}): pass --resume to continue "
            "it, --fresh to start afresh in a new folder, or choose another --out"
        )
    ckpt = ckpt if ckpt is not None else load_checkpoint(path, kind=kind)
    load_weights(model, ckpt["model"], path)
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise KecaeError(
            f"{path}: its optimiser state does not fit the model ({exc}); the file "
            "is damaged: delete it to start again, or use --fresh"
        ) from exc
    for name, module in modules.items():
        if name in ckpt:
            load_weights(module, ckpt[name], path, what=name)
    set_rng_state(ckpt["rng"])
    return ckpt
