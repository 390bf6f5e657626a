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

import csv
import dataclasses
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kecae import __version__
from kecae.data.catalog import grades_of
from kecae.device import select_device
from kecae.errors import KecaeError
from kecae.files import atomic_path, atomic_write_text, file_sha256
from kecae.paths import load_path, store_path
from kecae.reuse import check_out_of_data, check_same, prepare_output
from kecae.runfolder import GeneratedFolder
from kecae.runlock import releases_locks

if TYPE_CHECKING:
    import torch

    from kecae.data.cache import ImageSet
    from kecae.data.pairs import PairSampler
    from kecae.models.autoencoder import KECAE

log = logging.getLogger(__name__)

MANIFEST_FIELDS = [
    "path",
    "grade",
    "split",
    "patient_id",
    "side",
    "image_id",
    "pair_index",
    "direction",
    "recipient_id",
    "donor_id",
    "recipient_path",
    "donor_path",
    "checkpoint_sha256",
]


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


def directions(grades: tuple[int, int]) -> tuple[str, str]:
    """The names of the two exchange directions: ``("kl0_to_kl2", "kl2_to_kl0")`` for (0, 2)."""
    low, high = grades
    return f"kl{low}_to_kl{high}", f"kl{high}_to_kl{low}"


def _file_names(k: int, grades: tuple[int, int]) -> tuple[str, str]:
    """Relative paths of X'1 (label: the higher grade) and X'2 (the lower) of pair ``k``."""
    low, high = grades
    return (
        f"{high}/pair{k:07d}_kl{low}to{high}.png",
        f"{low}/pair{k:07d}_kl{high}to{low}.png",
    )


def labels_json(grades: tuple[int, int]) -> dict[str, Any]:
    """``labels.json`` of a generated folder: which KL grade each folder holds."""
    low, high = grades
    return {
        "class_to_idx": {str(low): low, str(high): high},
        "index_is": "the KL grade (folder names are grades, as in a 0-4 tree's split/<grade>/)",
        "binary_task": {"0": f"KL-{low}", "1": f"KL-{high}"},
        "merge": "copy each folder's images into the grade folder of the same name; with "
        "torchvision's ImageFolder(DIR) map a class index to its grade with "
        "int(dataset.classes[index])",
    }


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[-1, 1] float -> uint8 grey."""
    return np.clip((x + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


#: Version of the generated folder's format: 2 marks every PNG with text chunks.
FORMAT = 2

#: generation.json entries that must match for a folder to be continued.
_SAME = ("checkpoint_sha256", "data", "seed", "oversample", "image_size")


def png_marks(k: int, direction: str, recipient: str, donor: str, ckpt_hash: str) -> dict[str, str]:
    """The text chunks of pair ``k``'s image in ``direction``."""
    return {
        "Software": f"kecae {__version__}",
        "kecae:synthetic": "true",
        "Description": "Synthetic knee radiograph made by kecae (key exchange); not a real "
        "patient image",
        "kecae:pair": str(k),
        "kecae:direction": direction,
        "kecae:recipient": recipient,
        "kecae:donor": donor,
        "kecae:checkpoint_sha256": ckpt_hash,
    }


def _write_png(path: Path, image: np.ndarray, marks: dict[str, str] | None = None) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (marks or {}).items():
        info.add_text(key, value)
    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(image)).save(tmp, format="PNG", pnginfo=info)


