"""Checkpoints: written atomically, loaded with ``weights_only=True``, enough to rebuild the model.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so that
``torch.load(weights_only=True)`` can read it without executing any pickled code:

- ``kind``: ``"kecae"`` or ``"classifier"``;
- ``model_config``: the model's dataclass as a dict (rebuilds the model on its own);
- ``model``: the state dict; ``optimizer``: the optimiser state dict (absent in exported weights);
- ``train_config``: the training configuration as a dict;
- ``step``, ``epoch``: progress counters; ``rng``: random-generator states (see :func:`rng_state`);
- anything else the trainer adds (``metrics``, ``best``...).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kecae.utils import KecaeError, atomic_path


def rng_state() -> dict[str, Any]:
    """Capture Python, NumPy and torch generator states in a ``weights_only``-safe form."""
    py = random.getstate()
    np_state = np.random.get_state()
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


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically: an interrupted save keeps the previous file."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    kind: str | None = None) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) and check its ``kind``."""
    path = Path(path)
    if not path.is_file():
        raise KecaeError(f"checkpoint {path} does not exist: check the path, or train one first "
                         "(`kecae train-classifier` / `kecae train`)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated file, foreign pickle, not a checkpoint at all
        raise KecaeError(f"cannot read checkpoint {path} ({type(exc).__name__}: {exc}); it may be "
                         "truncated or not a kecae checkpoint: use another file or retrain") from exc
    if not isinstance(ckpt, dict) or "kind" not in ckpt or "model" not in ckpt:
        raise KecaeError(f"{path} is not a kecae checkpoint (no 'kind'/'model' entries)")
    if kind is not None and ckpt["kind"] != kind:
        raise KecaeError(f"{path} holds a {ckpt['kind']} model, but a {kind} checkpoint is needed "
                         "here: pass the other file")
    return ckpt


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return model.module if hasattr(model, "module") else model


def resume_from(path: Path, kind: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                allowed: bool, **modules: torch.nn.Module) -> dict[str, Any] | None:
    """Restore an interrupted run from ``path`` if it exists: model, optimiser, RNG states and
    any extra ``modules`` saved under their names. Returns the checkpoint (for the trainer's own
    counters), or None for a fresh run. With ``allowed=False`` an existing run is refused."""
    if not path.exists():
        return None
    if not allowed:
        raise KecaeError(f"{path.parent} already holds a run ({path}): pass --resume to continue "
                         "it, or choose another --out")
    ckpt = load_checkpoint(path, kind=kind)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    for name, module in modules.items():
        if name in ckpt:
            module.load_state_dict(ckpt[name])
    set_rng_state(ckpt["rng"])
    return ckpt
