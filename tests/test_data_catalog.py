"""Catalog layouts, manifests, splits, the cache, datasets and `kecae data check`."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import kecae.cli
from kecae.data import readers
from kecae.data.cache import load_image_set
from kecae.data.catalog import load_catalog
from kecae.data.check import check_dataset
from kecae.data.datasets import ClassificationDataset, balanced_indices, balanced_sampler
from kecae.data.splits import assign_splits, ensure_splits, find_split_leaks
from kecae.utils import KecaeError


# ---------------------------------------------------------------- folder layouts

def test_split_grade_folders_with_aliases_and_skips(tmp_path, image_tree, write_image):
    root = image_tree(tmp_path / "knee", {("train", 0): 3, ("train", 2): 2, ("valid", 0): 1,
                                          ("auto_test", 2): 1, ("train", 1): 1})
    (root / "train" / "0" / "notes.txt").write_text("not an image")
    write_image(root / "train" / "0" / ".thumb.png")
    write_image(root / "train" / "stray.png")
    write_image(root / ".kecae_cache" / "0" / "old.png")  # hidden folder: ignored entirely
    cat = load_catalog(root)
    assert cat.layout == "folders" and cat.root == root.resolve()
    assert cat.counts() == {("auto_test", 2): 1, ("train", 0): 3, ("train", 1): 1,
                            ("train", 2): 2, ("val", 0): 1}
    assert cat.skipped == {"file outside a grade folder": 1, "hidden file": 1,
                           "not an image file": 1}
    assert cat.splits == ["train", "val", "auto_test"]
    r = cat.select(split="valid")[0]  # aliases work in select too
    assert r.path.is_absolute() and r.split == "val" and r.grade == 0
    assert r.patient_id == r.path.stem and r.image_id == "valid/0/" + r.path.stem
    assert [x.grade for x in cat.select(grades=[2])] == [2, 2, 2]
    assert any("own patient" in p.message for p in cat.problems)  # the leakage warning


def test_grade_folders_without_splits_and_kl_names(tmp_path, write_image):
    for name, n in (("KL0", 2), ("kl_2", 3)):
        for k in range(n):
            write_image(tmp_path / name / f"{name}_{k}.png")
    cat = load_catalog(tmp_path)
    assert cat.counts() == {(None, 0): 2, (None, 2): 3}
    assert not cat.has_splits


def test_patient_regex_reads_oai_style_names(tmp_path, write_image):
    for name in ("9001695L", "9001695R", "9003175L"):
        write_image(tmp_path / "train" / "0" / f"{name}.png")
    cat = load_catalog(tmp_path, patient_regex=r"(?P<patient>\d{7})(?P<side>[LR])")
    assert [(r.patient_id, r.side) for r in cat.records] == [
        ("9001695", "L"), ("9001695", "R"), ("9003175", "L")]
    with pytest.raises(KecaeError, match="named group 'patient'"):
        load_catalog(tmp_path, patient_regex=r"\d+")


def test_unknown_grade_folder(tmp_path, image_tree, write_image):
    root = image_tree(tmp_path, {("train", 0): 1})
    write_image(root / "train" / "7" / "x.png")
    with pytest.raises(KecaeError, match=r"train/7: folder of unknown KL grade 7.*0-4"):
        load_catalog(root)
    cat = load_catalog(root, strict=False)
    assert [p.severity for p in cat.problems if "grade 7" in p.message] == ["error"]
    assert len(cat.records) == 1


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(KecaeError, match="no images found; expected grade folders"):
        load_catalog(tmp_path / "empty")
    with pytest.raises(KecaeError, match="no such file or folder"):
        load_catalog(tmp_path / "nowhere")


# ---------------------------------------------------------------- manifests

def test_manifest_columns_aliases_and_absolute_paths(tmp_path, write_image, write_manifest):
    a = write_image(tmp_path / "imgs" / "a.png")
    b = write_image(tmp_path / "elsewhere" / "b.png")
    csv_path = write_manifest(tmp_path / "list" / "my.csv", [
        {"path": "../imgs/a.png", "KL": "2.0", "patient_id": "p1", "side": "left",
         "split": "Validation", "age": "61"},
        {"path": str(b), "KL": "0", "patient_id": "", "side": "", "split": "test", "age": ""},
    ])
    cat = load_catalog(csv_path)
    assert cat.layout == "manifest" and cat.manifest == csv_path.resolve()
    r1, r2 = cat.records
    assert (r1.path, r1.grade, r1.patient_id, r1.side, r1.split) == (a.resolve(), 2, "p1", "L",
                                                                     "val")
    assert (r2.path, r2.grade, r2.patient_id, r2.side, r2.split) == (b.resolve(), 0, "b", None,
                                                                     "test")
    assert any("without patient_id" in p.message for p in cat.problems)


def test_folder_with_ground_truth_csv_uses_it(tmp_path, image_tree):
    root = image_tree(tmp_path / "ph", {("train", 0): 2, ("test", 2): 1},
                      manifest="ground_truth.csv")
    cat = load_catalog(root)
    assert cat.layout == "manifest" and cat.manifest.name == "ground_truth.csv"
    assert cat.counts() == {("test", 2): 1, ("train", 0): 2}
    assert [r.image_id for r in cat.records] == ["images/img_0000", "images/img_0001",
                                                 "images/img_0002"]


@pytest.mark.parametrize("row, match", [
    ({"path": "images/missing.png", "grade": 0}, r"row 3: images/missing\.png: file not found"),
    ({"path": "images/img_0000.png", "grade": 7},
     r"row 3: images/img_0000\.png: unknown KL grade '7'"),
    ({"path": "images/img_0000.png", "grade": "x"}, r"row 3: .*unknown KL grade 'x'"),
    ({"path": "", "grade": 0}, r"row 3: <empty path>: empty path"),
])
def test_bad_manifest_rows(tmp_path, image_tree, write_manifest, row, match):
    root = image_tree(tmp_path, {(None, 0): 1}, manifest="tmp.csv")
    write_manifest(root / "manifest.csv", [{"path": "images/img_0000.png", "grade": 0}, row])
    with pytest.raises(KecaeError, match=match):
        load_catalog(root)
    cat = load_catalog(root, strict=False)
    assert len(cat.records) == 1
    assert [p.file for p in cat.problems if p.severity == "error"] == [
        f"{root.resolve() / 'manifest.csv'}:3 ({row['path'] or '<empty path>'})"]


def test_manifest_missing_columns_and_mixed_splits(tmp_path, image_tree, write_manifest):
    root = image_tree(tmp_path, {(None, 0): 2}, manifest="tmp.csv")
    write_manifest(root / "manifest.csv", [{"file_name": "images/img_0000.png", "grade": 0}])
    with pytest.raises(KecaeError, match="needs a 'path' and a 'grade'"):
        load_catalog(root)
    write_manifest(root / "manifest.csv", [
        {"path": "images/img_0000.png", "grade": 0, "split": "train"},
        {"path": "images/img_0001.png", "grade": 0, "split": ""}])
    with pytest.raises(KecaeError, match="1 rows have no split while 1 do"):
        load_catalog(root)


# ---------------------------------------------------------------- splits

def _records(tmp_path, image_tree, n0=40, n2=20):
    # 60 images (40 KL-0, then 20 KL-2) of 45 patients: image k belongs to patient k mod 45, so
    # P0..P14 have a KL-0 and a KL-2 image, P15..P39 one KL-0 image, P40..P44 one KL-2 image
    patients = {f"img_{k:04d}": f"P{k % 45}" for k in range(n0 + n2)}
    root = image_tree(tmp_path / "s", {(None, 0): n0, (None, 2): n2}, manifest="manifest.csv",
                      patients=patients, shape=(8, 8))
    return load_catalog(root).records


def test_assign_splits_patient_level_stratified_deterministic(tmp_path, image_tree):
    records = _records(tmp_path, image_tree)
    a = assign_splits(records, seed=3)
    assert a == assign_splits(list(reversed(records)), seed=3)[::-1]  # order does not matter
    assert a != assign_splits(records, seed=4)
    assert find_split_leaks(a) == {}
    # strata by most severe grade: 20 patients reach KL-2 (P0..P14, P40..P44), 25 stay KL-0
    per_split = Counter((r.split, max(x.grade for x in a if x.patient_id == r.patient_id))
                        for r in {r.patient_id: r for r in a}.values())
    # 25 * (0.7, 0.15, 0.15) = 17.5, 3.75, 3.75 -> 17, 4, 4 (largest remainders round up);
    # 20 * (0.7, 0.15, 0.15) = 14, 3, 3
    assert per_split == {("train", 0): 17, ("val", 0): 4, ("test", 0): 4,
                         ("train", 2): 14, ("val", 2): 3, ("test", 2): 3}


def test_assign_splits_bad_arguments(tmp_path, image_tree):
    records = _records(tmp_path, image_tree, n0=3, n2=2)
    with pytest.raises(ValueError, match="sum to 1"):
        assign_splits(records, fractions=(0.8, 0.3, 0.1))
    with pytest.raises(ValueError, match="three non-negative"):
        assign_splits(records, fractions=(0.5, 0.5))
    with pytest.raises(ValueError, match="already have splits"):
        assign_splits(assign_splits(records))


def test_find_split_leaks(tmp_path, image_tree):
    import dataclasses
    records = assign_splits(_records(tmp_path, image_tree))
    moved = dataclasses.replace(records[45], split="test" if records[45].split != "test" else "val")
    leaks = find_split_leaks(records[:45] + [moved] + records[46:])
    assert list(leaks) == [moved.patient_id]  # img_0045 belongs to P0
    assert leaks[moved.patient_id] == {records[0].split, moved.split}


# ---------------------------------------------------------------- cache

def _count_reads(monkeypatch):
    calls = []
    real = readers.read_image
    monkeypatch.setattr(readers, "read_image", lambda p: calls.append(Path(p)) or real(p))
    return calls


def test_load_image_set_orders_by_grade_and_matches_preprocess(tmp_path, image_tree):
    root = image_tree(tmp_path / "d", {("train", 2): 2, ("train", 0): 3, ("val", 0): 1,
                                       ("val", 2): 1})
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
    monkeypatch.setattr(readers, "read_image",
                        lambda p: pytest.fail(f"cache miss: decoded {p} again"))
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
    np.testing.assert_array_equal(load_image_set(root, 8, split="train", progress=False).images,
                                  good)


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
    assert sets["train"].image_ids == [r.image_id for r in cat.select("train", [0])] + \
        [r.image_id for r in cat.select("train", [2])]


# ---------------------------------------------------------------- torch datasets

def test_classification_dataset_and_balanced_sampling(tmp_path, image_tree):
    root = image_tree(tmp_path / "d", {("train", 0): 5, ("train", 2): 2})
    s = load_image_set(root, 16, split="train", progress=False)
    ds = ClassificationDataset(s)
    x, y = ds[6]
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32 and y == 1
    np.testing.assert_array_equal(x[0].numpy(), s.images[6])
    assert ds.labels.tolist() == [0] * 5 + [1] * 2
    with pytest.raises(ValueError, match="not in grades"):
        ClassificationDataset(s, grades=(0,))

    idx = balanced_indices(ds.labels, seed=1)
    assert Counter(ds.labels[idx].tolist()) == {0: 5, 1: 5}
    assert set(idx.tolist()) == set(range(7))  # every real image is kept
    np.testing.assert_array_equal(idx, balanced_indices(ds.labels, seed=1))
    sampler = balanced_sampler(ds.labels, seed=1)
    first = list(sampler)
    assert len(first) == len(sampler) == 10 and first == list(sampler)
    sampler.set_epoch(1)
    assert Counter(ds.labels[list(sampler)].tolist()) == {0: 5, 1: 5}


# ---------------------------------------------------------------- kecae data check

def kecae_main(argv: list[str]) -> int:
    """The real CLI entry point, with only the data sub-commands registered (fast to import)."""
    saved = kecae.cli.COMMAND_MODULES
    kecae.cli.COMMAND_MODULES = ("kecae.data.cli",)
    try:
        return kecae.cli.main(argv)
    finally:
        kecae.cli.COMMAND_MODULES = saved


def _tree_digest(root: Path) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_check_clean_data_set(tmp_path, image_tree, capsys):
    root = image_tree(tmp_path / "d", {("train", 0): 3, ("train", 2): 2, ("val", 0): 1,
                                       ("val", 2): 1, ("test", 0): 1, ("test", 2): 1},
                      manifest="manifest.csv")
    report = check_dataset(root)
    assert report.ok and report.n_images == 9 and report.sizes == {(40, 32): 9}
    assert report.formats == {"PNG": 9} and report.problems == []
    before = _tree_digest(root)
    assert kecae_main(["data", "check", str(root), "--no-progress",
                       "--json", str(tmp_path / "r.json")]) == 0
    assert _tree_digest(root) == before  # check modifies nothing
    out = capsys.readouterr().out
    assert "40 x 32: 9" in out and "0 errors, 0 warnings" in out


def test_check_reports_every_problem(tmp_path, image_tree, write_image, write_manifest, capsys):
    root = image_tree(tmp_path / "d", {("train", 0): 3, ("train", 2): 2, ("val", 0): 2},
                      manifest="tmp.csv")
    img = root / "images"
    data = (img / "img_0000.png").read_bytes()
    (img / "cut.png").write_bytes(data[: len(data) // 2])
    (img / "text.png").write_text("hello")
    (img / "dup.png").write_bytes((img / "img_0001.png").read_bytes())  # copy into val
    colour = np.zeros((32, 40, 3), np.uint8)
    colour[..., 0] = 255
    from PIL import Image
    Image.fromarray(colour).save(img / "red.png")
    rows = [{"path": f"images/img_{k:04d}.png", "grade": g, "patient_id": f"P{k}", "split": s}
            for k, (g, s) in enumerate([(0, "train")] * 3 + [(2, "train")] * 2 + [(0, "val")] * 2)]
    rows[6]["patient_id"] = "P0"  # patient P0 in train and val
    rows += [{"path": "images/cut.png", "grade": 0, "patient_id": "C", "split": "train"},
             {"path": "images/text.png", "grade": 2, "patient_id": "T", "split": "train"},
             {"path": "images/dup.png", "grade": 0, "patient_id": "D", "split": "val"},
             {"path": "images/red.png", "grade": 2, "patient_id": "R", "split": "train"},
             {"path": "images/gone.png", "grade": 0, "patient_id": "G", "split": "train"},
             {"path": "images/img_0002.png", "grade": 9, "patient_id": "X", "split": "train"}]
    write_manifest(root / "manifest.csv", rows)
    before = _tree_digest(root)
    report = check_dataset(root)
    assert not report.ok
    found = {(p.severity, Path(p.file.split(" ")[0].split(":")[0]).name, p.message.split(" (")[0])
             for p in report.problems}
    expected = {
        ("error", "manifest.csv", "file not found"),
        ("error", "manifest.csv", "unknown KL grade '9'"),
        ("error", "cut.png", "cannot read this image"),
        ("error", "text.png", "cannot read this image"),
        ("error", "img_0001.png,", "identical images in splits ['train', 'val']: the test set "
                                   "leaks into training"),
        ("error", "img_0000.png", "patient 'P0' is in splits ['train', 'val']"),
        ("error", "manifest.csv", "no KL-2 images in split 'val'"),
        ("warning", "red.png", "colour image; it is converted to grey"),
    }
    assert found == expected
    assert all(p.fix for p in report.problems)
    assert kecae_main(["data", "check", str(root), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "7 fatal problem(s)" in captured.err and "fix:" in captured.err
    assert "ERROR: " in captured.out and "WARNING: " in captured.out
    assert _tree_digest(root) == before


def test_check_folder_layout_skips_and_auto_split_empty_class(tmp_path, image_tree, write_image,
                                                              capsys):
    root = image_tree(tmp_path / "d", {(None, 0): 6, (None, 2): 1})
    (root / "0" / "readme.txt").write_text("x")
    report = check_dataset(root)
    assert report.skipped == {"not an image file": 1}
    messages = [p.message for p in report.errors]
    # one KL-2 patient can only be in one of the three automatically assigned splits
    assert sum("no KL-2 images in split" in m and "as kecae would assign it" in m
               for m in messages) == 2
    assert any("own patient" in p.message for p in report.warnings)
    assert "1 not an image file" in report.format()


def test_default_cache_dir_falls_back_when_data_is_read_only(tmp_path, monkeypatch):
    from kecae.data import cache

    assert cache.default_cache_dir(tmp_path / "data") == tmp_path / "data" / ".kecae_cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(cache.os, "access", lambda path, mode: False)
    assert cache.default_cache_dir(tmp_path / "ro") == tmp_path / "xdg" / "kecae"
