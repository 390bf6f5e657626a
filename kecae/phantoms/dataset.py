"""Write a phantom data set in the public on-disk layout, with a ground-truth manifest.

Layout: ``OUT/<split>/<grade>/<image_id>.png`` (8-bit grey PNG, S x S) and ``OUT/ground_truth.csv``,
which is also a kecae manifest (``path``, ``grade``, ``patient_id``, ``side``, ``split``,
``image_id`` first, then the ground truth and every rendering parameter).

Patients: knees are grouped into patients, most of whom contribute a left and a right knee that
share body traits (bone size, soft tissue, bone density, healthy joint space). Splits are drawn
per patient, stratified by the patient's grades, so no patient is in two splits. Per-grade totals
are exactly as requested.

Determinism: every random stream comes from ``SeedSequence(seed, spawn_key=(stream, index))``:
the plan (patients, sides, splits) from stream 0, patient traits from stream 1, each knee from
stream 2 with its own index. An image depends only on (seed, its index, its patient), so the
number of worker processes changes nothing, and PNGs are written with fixed encoder settings.
Each file is written atomically; a rerun skips images already written, and the CSV is written
(atomically) last.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import multiprocessing
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kecae import __version__
from kecae.errors import KecaeError
from kecae.files import atomic_path, atomic_write_text
from kecae.phantoms.params import (
    FOV_MM,
    GRADES,
    MARGINS,
    OSTEOPHYTE_DEFINITE_MM,
    PhantomParams,
    sample_params,
    sample_patient_traits,
)
from kecae.phantoms.site import draw_site
from kecae.phantoms.synth import render
from kecae.reuse import check_same

log = logging.getLogger(__name__)

#: Names of the three splits, in the order of the ``splits`` fractions.
SPLITS = ("train", "val", "test")
#: Fraction of patients who contribute both knees.
BILATERAL_FRACTION = 0.6
#: File (inside OUT) that records how the data set was made, to refuse a mismatching rerun.
SPEC_NAME = ".kecae_phantoms.json"
#: Manifest / ground-truth file name (kecae.data reads it as a manifest).
CSV_NAME = "ground_truth.csv"
#: PNG encoder settings: fixed so the same image always gives the same bytes.
PNG_OPTIONS: dict[str, Any] = {"format": "PNG", "compress_level": 6, "optimize": False}

_STREAM_PLAN, _STREAM_PATIENT, _STREAM_KNEE, _STREAM_SITE = 0, 1, 2, 3


def _rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    seq = np.random.SeedSequence(seed, spawn_key=(stream, index))
    return np.random.Generator(np.random.PCG64(seq))


@dataclass(frozen=True)
class Knee:
    """One planned image: identity, labels and parameters."""

    index: int  # position in the data set (also its random stream)
    image_id: str  # file stem, unique in the data set
    patient_id: str
    split: str  # train / val / test
    params: PhantomParams

    @property
    def relpath(self) -> str:
        """Path relative to the data set folder (posix)."""
        return f"{self.split}/{self.params.grade}/{self.image_id}.png"


def plan_dataset(
    counts: dict[int, int],
    seed: int = 0,
    splits: Sequence[float] = (0.7, 0.15, 0.15),
    site_bias: float | None = None,
) -> list[Knee]:
    """Draw patients, sides, splits and parameters for ``counts`` = {grade: number of knees}.

    ``site_bias``: each knee also gets an acquisition site correlated with its grade in train
    and validation (:func:`kecae.phantoms.site.draw_site`), from a stream of its own, so every
    other parameter is the same as without it. Cheap (no rendering): about 0.1 ms per knee.
    """
    fractions = _check_splits(splits)
    for g, n in counts.items():
        if g not in GRADES:
            raise ValueError(f"unknown KL grade {g!r}; phantoms exist for grades {GRADES}")
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(
                f"the number of KL-{g} phantoms must be a non-negative integer, got {n!r}"
            )
    if sum(counts.values()) == 0:
        raise ValueError(
            "asked for 0 phantoms; give at least one of n_kl0 / n_kl2 a positive count"
        )

    # Patients: shuffle the knee slots, then take one (unilateral) or two (bilateral) at a time.
    rng = _rng(seed, _STREAM_PLAN)
    slots = np.concatenate([np.full(n, g, dtype=np.int64) for g, n in sorted(counts.items())])
    rng.shuffle(slots)
    patients: list[list[int]] = []  # slot positions per patient
    i = 0
    while i < len(slots):
        two = i + 1 < len(slots) and rng.random() < BILATERAL_FRACTION
        patients.append([i, i + 1] if two else [i])
        i += 2 if two else 1

    # Splits per patient, stratified by the patient's grade combination.
    split_of = np.empty(len(patients), dtype=np.int64)
    strata: dict[tuple[int, ...], list[int]] = {}
    for p, members in enumerate(patients):
        strata.setdefault(tuple(sorted(int(slots[k]) for k in members)), []).append(p)
    for key in sorted(strata):
        group = np.array(strata[key])
        rng.shuffle(group)
        bounds = np.round(np.cumsum(fractions) * len(group)).astype(int)
        split_of[group] = np.searchsorted(bounds, np.arange(len(group)), side="right")

    # Knees: bilateral patients get one left and one right knee, in a random order.
    knees: list[Knee] = []
    for p, members in enumerate(patients):
        traits = sample_patient_traits(_rng(seed, _STREAM_PATIENT, p))
        sides: list[str | None] = [None]
        if len(members) == 2:
            sides = ["L", "R"] if rng.random() < 0.5 else ["R", "L"]
        for k, side in zip(members, sides):
            index = len(knees)
            params = sample_params(
                int(slots[k]), _rng(seed, _STREAM_KNEE, index), side=side, traits=traits
            )
            if site_bias is not None:
                split = SPLITS[int(split_of[p])]
                site = draw_site(params.grade, split, site_bias, _rng(seed, _STREAM_SITE, index))
                params = dataclasses.replace(params, site=site)
            knees.append(
                Knee(
                    index=index,
                    image_id=f"ph{index:06d}",
                    patient_id=f"P{p:05d}",
                    split=SPLITS[int(split_of[p])],
                    params=params,
                )
            )
    return knees


def _check_splits(splits: Sequence[float]) -> np.ndarray:
    f = np.asarray(splits, dtype=np.float64)
    if f.shape != (3,) or np.any(f < 0) or abs(f.sum() - 1.0) > 1e-6:
        raise ValueError(
            f"splits must be three non-negative fractions (train, val, test) summing "
            f"to 1, e.g. (0.7, 0.15, 0.15); got {tuple(splits)}"
        )
    return f


# ------------------------------------------------------------------------------- the CSV
#: Columns every row starts with (the manifest part), then the ground truth.
MANIFEST_COLUMNS = ("path", "grade", "patient_id", "side", "split", "image_id")
GROUND_TRUTH_COLUMNS = (
    "size",
    "pixel_spacing_mm",
    "jsw_medial_mm",
    "jsw_lateral_mm",
    "jsw_medial_px",
    "jsw_lateral_px",
    *(f"ost_{m}_mm" for m in MARGINS),
    *(f"ost_{m}" for m in MARGINS),
    "osteophytes",
    "medial_on_image_left",
    "severity",
    "noise_free",
)
_PARAM_SKIP = {
    "site",  # a column of its own, written only for a data set with sites
    "grade",
    "side",
    "severity",
    "jsw_medial_mm",
    "jsw_lateral_mm",
    *(f"ost_{m}_mm" for m in MARGINS),
}
PARAM_COLUMNS = tuple(
    f.name for f in dataclasses.fields(PhantomParams) if f.name not in _PARAM_SKIP
)


def _row(knee: Knee, size: int, noise_free: bool) -> dict[str, object]:
    p = knee.params
    gt = p.ground_truth(size)
    row: dict[str, object] = {
        "path": knee.relpath,
        "grade": p.grade,
        "patient_id": knee.patient_id,
        "side": p.side,
        "split": knee.split,
        "image_id": knee.image_id,
        "size": size,
        "pixel_spacing_mm": gt["pixel_spacing_mm"],
        "jsw_medial_mm": p.jsw_medial_mm,
        "jsw_lateral_mm": p.jsw_lateral_mm,
        "jsw_medial_px": gt["jsw_medial_px"],
        "jsw_lateral_px": gt["jsw_lateral_px"],
        "severity": p.severity,
        "noise_free": int(noise_free),
        "osteophytes": int(gt["osteophytes"]),
        "medial_on_image_left": int(gt["medial_on_image_left"]),
    }
    for m, mm in zip(MARGINS, p.osteophyte_sizes_mm):
        row[f"ost_{m}_mm"] = mm
        row[f"ost_{m}"] = int(mm >= OSTEOPHYTE_DEFINITE_MM)
    for name in PARAM_COLUMNS:
        row[name] = getattr(p, name)
    row["site"] = p.site
    return row


def _format(v: object) -> str:
    # floats to 6 significant digits: stable text, far finer than any rendering effect
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def ground_truth_csv(knees: Iterable[Knee], size: int, noise_free: bool) -> str:
    """The text of ground_truth.csv for these knees."""
    knees = list(knees)
    columns = MANIFEST_COLUMNS + GROUND_TRUTH_COLUMNS + PARAM_COLUMNS
    if any(k.params.site != "none" for k in knees):
        columns += ("site",)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for k in knees:
        row = _row(k, size, noise_free)
        w.writerow([_format(row[c]) for c in columns])
    return buf.getvalue()


# ------------------------------------------------------------------------------- writing
def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W) image with the fixed encoder settings."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, **PNG_OPTIONS)
    return buf.getvalue()


def _write_one(job: tuple[PhantomParams, str, int, bool]) -> int:
    """Render and atomically write one image unless it already exists; returns 1 if written."""
    params, path, size, noise_free = job
    if os.path.exists(path):
        return 0
    data = encode_png(render(params, size, noise_free=noise_free))
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return 1


def _spec(
    counts: dict[int, int],
    size: int,
    seed: int,
    splits: Sequence[float],
    noise_free: bool,
    site_bias: float | None = None,
) -> dict[str, object]:
    sites = {} if site_bias is None else {"site_bias": float(site_bias)}
    return {
        "generator": "kecae phantoms",
        "version": __version__,
        "fov_mm": FOV_MM,
        "counts": {str(g): int(n) for g, n in sorted(counts.items())},
        "size": int(size),
        "seed": int(seed),
        "splits": [float(f) for f in splits],
        "noise_free": bool(noise_free),
        **sites,
    }


def _check_out(out: Path, spec: dict[str, object]) -> None:
    """Refuse an output folder that holds something else or a data set made differently."""
    spec_file = out / SPEC_NAME
    if spec_file.exists():
        try:
            old = json.loads(spec_file.read_text())
        except (OSError, ValueError) as exc:
            raise KecaeError(
                f"{spec_file} is unreadable ({exc}); delete {out} and run again"
            ) from exc
        check_same(
            out,
            old,
            spec,
            ignore=("version",),
            what="phantoms",
            sep="; ",
            fix="use another output folder, or delete this one to remake it",
        )
    elif out.exists() and any(out.iterdir()):
        raise KecaeError(
            f"{out} is not empty and was not made by `kecae phantoms`; "
            "choose an empty or new output folder"
        )


def make_phantoms(
    out: str | os.PathLike,
    n_kl0: int = 3185,
    n_kl2: int = 2126,
    size: int = 224,
    seed: int = 0,
    splits: Sequence[float] = (0.7, 0.15, 0.15),
    workers: int = 1,
    noise_free: bool = False,
    *,
    n_kl1: int = 0,
    n_kl3: int = 0,
    n_kl4: int = 0,
    site_bias: float | None = None,
    progress: bool = True,
) -> Path:
    """Write a phantom data set to ``out`` and return the path of its ground_truth.csv.

    Defaults are the paper's KL-0 : KL-2 balance (3,185 : 2,126) at 224 px. Grades 1, 3 and 4 are
    optional extras. ``site_bias`` adds acquisition sites, one with a burned-in marker, that
    go with the grade in train and validation (:mod:`kecae.phantoms.site`: the shortcut regime).
    Same arguments -> byte-identical files, whatever ``workers`` is; rerunning an interrupted
    call writes only the missing images.
    """
    if site_bias is not None and not 0 <= site_bias <= 1:
        raise ValueError(f"site_bias must be a probability in [0, 1], got {site_bias!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"size must be an integer >= 32 pixels, got {size!r}")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    counts = {
        g: n
        for g, n in ((0, n_kl0), (1, n_kl1), (2, n_kl2), (3, n_kl3), (4, n_kl4))
        if n or g in (0, 2)
    }
    knees = plan_dataset(counts, seed=seed, splits=splits, site_bias=site_bias)
    out = Path(out)
    spec = _spec(counts, size, seed, splits, noise_free, site_bias)
    _check_out(out, spec)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / SPEC_NAME).exists():
        atomic_write_text(out / SPEC_NAME, json.dumps(spec, indent=2) + "\n")
    for split in SPLITS:
        for g in counts:
            (out / split / str(g)).mkdir(parents=True, exist_ok=True)

    jobs = [
        (k.params, str(out / k.relpath), int(size), bool(noise_free))
        for k in knees
        if not (out / k.relpath).exists()
    ]
    log.info(
        "phantoms: %d images (%d already there) -> %s", len(knees), len(knees) - len(jobs), out
    )
    written = 0
    if jobs:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="img", desc="phantoms", disable=not progress)
        if workers == 1:
            for job in jobs:
                written += _write_one(job)
                bar.update()
        else:
            # spawn, not fork: the parent may hold threads (torch) that a fork would copy unsafely
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers) as pool:
                for n in pool.imap_unordered(_write_one, jobs, chunksize=32):
                    written += n
                    bar.update()
        bar.close()

    csv_path = out / CSV_NAME
    atomic_write_text(csv_path, ground_truth_csv(knees, int(size), bool(noise_free)))
    log.info("phantoms: wrote %d images and %s", written, csv_path)
    return csv_path
