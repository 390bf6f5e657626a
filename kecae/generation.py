"""Generation of the augmented set X': for N pairs (X1 of the lower grade, X2 of the higher) of
the train split, X'1 = decode(hN1 + hK2) (X1 given X2's key features, labelled with X2's grade)
and X'2 = decode(hN2 + hK1) (the reverse). The grades are the KECAE checkpoint's (KL-0 and KL-2
by default; ``kecae train --grades 0 1`` trains another pair) and appear in every folder, file
name and label below.

Output, in the public layout so any tool can read it, and merged with the train split it is
T' = T ∪ X' for `kecae train-classifier --augment-dir DIR`::

    DIR/2/pair0000042_kl0to2.png    X'1 of pair 42 (label KL-2)
    DIR/0/pair0000042_kl2to0.png    X'2 of pair 42 (label KL-0)
    DIR/manifest.csv                file, label, source images, pair index, checkpoint hash
    DIR/labels.json                 folder name -> KL grade (class_to_idx keyed by the grade)
    DIR/generation.json             what made the folder (checkpoint, data, N, seed)

Folders are named by KL grade, never by class index, so copying ``DIR/2/*`` into a 0-4 tree's
``train/2/`` keeps every label; ``labels.json`` says so for tools that index classes
(torchvision's ``ImageFolder`` over DIR alone numbers its two folders 0 and 1).

Every PNG carries text chunks that mark it synthetic (``kecae:synthetic``) and name its pair,
recipient, donor and the checkpoint's SHA-256, so an image keeps its provenance when copied out
of the folder. Streams in batches (memory does not grow with N); every PNG is written
atomically, so an interrupted run leaves no half-written image, and a rerun skips the images
that decode and carry this generation's marks.

Generation writes only into a new or empty folder or one it made itself (it holds
``generation.json``, written once every check has passed), and never overwrites a file it did
not write: a foreign file under a pair's name stops it with the file's name.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kecae.config import check_values
from kecae.data.cache import load_image_set
from kecae.data.catalog import grades_of, load_catalog
from kecae.data.pairs import PairSampler
from kecae.device import select_device
from kecae.errors import KecaeError
from kecae.files import file_sha256
from kecae.generated_files import FORMAT, PairImages, read_meta, write_manifest, write_meta
from kecae.reuse import check_out_of_data, check_same, prepare_output
from kecae.runfolder import GeneratedFolder
from kecae.runlock import releases_locks

if TYPE_CHECKING:
    import torch

    from kecae.models.autoencoder import KECAE

# kecae.inference (torch) is imported when images are generated: the command line imports this
# module for GenerateConfig and stays light.


log = logging.getLogger(__name__)


@dataclass
class GenerateConfig:
    """Generation of key-exchanged images from a trained KECAE checkpoint."""

    checkpoint: str = (
        ""  # KECAE checkpoint, or the run folder that holds it (RUN/kecae/checkpoints/last.pt)
    )
    data: str = ""  # pairs come from its train split (default: the data KECAE was trained on)
    out: str = ""  # output folder (public layout + manifest.csv)
    pairs: int = 100_000  # N pairs; each gives one KL-2 and one KL-0 image (paper: 100k)
    seed: int = 0  # seeds the pair sample
    oversample: bool = False  # bootstrap the minority class before pairing
    batch_size: int = 64  # pairs per forward pass
    device: str = "auto"  # auto / cpu / cuda
    cache_dir: str | None = None  # preprocessed-image cache
    progress: bool = True  # progress bar
    patient_regex: str | None = None  # folder layout: regex with a group 'patient' (see data check)


#: generation.json entries that must match for a folder to be continued.
_SAME = ("checkpoint_sha256", "data", "seed", "oversample", "image_size")


def _check_out(out: Path, data_root: Path, data_is_folder_layout: bool) -> None:
    """Refuse an output folder that is (or holds) the data set, or holds files generate did not
    write."""
    check_out_of_data(out, data_root, data_is_folder_layout)
    if not GeneratedFolder(out).meta.exists() and out.is_dir():
        visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        if visible:
            raise KecaeError(
                f"--out {out} holds files that kecae generate did not write ("
                f"{', '.join(visible[:3])}{', ...' if len(visible) > 3 else ''}): "
                "choose a new or empty folder (generate never overwrites a file it "
                "did not write)"
            )


def _with_training_data(cfg: GenerateConfig, trained: dict[str, Any]) -> GenerateConfig:
    """``cfg`` with the data set (its patient regex and cache) KECAE was trained on where none
    is given: the checkpoint names them."""
    if cfg.data:
        return cfg
    data = trained.get("data")
    if not data or not Path(data).exists():
        raise KecaeError(
            f"--data is required: the checkpoint {cfg.checkpoint} names no data set that is "
            f"still there ({data or 'none'}); pass the folder or manifest KECAE was trained on"
        )
    log.info("data: %s (the data set %s was trained on)", data, cfg.checkpoint)
    return dataclasses.replace(
        cfg,
        data=data,
        patient_regex=cfg.patient_regex or trained.get("patient_regex"),
        cache_dir=cfg.cache_dir or trained.get("cache_dir"),
    )


@releases_locks
def generate(cfg: GenerateConfig) -> dict[str, Any]:
    """Write X'1 / X'2 for ``cfg.pairs`` pairs; returns a summary (also in generation.json)."""

    from kecae.inference import find_checkpoint, load_kecae

    # every check before anything is written
    check_values(cfg)
    for name in ("checkpoint", "out"):
        if not getattr(cfg, name):
            raise KecaeError(f"--{name} is required")
    device = select_device(cfg.device)
    folder = GeneratedFolder(Path(cfg.out))
    out = folder.folder
    if out.exists() and not out.is_dir():
        raise KecaeError(f"--out {out} is a file, not a folder: choose a new or empty folder")
    cfg = dataclasses.replace(cfg, checkpoint=str(find_checkpoint(cfg.checkpoint)))
    model, ckpt = load_kecae(cfg.checkpoint, device)
    cfg = _with_training_data(cfg, ckpt.get("train_config") or {})
    catalog = load_catalog(cfg.data, patient_regex=cfg.patient_regex)
    _check_out(out, catalog.root, catalog.layout == "folders")
    old = read_meta(folder)
    size = int(ckpt["model_config"]["image_size"])
    grades = grades_of(ckpt.get("train_config"))
    ckpt_hash = file_sha256(cfg.checkpoint)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "checkpoint": str(Path(cfg.checkpoint).resolve()),
        "checkpoint_sha256": ckpt_hash,
        "data": str(Path(cfg.data).resolve()),
        "pairs": cfg.pairs,
        "seed": cfg.seed,
        "oversample": cfg.oversample,
        "image_size": size,
        "grades": list(grades),
    }
    if old is not None:
        check_same(
            out,
            old,
            meta,
            fields=_SAME,
            what="images",
            fix="choose another --out, or delete the folder to start again",
        )
    kl0, kl2 = (
        load_image_set(
            catalog,
            size=size,
            split="train",
            grades=(grade,),
            cache_dir=cfg.cache_dir,
            progress=cfg.progress,
        )
        for grade in grades
    )
    total = len(kl0.images) * len(kl2.images)
    if cfg.pairs > total and not cfg.oversample:
        raise KecaeError(
            f"--pairs {cfg.pairs} is more than the {total} KL-{grades[0]} x "
            f"KL-{grades[1]} pairs of the train split: ask for at most {total}"
        )
    sampler = PairSampler(
        len(kl0.images), len(kl2.images), cfg.pairs, seed=cfg.seed, oversample=cfg.oversample
    )
    prepare_output(out)
    # a folder begun by a kecae older than the marks keeps accepting its unmarked images
    legacy = old is not None and int(old.get("format", 1)) < FORMAT
    write_meta(folder, meta, legacy, grades)
    pairs = PairImages(GeneratedFolder(out), kl0, kl2, ckpt_hash, size, legacy, grades)
    t0 = time.perf_counter()
    written, skipped = _write_pairs(model, sampler, pairs, cfg, device)
    seconds = time.perf_counter() - t0
    write_manifest(folder, sampler, kl0, kl2, cfg.pairs, ckpt_hash, grades)
    summary = {
        **meta,
        "written_pairs": written,
        "skipped_pairs": skipped,
        "images": 2 * cfg.pairs,
        "seconds": seconds,
        "images_per_s": 2 * written / seconds if written else None,
    }
    log.info(
        "generated %d new pairs (%d already there) in %.1f s -> %s", written, skipped, seconds, out
    )
    return summary


def _write_pairs(
    model: KECAE,
    sampler: PairSampler,
    pairs: PairImages,
    cfg: GenerateConfig,
    device: torch.device,
) -> tuple[int, int]:
    """Exchange and write every pair not written yet, batch by batch; (written, skipped)."""
    from tqdm.auto import tqdm

    from kecae.inference import exchange

    kl0, kl2 = pairs.kl0, pairs.kl2
    written = skipped = 0
    bar = tqdm(total=cfg.pairs, desc="generate", unit="pair", disable=not cfg.progress)
    with ThreadPoolExecutor(max_workers=2) as pool:  # PNG encoding overlaps the next forward pass
        for start in range(0, cfg.pairs, cfg.batch_size):
            ks = np.arange(start, min(start + cfg.batch_size, cfg.pairs))
            ij = sampler.pairs(int(ks[0]), int(ks[-1]) + 1)  # (B, 2): KL-0 and KL-2 image
            todo = np.array(
                [not ok for ok in pool.map(pairs.done, ks, ij[:, 0], ij[:, 1])], dtype=bool
            )
            skipped += int((~todo).sum())
            if todo.any():
                x1_ex, x2_ex = exchange(
                    model,
                    kl0.images[ij[todo, 0]],
                    kl2.images[ij[todo, 1]],
                    batch_size=cfg.batch_size,
                    device=device,
                )
                pending = [
                    pool.submit(pairs.write, int(k), int(i), int(j), a, b)
                    for k, (i, j), a, b in zip(ks[todo], ij[todo], x1_ex, x2_ex, strict=True)
                ]
                written += len(pending)
                for f in pending:
                    f.result()  # surfaces a full disk at once
            bar.update(len(ks))
    bar.close()
    return written, skipped
