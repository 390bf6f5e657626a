"""The preprocessed-image cache (kecae.data.cache): ordered by grade, decoded once, rebuilt
when a file, the size or the cache itself changes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from kecae.data import readers
from kecae.data.cache import load_image_set
from kecae.data.catalog import load_catalog
from kecae.data.splits import ensure_splits
from kecae.errors import KecaeError


def _count_reads(monkeypatch):
    calls = []
    real = readers.read_image
    monkeypatch.setattr(readers, "read_image", lambda p: calls.append(Path(p)) or real(p))
    return calls


def test_load_image_set_orders_by_grade_and_matches_preprocess(tmp_path, image_tree):
    root = image_tree(
        tmp_path / "d", {("train", 2): 2, ("train", 0): 3, ("val", 0): 1, ("val", 2): 1}
    )
    s = load_image_set(root, 16, split="train", progress=False)
    assert isinstance(s.images, np.memmap) and s.images.shape == (5, 16, 16)
    assert s.grades.tolist() == [0, 0, 0, 2, 2] and s.size == 16
    for k in range(5):
        expected = readers.preprocess(readers.read_image(s.paths[k]), 16)
        np.testing.assert_array_equal(s.images[k], expected)
    kl2 = s.for_grade(2)
    assert isinstance(kl2.images, np.memmap) and kl2.image_ids == s.image_ids[3:]
    cache = root / ".kecae_cache"
    assert len(list(cache.glob("*.npy"))) == 1 and not list(cache.glob("*.tmp"))


def test_cache_reused_without_decoding(tmp_path, image_tree, monkeypatch):
    root = image_tree(tmp_path / "d", {("train", 0): 2, ("train", 2): 2})
    first = load_image_set(root, 16, split="train", progress=False)
    monkeypatch.setattr(
        readers, "read_image", lambda p: pytest.fail(f"cache miss: decoded {p} again")
    )
    second = load_image_set(root, 16, split="train", progress=False)
    np.testing.assert_array_equal(first.images, second.images)


def test_cache_invalidated_by_touch_edit_and_size(tmp_path, image_tree, write_image, monkeypatch):
    root = image_tree(tmp_path / "d", {("train", 0): 2, ("train", 2): 2})
    load_image_set(root, 16, split="train", progress=False)
    calls = _count_reads(monkeypatch)
    target = sorted((root / "train" / "0").glob("*.png"))[0]
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touch only
    load_image_set(root, 16, split="train", progress=False)
    assert len(calls) == 4  # a rebuilt cache decodes every image once
    write_image(target, np.zeros((32, 40), np.uint8))  # new content
    s = load_image_set(root, 16, split="train", progress=False)
    assert len(calls) == 8 and float(s.images[0].max()) == -1.0
    load_image_set(root, 8, split="train", progress=False)  # another size
    assert len(calls) == 12
    load_image_set(root, 16, split="train", fit="pad", progress=False)  # another fit
    assert len(calls) == 16


def test_damaged_cache_file_is_rebuilt(tmp_path, image_tree):
    root = image_tree(tmp_path / "d", {("train", 0): 2, ("train", 2): 1})
    good = np.array(load_image_set(root, 8, split="train", progress=False).images)
    (cache_file,) = (root / ".kecae_cache").glob("*.npy")
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    np.testing.assert_array_equal(
        load_image_set(root, 8, split="train", progress=False).images, good
    )


def test_cache_dir_option_and_empty_class(tmp_path, image_tree):
    root = image_tree(tmp_path / "d", {("train", 0): 2, ("train", 2): 1, ("val", 0): 1})
    s = load_image_set(root, 8, split="train", cache_dir=tmp_path / "c", progress=False)
    assert Path(s.images.filename).parent == tmp_path / "c"
    with pytest.raises(KecaeError, match=r"no KL-2 images in split 'val'; add KL-2 images"):
        load_image_set(root, 8, split="val", progress=False)
    with pytest.raises(KecaeError, match=r"no images in split 'test'"):
        load_image_set(root, 8, split="test", progress=False)


def test_unreadable_file_fails_the_build_and_leaves_no_cache(tmp_path, image_tree):
    root = image_tree(tmp_path / "d", {("train", 0): 2, ("train", 2): 1})
    (root / "train" / "2" / "img_0002.png").write_text("not a png")
    with pytest.raises(KecaeError, match=r"img_0002\.png: cannot read"):
        load_image_set(root, 8, split="train", progress=False)
    assert list((root / ".kecae_cache").iterdir()) == []


def test_splits_assigned_when_the_catalog_has_none(tmp_path, image_tree):
    root = image_tree(tmp_path / "d", {(None, 0): 20, (None, 2): 20}, shape=(8, 8))
    cat = ensure_splits(load_catalog(root))
    sets = {s: load_image_set(root, 8, split=s, progress=False) for s in ("train", "val", "test")}
    assert sum(len(s) for s in sets.values()) == 40
    assert sets["train"].image_ids == [r.image_id for r in cat.select("train", [0])] + [
        r.image_id for r in cat.select("train", [2])
    ]


def test_default_cache_dir_falls_back_when_data_is_read_only(tmp_path, monkeypatch):
    from kecae.data import cache

    assert cache.default_cache_dir(tmp_path / "data") == tmp_path / "data" / ".kecae_cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(cache.os, "access", lambda path, mode: False)
    assert cache.default_cache_dir(tmp_path / "ro") == tmp_path / "xdg" / "kecae"
