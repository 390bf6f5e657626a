"""Oracle key exchanges on phantoms: the image a perfect exchange would produce.

A phantom's ground truth (``ground_truth.csv``) holds every parameter it was rendered from.
Rendering the recipient's parameters with the donor's key features (joint-space widths,
osteophytes, latent severity) gives exactly what the key exchange is asked to make: the
recipient's anatomy, pose, exposure and noise with the donor's key. ``kecae evaluate`` applies
its rules to these oracle images too; their scores are the ceiling a generator can reach with
this judge and this measurement, as the rates on real images are the floor.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from kecae.data.readers import preprocess
from kecae.phantoms.params import KEY_FIELDS, PhantomParams
from kecae.phantoms.synth import render

_FIELDS = {f.name: f.type for f in dataclasses.fields(PhantomParams)}
#: Fields a ground-truth row may lack (a data set without sites has no ``site`` column).
_DEFAULTS = {
    f.name: str(f.default)
    for f in dataclasses.fields(PhantomParams)
    if f.default is not dataclasses.MISSING
}


def read_ground_truth(path: str | Path) -> dict[str, dict[str, str]]:
    """Rows of a phantom ``ground_truth.csv``, keyed by ``image_id``."""
    with open(path, newline="") as fh:
        return {row["image_id"]: row for row in csv.DictReader(fh)}


def params_from_row(row: dict[str, str]) -> PhantomParams:
    """The :class:`PhantomParams` a ground-truth row describes (floats to 6 significant digits,
    as written: a re-rendered image differs from the file by well under one grey level)."""
    values: dict[str, object] = {}
    for name, kind in _FIELDS.items():
        raw = row[name] if name in row or name not in _DEFAULTS else _DEFAULTS[name]
        values[name] = (
            int(raw) if kind in ("int", int) else raw if kind in ("str", str) else float(raw)
        )
    return PhantomParams(**values)  # type: ignore[arg-type]  # built field by field from the CSV


def oracle_params(recipient: PhantomParams, donor: PhantomParams) -> PhantomParams:
    """The recipient with the donor's key features (and grade label): a perfect exchange."""
    return dataclasses.replace(
        recipient, grade=donor.grade, **{name: getattr(donor, name) for name in KEY_FIELDS}
    )


def oracle_images(
    rows: dict[str, dict[str, str]], recipients: list[str], donors: list[str], size: int
) -> np.ndarray:
    """Oracle exchanges of aligned (recipient, donor) image ids, prepared like the data set's
    images at ``size`` px: rendered at the size the data set was written (as the PNG's uint8
    levels), then squared and resized as the image cache does. Returns (N, size, size) float32
    in [-1, 1]."""

    if len(recipients) != len(donors):
        raise ValueError(f"{len(recipients)} recipients but {len(donors)} donors: pass pairs")
    out = np.empty((len(recipients), size, size), dtype=np.float32)
    for k, (r, d) in enumerate(zip(recipients, donors, strict=True)):
        rec, don = rows[r], rows[d]
        params = oracle_params(params_from_row(rec), params_from_row(don))
        pixels = render(params, int(rec["size"]), noise_free=bool(int(rec["noise_free"])))
        out[k] = preprocess(pixels.astype(np.float32) / 255.0, size)
    return out
