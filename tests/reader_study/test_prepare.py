"""Preparing a reader study (kecae.reader_study.prepare): blinded images, seeded orders,
refusals, never an overwrite."""

from __future__ import annotations

import sqlite3
import stat
import zlib

import numpy as np
import pytest

from kecae.errors import KecaeError
from kecae.reader_study.prepare import prepare_study


def _png_chunks(path) -> list[bytes]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, pos = [], 8
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        assert zlib.crc32(kind + data[pos + 8 : pos + 8 + n]) == int.from_bytes(
            data[pos + 8 + n : pos + 12 + n], "big"
        )
        out.append(kind)
        pos += 12 + n
    return out


def test_prepare_blinds_the_images(study, tmp_path, kit):
    from PIL import Image

    images = sorted((study / "images").iterdir())
    # 3 pairs: X'1, X'2 and their two recipients; 4 controls
    assert len(images) == 3 * 4 + 4
    con = sqlite3.connect(study / "study.sqlite")
    truth = con.execute("SELECT phase, kind, grade, direction, image_id FROM items").fetchall()
    assert sorted((p, k) for p, k, *_ in truth).count((1, "exchanged")) == 6
    assert sum(k == "control" for _, k, *_ in truth) == 4
    assert sum(k == "sham" for _, k, *_ in truth) == 4
    assert {g for p, k, g, *_ in truth if k == "control"} == {0, 2}
    for path in images:
        # random 16-character ids, pixels only: no text chunk (the source named its label)
        assert len(path.stem) == 16 and path.suffix == ".png"
        assert set(_png_chunks(path)) <= {b"IHDR", b"IDAT", b"IEND"}, path
        with Image.open(path) as im:  # real images resized to the generated size, all grey
            assert (im.size, im.mode) == ((32, 32), "L")
    # generated pixels are kept exactly
    con.row_factory = sqlite3.Row
    for r in con.execute(
        "SELECT im.id, im.source FROM images im JOIN items i "
        "ON i.image_id = im.id WHERE i.kind = 'exchanged' AND i.phase = 1"
    ):
        with Image.open(r["source"]) as a, Image.open(study / "images" / f"{r['id']}.png") as b:
            assert np.array_equal(np.asarray(a), np.asarray(b))
    # controls are not images of the chosen pairs
    used = {
        r[0]
        for r in con.execute("SELECT original_id FROM items WHERE kind = 'exchanged' AND phase = 2")
    }
    ctrl = {r[0] for r in con.execute("SELECT image_id FROM items WHERE kind = 'control'")}
    sources = dict(con.execute("SELECT id, source FROM images").fetchall())
    assert not {sources[i] for i in used} & {sources[i] for i in ctrl}
    # tokens: only their hashes are stored; kit.links file private
    tokens = [p.rsplit("/", 1)[1] for p in kit.links(study).values()]
    dump = "\n".join(con.iterdump())
    assert len(tokens) == 3 and not any(t in dump for t in tokens)
    assert stat.S_IMODE((study / "links.txt").stat().st_mode) == 0o600
    con.close()


def test_prepare_orders(study, kit):
    orders = {r: kit.schedule(study, r) for r in kit.READERS}
    for rows in orders.values():
        phases = [r["phase"] for r in rows]
        assert phases == sorted(phases) and phases.count(1) == 10 and phases.count(2) == 10
    firsts = {tuple(r["id"] for r in rows) for rows in orders.values()}
    assert len(firsts) == 3  # each reader has their own order
    assert {frozenset(r["id"] for r in rows) for rows in orders.values()} == {
        frozenset(r["id"] for r in orders["alice"])
    }  # the same images


def test_prepare_is_seeded(tmp_path, kit):
    gen = kit.make_generated(tmp_path, pairs=8)
    chosen = []
    for out in ("a", "b"):
        prepare_study(gen, tmp_path / out, pairs=3, readers=["x"], controls=2, seed=7)
        con = sqlite3.connect(tmp_path / out / "study.sqlite")
        chosen.append(
            sorted(
                con.execute("SELECT pair_index, direction FROM items WHERE phase = 1").fetchall(),
                key=str,
            )
        )
        con.close()
    assert chosen[0] == chosen[1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pairs=7), "at most 6"),
        (dict(pairs=0), r"--pairs 0: must be a whole number >= 1"),
        (dict(controls=20), r"needs 10 real KL-0"),
        (dict(controls=-1), r"--controls -1: must be a whole number >= 0"),
        (dict(readers=[]), "at least one reader"),
        (dict(readers=["a", "a"]), "distinct"),
        (dict(readers=["../x"]), "not allowed"),
        (dict(readers=["<b>"]), "not allowed"),
    ],
)
def test_prepare_refuses(tmp_path, kwargs, message, kit):
    gen = kit.make_generated(tmp_path, pairs=6)
    args = dict(pairs=2, readers=["a"], controls=0) | kwargs
    with pytest.raises(KecaeError, match=message):
        prepare_study(gen, tmp_path / "study", **args)
    assert not (tmp_path / "study").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data", "generated"] or sorted(
        p.name for p in tmp_path.iterdir()
    ) == ["data", "generated"]


def test_prepare_never_overwrites(study, tmp_path):
    with pytest.raises(KecaeError, match="not empty"):
        prepare_study(tmp_path / "generated", study, pairs=1, readers=["a"])
    with pytest.raises(KecaeError, match=r"manifest\.csv not found"):
        prepare_study(tmp_path / "data", tmp_path / "other", pairs=1, readers=["a"])
