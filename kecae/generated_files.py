"""The files of a generated folder (``kecae generate``'s output): PNG names and their provenance
marks, generation.json, labels.json, the manifest, and each pair's two images written and
recognised on a rerun. No torch: readers of a generated folder import it alone.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kecae import __version__
from kecae.errors import KecaeError
from kecae.files import atomic_path, atomic_write_text
from kecae.paths import load_path, store_path
from kecae.runfolder import GeneratedFolder

if TYPE_CHECKING:
    from kecae.data.cache import ImageSet
    from kecae.data.pairs import PairSampler


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


class PairImages:
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


def write_meta(
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


def write_manifest(
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
