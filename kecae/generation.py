"""Generation of the augmented set X': for N pairs (X1 KL-0, X2 KL-2) of the train split,
X'1 = decode(hN1 + hK2) (a healthy knee given KL-2 key features, label KL-2) and
X'2 = decode(hN2 + hK1) (the reverse, label KL-0).

Output, in the public layout so any tool can read it, and merged with the train split it is
T' = T ∪ X' for `kecae train-classifier --augment-dir DIR`::

    DIR/2/pair0000042_kl0to2.png    X'1 of pair 42 (label KL-2)
    DIR/0/pair0000042_kl2to0.png    X'2 of pair 42 (label KL-0)
    DIR/manifest.csv                file, label, source images, pair index, checkpoint hash
    DIR/generation.json             what made the folder (checkpoint, data, N, seed)

Streams in batches (memory does not grow with N); every PNG is written atomically, so a rerun
skips what exists and an interrupted run leaves no half-written image.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kecae import CLASS_GRADES
from kecae.utils import KecaeError, atomic_path, atomic_write_text, file_sha256, select_device

log = logging.getLogger(__name__)

MANIFEST_FIELDS = ["path", "grade", "split", "patient_id", "side", "image_id", "pair_index",
                   "direction", "recipient_id", "donor_id", "recipient_path", "donor_path",
                   "checkpoint_sha256"]


@dataclass
class GenerateConfig:
    """Generation of key-exchanged images from a trained KECAE checkpoint."""

    checkpoint: str = ""  # KECAE checkpoint (runs/.../checkpoints/last.pt)
    data: str = ""  # the data set KECAE was trained on; pairs come from its train split
    out: str = ""  # output folder (public layout + manifest.csv)
    pairs: int = 100_000  # N pairs; each gives one KL-2 and one KL-0 image (paper: 100k)
    seed: int = 0  # seeds the pair sample
    oversample: bool = False  # bootstrap the minority class before pairing
    batch_size: int = 64  # pairs per forward pass
    device: str = "auto"  # auto / cpu / cuda
    cache_dir: str | None = None  # preprocessed-image cache
    progress: bool = True  # progress bar


def _file_names(k: int) -> tuple[str, str]:
    """Relative paths of X'1 (label KL-2) and X'2 (label KL-0) of pair ``k``."""
    return (f"{CLASS_GRADES[1]}/pair{k:07d}_kl0to2.png", f"{CLASS_GRADES[0]}/pair{k:07d}_kl2to0.png")


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[-1, 1] float -> uint8 grey."""
    return np.clip((x + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(image)).save(tmp, format="PNG")


def generate(cfg: GenerateConfig) -> dict[str, Any]:
    """Write X'1 / X'2 for ``cfg.pairs`` pairs; returns a summary (also in generation.json)."""
    import torch
    from tqdm.auto import tqdm

    from kecae.data import PairSampler, load_image_set
    from kecae.inference import load_kecae

    if cfg.pairs < 1:
        raise KecaeError("--pairs must be at least 1")
    device = select_device(cfg.device)
    out = Path(cfg.out)
    model, ckpt = load_kecae(cfg.checkpoint, device)
    size = int(ckpt["model_config"]["image_size"])
    ckpt_hash = file_sha256(cfg.checkpoint)
    meta = {"checkpoint": str(cfg.checkpoint), "checkpoint_sha256": ckpt_hash, "data": str(cfg.data),
            "pairs": cfg.pairs, "seed": cfg.seed, "oversample": cfg.oversample, "image_size": size}
    meta_path = out / "generation.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        clash = {k: (old.get(k), v) for k, v in meta.items() if k not in ("checkpoint",) and old.get(k) != v}
        if clash:
            raise KecaeError(f"{out} already holds images made with other settings {clash}: "
                             "choose another --out, or delete the folder to start again")
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(meta_path, json.dumps(meta, indent=2))

    kl0 = load_image_set(cfg.data, size=size, split="train", grades=(CLASS_GRADES[0],),
                         cache_dir=cfg.cache_dir, progress=cfg.progress)
    kl2 = load_image_set(cfg.data, size=size, split="train", grades=(CLASS_GRADES[1],),
                         cache_dir=cfg.cache_dir, progress=cfg.progress)
    total = len(kl0.images) * len(kl2.images)
    if cfg.pairs > total and not cfg.oversample:
        raise KecaeError(f"--pairs {cfg.pairs} is more than the {total} KL-0 x KL-2 pairs of the "
                         f"train split: ask for at most {total}")
    sampler = PairSampler(len(kl0.images), len(kl2.images), cfg.pairs, seed=cfg.seed,
                          oversample=cfg.oversample)

    written = skipped = 0
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.pairs, desc="generate", unit="pair", disable=not cfg.progress)
    with ThreadPoolExecutor(max_workers=2) as pool:  # PNG encoding overlaps the next forward pass
        pending: list[Any] = []
        for start in range(0, cfg.pairs, cfg.batch_size):
            ks = range(start, min(start + cfg.batch_size, cfg.pairs))
            todo = [k for k in ks if not all((out / n).exists() for n in _file_names(k))]
            skipped += len(ks) - len(todo)
            if todo:
                ij = np.array([sampler[k] for k in todo], dtype=np.int64)
                x1 = torch.from_numpy(np.asarray(kl0.images[ij[:, 0]], dtype=np.float32))[:, None]
                x2 = torch.from_numpy(np.asarray(kl2.images[ij[:, 1]], dtype=np.float32))[:, None]
                with torch.no_grad():
                    x1_ex, x2_ex = model.exchange(x1.to(device), x2.to(device))  # (B, 1, S, S)
                x1_ex, x2_ex = x1_ex[:, 0].float().cpu().numpy(), x2_ex[:, 0].float().cpu().numpy()
                for n, k in enumerate(todo):
                    name1, name2 = _file_names(k)
                    pending.append(pool.submit(_write_png, out / name1, x1_ex[n]))
                    pending.append(pool.submit(_write_png, out / name2, x2_ex[n]))
                written += len(todo)
                for f in pending:
                    f.result()  # surfaces a full disk at once
                pending = []
            bar.update(len(ks))
    bar.close()
    seconds = time.perf_counter() - t0
    _write_manifest(out, sampler, kl0, kl2, cfg.pairs, ckpt_hash)
    summary = {**meta, "written_pairs": written, "skipped_pairs": skipped,
               "images": 2 * cfg.pairs, "seconds": seconds,
               "images_per_s": 2 * written / seconds if written else None}
    log.info("generated %d new pairs (%d already there) in %.1f s -> %s", written, skipped,
             seconds, out)
    return summary


def _write_manifest(out: Path, sampler: Any, kl0: Any, kl2: Any, pairs: int, ckpt_hash: str) -> None:
    """Rows follow from (pair index, sampler, image sets): written in one streaming pass."""
    with atomic_path(out / "manifest.csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(MANIFEST_FIELDS)
            for k in range(pairs):
                i, j = (int(v) for v in sampler[k])
                name1, name2 = _file_names(k)
                # X'1: the KL-0 knee i (its anatomy, patient and side) with the key of KL-2 knee j
                w.writerow([name1, CLASS_GRADES[1], "train", kl0.patient_ids[i], kl0.sides[i] or "",
                            Path(name1).stem, k, "kl0_to_kl2", kl0.image_ids[i], kl2.image_ids[j],
                            str(kl0.paths[i]), str(kl2.paths[j]), ckpt_hash])
                w.writerow([name2, CLASS_GRADES[0], "train", kl2.patient_ids[j], kl2.sides[j] or "",
                            Path(name2).stem, k, "kl2_to_kl0", kl2.image_ids[j], kl0.image_ids[i],
                            str(kl2.paths[j]), str(kl0.paths[i]), ckpt_hash])
