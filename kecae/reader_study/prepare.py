"""``kecae reader-study prepare``: a blinded, shuffled image set, per-reader orders, the database.

Blinding. Every image shown is re-encoded from its pixels into ``images/<random id>.png`` (no
PNG text chunk, no time stamp), real images preprocessed exactly as KECAE's inputs (square crop,
resize to the generated images' size), and the files are written in a random order. Ids, item
keys and file names are random, so nothing a reader's browser sees — a URL, a file name, a size
in pixels, a modification time — tells an exchanged image from a control or KL-0 from KL-2.
The truth (pair, direction, intended grade, control) is kept in the database only.
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
import re
import secrets
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kecae import __version__
from kecae.config import check_values
from kecae.data.readers import preprocess, read_image
from kecae.errors import KecaeError
from kecae.files import output_error, writable_folder
from kecae.generated_files import to_uint8
from kecae.reader_study import db
from kecae.reader_study.config import PrepareConfig
from kecae.runfolder import GeneratedFolder

_NEEDED = ("path", "grade", "pair_index", "direction", "recipient_path", "donor_path")
_READER_NAME = re.compile(r"^[\w.@-]{1,40}$")
_TARGET = {"kl0_to_kl2": 2, "kl2_to_kl0": 0}  # direction -> intended grade of the exchanged image


@dataclass
class _Pair:
    """One manifest pair: X'1 (kl0_to_kl2) and X'2 (kl2_to_kl0), each with its recipient."""

    index: int
    exchanged: dict[str, Path] = field(default_factory=dict)  # direction -> generated PNG
    recipient: dict[str, Path] = field(default_factory=dict)  # direction -> real source image


@dataclass
class PreparedStudy:
    """What :func:`prepare_study` wrote."""

    study: Path
    links: dict[str, str]  # reader name -> link path "/r/<token>"
    pairs: int
    generated_images: int
    controls: int
    image_size: int


def _resolve(p: str, generated: Path) -> Path:
    """A manifest path: absolute, or relative to the generated folder (how `kecae generate`
    writes paths inside a run folder), or, from older manifests, to the working folder."""
    path = Path(p)
    if path.is_absolute():
        return path
    anchored = generated / path
    return anchored if anchored.exists() or not path.exists() else path


def read_pairs(generated: str | Path) -> tuple[dict[int, _Pair], dict[Path, int]]:
    """The complete pairs of a generated folder's manifest, and every real source image it names
    with its grade (recipients and donors)."""
    generated = Path(generated)
    manifest = GeneratedFolder(generated).manifest
    if not manifest.is_file():
        raise KecaeError(
            f"{manifest} not found: pass the folder that `kecae generate --out DIR` "
            "wrote (it holds manifest.csv)"
        )
    pairs: dict[int, _Pair] = {}
    real: dict[Path, int] = {}
    with open(manifest, newline="") as fh:
        rows = csv.DictReader(fh)
        missing = [c for c in _NEEDED if c not in (rows.fieldnames or [])]
        if missing:
            raise KecaeError(
                f"{manifest} lacks the columns {missing}: regenerate it with "
                "`kecae generate` (this kecae writes them)"
            )
        for n, row in enumerate(rows, start=2):
            direction = row["direction"]
            if direction not in _TARGET:
                raise KecaeError(
                    f"{manifest} line {n}: direction {direction!r} is not one of {sorted(_TARGET)}"
                )
            try:
                k, grade = int(row["pair_index"]), int(row["grade"])
            except ValueError as exc:
                raise KecaeError(
                    f"{manifest} line {n}: pair_index and grade must be integers"
                ) from exc
            if grade != _TARGET[direction]:
                raise KecaeError(
                    f"{manifest} line {n}: grade {grade} does not match direction "
                    f"{direction} (label {_TARGET[direction]})"
                )
            pair = pairs.setdefault(k, _Pair(k))
            pair.exchanged[direction] = generated / row["path"]
            pair.recipient[direction] = _resolve(row["recipient_path"], generated)
            # the recipient of kl0_to_kl2 is a KL-0 knee and its donor a KL-2 knee, and so on
            recipient_grade = 2 - _TARGET[direction]
            real[pair.recipient[direction]] = recipient_grade
            real[_resolve(row["donor_path"], generated)] = 2 - recipient_grade
    complete = {k: p for k, p in pairs.items() if len(p.exchanged) == 2}
    return complete, real


def _choose_controls(
    real: dict[Path, int], used: set[Path], k: int, rng: np.random.Generator
) -> list[tuple[Path, int]]:
    """``k`` real images not used by the chosen pairs, half KL-0 and half KL-2 (the odd one
    drawn at random)."""
    if k == 0:
        return []
    free = {g: sorted(p for p, gg in real.items() if gg == g and p not in used) for g in (0, 2)}
    want = {0: k // 2, 2: k // 2}
    if k % 2:
        want[int(rng.choice([0, 2]))] += 1
    for g in (0, 2):
        if len(free[g]) < want[g]:
            raise KecaeError(
                f"--controls {k} needs {want[g]} real KL-{g} images that the chosen "
                f"pairs do not use, but the manifest names {len(free[g])}: ask for "
                "fewer controls or fewer pairs"
            )
    chosen = []
    for g in (0, 2):
        picks = rng.choice(len(free[g]), size=want[g], replace=False)
        chosen += [(free[g][i], g) for i in sorted(picks)]
    return chosen


def _grey_u8(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def _write_png(path: Path, pixels: np.ndarray) -> None:
    """Pixels only: Pillow writes no text or time chunk unless asked to."""
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(
        path, format="PNG", optimize=False
    )


def prepare_study(
    generated: str | Path,
    out: str | Path,
    *,
    pairs: int,
    readers: list[str],
    controls: int = 0,
    seed: int = 0,
) -> PreparedStudy:
    """Write a reader study for ``pairs`` random pairs of a generated folder.

    Args:
        generated: the folder `kecae generate` wrote (images + manifest.csv).
        out: the study folder to create; it must not exist or be empty.
        pairs: M pairs; each gives two phase-1 images (X'1, X'2) and two phase-2 comparisons.
        readers: reader names (letters, digits, ``._@-``), one personal link each.
        controls: K real images (half KL-0, half KL-2) mixed into phase 1; each also gives a
            phase-2 sham comparison (the image beside itself).
        seed: seeds the choice of pairs and controls and each reader's order.
    Raises:
        KecaeError: for a missing manifest or images, too many pairs or controls, bad names, an
            output that cannot be written (read-only, full disk).
    """
    generated, out = Path(generated), Path(out)
    _check_request(generated, out, pairs, readers, controls, seed)
    rng = np.random.default_rng(seed)
    chosen, control_images, side = _choose(generated, pairs, controls, rng)
    images, items = _plan(chosen, control_images)
    settings = {
        "schema_version": db.SCHEMA_VERSION,
        "kecae_version": __version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "generated": str(generated.resolve()),
        "pairs": pairs,
        "controls": controls,
        "seed": seed,
        "image_size": side,
        "readers": len(readers),
    }
    links = _write_study(out, images, items, readers, rng, settings)
    return PreparedStudy(
        study=out,
        links=links,
        pairs=pairs,
        generated_images=2 * pairs,
        controls=len(control_images),
        image_size=side,
    )


def _check_request(
    generated: Path, out: Path, pairs: int, readers: list[str], controls: int, seed: int
) -> None:
    """Refuse bad numbers, reader names and an output that exists or cannot be written, before
    anything is read."""
    check_values(
        PrepareConfig(
            generated=str(generated),
            pairs=pairs,
            readers=readers,
            controls=controls,
            seed=seed,
            out=str(out),
        )
    )
    if not readers:
        raise KecaeError("give at least one reader name with --readers")
    bad = [r for r in readers if not _READER_NAME.match(r)]
    if bad:
        raise KecaeError(f"reader names {bad} are not allowed: use 1-40 letters, digits or ._@-")
    if len(set(readers)) != len(readers):
        raise KecaeError(f"reader names must be distinct, got {readers}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise KecaeError(
            f"{out} already exists and is not empty: a study is never overwritten; "
            "choose another --out"
        )
    writable_folder(out.parent, "--out")  # the study is built beside it, then renamed


def _choose(
    generated: Path, pairs: int, controls: int, rng: np.random.Generator
) -> tuple[list[_Pair], list[tuple[Path, int]], int]:
    """The chosen pairs (each with its images on disk), the control images, and the side in
    pixels of the generated images."""
    complete, real = read_pairs(generated)
    if pairs > len(complete):
        raise KecaeError(
            f"--pairs {pairs} is more than the {len(complete)} complete pairs in "
            f"{generated}/manifest.csv: ask for at most {len(complete)}"
        )
    keys = sorted(complete)
    chosen = [complete[keys[i]] for i in sorted(rng.choice(len(keys), size=pairs, replace=False))]
    used = {p for pair in chosen for p in pair.recipient.values()}
    with open(GeneratedFolder(generated).manifest, newline="") as fh:  # donors of chosen pairs too
        chosen_idx = {pair.index for pair in chosen}
        used |= {
            _resolve(r["donor_path"], generated)
            for r in csv.DictReader(fh)
            if int(r["pair_index"]) in chosen_idx
        }
    control_images = _choose_controls(real, used, controls, rng)
    for pair in chosen:
        for p in (*pair.exchanged.values(), *pair.recipient.values()):
            if not p.is_file():
                raise KecaeError(
                    f"{p} (pair {pair.index}) not found: the study needs every "
                    "chosen generated image and its real recipient"
                )
    size = _grey_u8(chosen[0].exchanged["kl0_to_kl2"]).shape
    if size[0] != size[1]:
        raise KecaeError(f"generated images are {size[1]}x{size[0]} px; expected square images")
    return chosen, control_images, int(size[0])


def _new_id() -> str:
    return secrets.token_urlsafe(12)  # 16 characters


def _item(phase: int, kind: str, image_id: str, original_id: str | None, grade: int, **kw) -> dict:
    return dict(
        phase=phase, kind=kind, image_id=image_id, original_id=original_id, grade=grade, **kw
    )


def _plan(
    chosen: list[_Pair], control_images: list[tuple[Path, int]]
) -> tuple[list[tuple[str, str, Path]], list[dict]]:
    """Every image under a random id, ``(id, "generated" | "real", source)``, and every item
    (phase 1: one image; phase 2: the original beside it), each with a random id."""
    images: list[tuple[str, str, Path]] = []
    items: list[dict] = []
    for pair in chosen:
        for direction in ("kl0_to_kl2", "kl2_to_kl0"):
            ex_id, rec_id = _new_id(), _new_id()
            images += [
                (ex_id, "generated", pair.exchanged[direction]),
                (rec_id, "real", pair.recipient[direction]),
            ]
            grade, truth = _TARGET[direction], dict(direction=direction, pair_index=pair.index)
            items.append(_item(1, "exchanged", ex_id, None, grade, **truth))
            items.append(_item(2, "exchanged", ex_id, rec_id, grade, **truth))
    for path, grade in control_images:
        c_id = _new_id()
        images.append((c_id, "real", path))
        items.append(_item(1, "control", c_id, None, grade, direction=None, pair_index=None))
        # sham: the real image beside itself, with the exchange that would change its grade
        sham = "kl0_to_kl2" if grade == 0 else "kl2_to_kl0"
        items.append(_item(2, "sham", c_id, c_id, grade, direction=sham, pair_index=None))
    for it in items:
        it["id"] = _new_id()
    return images, items


def _write_study(
    out: Path,
    images: list[tuple[str, str, Path]],
    items: list[dict],
    readers: list[str],
    rng: np.random.Generator,
    settings: dict,
) -> dict[str, str]:
    """Write the study into a temporary folder beside ``out`` and rename it into place at the
    end: no half-made study, whatever stops it (a full disk included). Returns the links."""
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        _write_images(tmp, images, int(settings["image_size"]), rng)
        tokens = {name: secrets.token_urlsafe(24) for name in readers}
        con = db.connect(tmp / db.DB_NAME, create=True)
        try:
            _fill_database(con, images, items, tokens, rng, settings)
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()
        links = {name: f"/r/{tok}" for name, tok in tokens.items()}
        links_path = tmp / db.LINKS_NAME
        links_path.write_text(
            "# reader<TAB>personal link path; keep this file private\n"
            + "".join(f"{n}\t{p}\n" for n, p in links.items())
        )
        os.chmod(links_path, 0o600)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    except (OSError, sqlite3.Error) as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise output_error(getattr(exc, "filename", None) or out, exc) from exc
        raise KecaeError(
            f"cannot write the study database in {out.parent} ({exc}): free some "
            "disk space or choose another --out"
        ) from exc
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return links


def _write_images(
    folder: Path, images: list[tuple[str, str, Path]], side: int, rng: np.random.Generator
) -> None:
    """Re-encode every image from its pixels (real ones preprocessed as KECAE saw them), in a
    random order: file times say nothing."""
    # generation loads torch: only when images are written

    (folder / db.IMAGES_DIR).mkdir()
    for n in rng.permutation(len(images)):
        image_id, how, src = images[n]
        if how == "generated":
            pixels = _grey_u8(src)
            if pixels.shape != (side, side):
                raise KecaeError(
                    f"{src} is {pixels.shape[1]}x{pixels.shape[0]} px, the "
                    f"other generated images {side}x{side}"
                )
        else:
            pixels = to_uint8(preprocess(read_image(src), side))  # as KECAE saw it
        _write_png(folder / db.IMAGES_DIR / f"{image_id}.png", pixels)


def _fill_database(con, images, items, tokens, rng, settings) -> None:
    """Schema, images, items (in random order), readers and their shuffled schedules."""
    con.executescript(db.SCHEMA)
    con.execute("BEGIN IMMEDIATE")
    con.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in settings.items()])
    con.executemany(
        "INSERT INTO images VALUES (?, ?)", [(i, str(src)) for i, _, src in sorted(images)]
    )  # sorted by random id
    cols = ("id", "phase", "kind", "image_id", "original_id", "grade", "direction", "pair_index")
    con.executemany(
        f"INSERT INTO items ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
        [tuple(it[c] for c in cols) for it in sorted(items, key=lambda it: it["id"])],
    )
    phase1 = [it["id"] for it in items if it["phase"] == 1]
    phase2 = [it["id"] for it in items if it["phase"] == 2]
    for name, tok in tokens.items():
        rid = con.execute(
            "INSERT INTO readers (name, token_sha256) VALUES (?, ?)", (name, db.token_hash(tok))
        ).lastrowid
        order = [phase1[i] for i in rng.permutation(len(phase1))] + [
            phase2[i] for i in rng.permutation(len(phase2))
        ]
        con.executemany(
            "INSERT INTO schedule VALUES (?, ?, ?)",
            [(rid, pos, item) for pos, item in enumerate(order)],
        )
    con.execute("COMMIT")