def _own_image(path: Path, marks: dict[str, str], size: int, legacy: bool) -> str | None:
    """None when ``path`` is pair image this generation wrote (it decodes, has the model's size
    and carries ``marks``), else the reason it is not."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            text = dict(getattr(img, "text", {}) or {})
            shape = img.size
    except Exception as exc:  # noqa: BLE001 (truncated, not an image, a folder: all "not ours")
        return f"it does not decode ({type(exc).__name__})"
    if shape != (size, size):
        return f"it is {shape[0]} x {shape[1]} px, not {size} x {size}"
    if legacy and "kecae:synthetic" not in text:
        return None  # written by a kecae older than the marks
    wrong = [
        k
        for k in ("kecae:checkpoint_sha256", "kecae:pair", "kecae:direction")
        if text.get(k) != marks[k]
    ]
    return f"its {', '.join(wrong)} text differs or is missing" if wrong else None


def read_meta(folder: GeneratedFolder) -> dict[str, Any] | None:
    """generation.json with absolute paths; None for a folder generate did not make yet."""
    if not folder.meta.exists():
        return None
    try:
        meta = json.loads(folder.meta.read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise KecaeError(
            f"{folder.meta} is damaged ({exc}), so the images in {folder.folder} "
            "cannot be matched to a checkpoint: choose another --out, or delete "
            "the folder to generate again"
        ) from exc
    for key in ("checkpoint", "data"):
        if isinstance(meta.get(key), str):
            meta[key] = load_path(meta[key], folder.folder, legacy=True)
    return meta


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


class _PairImages:
    """The two PNGs of each pair in a generated folder: their names, marks, and whether they
    are already there (and ours)."""

    def __init__(
        self,
        folder: GeneratedFolder,
        kl0: ImageSet,
        kl2: ImageSet,
        ckpt_hash: str,
        size: int,
        legacy: bool,
        grades: tuple[int, int],
    ) -> None:
        self.folder, self.kl0, self.kl2 = folder, kl0, kl2
        self.ckpt_hash, self.size, self.legacy = ckpt_hash, size, legacy
        self.grades = grades

    def marks(self, k: int, i: int, j: int) -> tuple[dict[str, str], dict[str, str]]:
        """The text chunks of X'1 and X'2 of pair ``k`` (lower-grade image ``i``, higher ``j``)."""
        a, b = self.kl0.image_ids[i], self.kl2.image_ids[j]
        forward, back = directions(self.grades)
        return (
            png_marks(k, forward, a, b, self.ckpt_hash),
            png_marks(k, back, b, a, self.ckpt_hash),
        )

    def done(self, k: int, i: int, j: int) -> bool:
        """Both images of pair k are there and ours; a foreign file under its name stops."""
        found = []
        names = _file_names(int(k), self.grades)
        for name, mark in zip(names, self.marks(int(k), int(i), int(j)), strict=True):
            path = self.folder.folder / name
            if not path.exists():
                found.append(False)
                continue
            reason = _own_image(path, mark, self.size, self.legacy)
            if reason is not None:
                raise KecaeError(
                    f"{path} is not an image this generation wrote ({reason}): "
                    "move it out of the folder and rerun (generate never "
                    "overwrites a file it did not write)"
                )
            found.append(True)
        return all(found)

    def write(self, k: int, i: int, j: int, x1_ex: np.ndarray, x2_ex: np.ndarray) -> None:
        """X'1 and X'2 (S, S) of pair ``k``, marked."""
        (name1, name2), (mark1, mark2) = _file_names(k, self.grades), self.marks(k, i, j)
        _write_png(self.folder.folder / name1, x1_ex, mark1)
        _write_png(self.folder.folder / name2, x2_ex, mark2)


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

    from kecae.config import check_values
    from kecae.data.cache import load_image_set
    from kecae.data.catalog import load_catalog
    from kecae.data.pairs import PairSampler
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
    _write_meta(folder, meta, legacy, grades)
    pairs = _PairImages(GeneratedFolder(out), kl0, kl2, ckpt_hash, size, legacy, grades)
    t0 = time.perf_counter()
    written, skipped = _write_pairs(model, sampler, pairs, cfg, device)
    seconds = time.perf_counter() - t0
    _write_manifest(folder, sampler, kl0, kl2, cfg.pairs, ckpt_hash, grades)
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


def _write_meta(
    folder: GeneratedFolder, meta: dict[str, Any], legacy: bool, grades: tuple[int, int]
) -> None:
    """generation.json (paths inside the run folder stored relative to it) and labels.json."""
    out = folder.folder
    atomic_write_text(
        folder.meta,
        json.dumps(
            {
                **meta,
                "format": 1 if legacy else FORMAT,
                "checkpoint": store_path(meta["checkpoint"], out),
                "data": store_path(meta["data"], out),
            },
            indent=2,
        ),
    )

    atomic_write_text(folder.labels, json.dumps(labels_json(grades), indent=2))


def _write_pairs(
    model: KECAE,
    sampler: PairSampler,
    pairs: _PairImages,
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


def _write_manifest(
    folder: GeneratedFolder,
    sampler: PairSampler,
    kl0: ImageSet,
    kl2: ImageSet,
    pairs: int,
    ckpt_hash: str,
    grades: tuple[int, int],
    chunk: int = 65536,
) -> None:
    """Rows follow from (pair index, sampler, image sets): written in one streaming pass. Source
    paths are written as the run folder stores paths (relative inside it)."""
    out = folder.folder

    def src(path: Any) -> str:
        return store_path(path, out)

    forward, back = directions(grades)

    with atomic_path(folder.manifest) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(MANIFEST_FIELDS)
        for start in range(0, pairs, chunk):
            ij = sampler.pairs(start, min(start + chunk, pairs))
            for k, (i, j) in enumerate(ij.tolist(), start=start):
                name1, name2 = _file_names(k, grades)
                # X'1: the lower-grade knee i (its anatomy, patient and side) with the key of the
                # higher-grade knee j
                w.writerow(
                    [
                        name1,
                        grades[1],
                        "train",
                        kl0.patient_ids[i],
                        kl0.sides[i] or "",
                        Path(name1).stem,
                        k,
                        forward,
                        kl0.image_ids[i],
                        kl2.image_ids[j],
                        src(kl0.paths[i]),
                        src(kl2.paths[j]),
                        ckpt_hash,
                    ]
                )
                w.writerow(
                    [
                        name2,
                        grades[0],
                        "train",
                        kl2.patient_ids[j],
                        kl2.sides[j] or "",
                        Path(name2).stem,
                        k,
                        back,
                        kl2.image_ids[j],
                        kl0.image_ids[i],
                        src(kl2.paths[j]),
                        src(kl0.paths[i]),
                        ckpt_hash,
                    ]
                )
