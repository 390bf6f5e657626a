"""`kecae data check` (kecae.data.check): every problem of a data set, nothing modified."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import kecae.cli
from kecae.data.check import check_dataset


def kecae_main(argv: list[str]) -> int:
    """The real CLI entry point, with only the data sub-commands registered (fast to import)."""
    saved = kecae.cli.COMMAND_MODULES
    kecae.cli.COMMAND_MODULES = ("kecae.cli.data",)
    try:
        return kecae.cli.main(argv)
    finally:
        kecae.cli.COMMAND_MODULES = saved


def _tree_digest(root: Path) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_check_clean_data_set(tmp_path, image_tree, capsys):
    root = image_tree(
        tmp_path / "d",
        {
            ("train", 0): 3,
            ("train", 2): 2,
            ("val", 0): 1,
            ("val", 2): 1,
            ("test", 0): 1,
            ("test", 2): 1,
        },
        manifest="manifest.csv",
    )
    report = check_dataset(root)
    assert report.ok and report.n_images == 9 and report.sizes == {(40, 32): 9}
    assert report.formats == {"PNG": 9} and report.problems == []
    before = _tree_digest(root)
    assert (
        kecae_main(
            ["data", "check", str(root), "--no-progress", "--json", str(tmp_path / "r.json")]
        )
        == 0
    )
    assert _tree_digest(root) == before  # check modifies nothing
    out = capsys.readouterr().out
    assert "40 x 32: 9" in out and "0 errors, 0 warnings" in out


def test_check_reports_every_problem(tmp_path, image_tree, write_image, write_manifest, capsys):
    root = image_tree(
        tmp_path / "d", {("train", 0): 3, ("train", 2): 2, ("val", 0): 2}, manifest="tmp.csv"
    )
    img = root / "images"
    data = (img / "img_0000.png").read_bytes()
    (img / "cut.png").write_bytes(data[: len(data) // 2])
    (img / "text.png").write_text("hello")
    (img / "dup.png").write_bytes((img / "img_0001.png").read_bytes())  # copy into val
    colour = np.zeros((32, 40, 3), np.uint8)
    colour[..., 0] = 255
    from PIL import Image

    Image.fromarray(colour).save(img / "red.png")
    rows = [
        {"path": f"images/img_{k:04d}.png", "grade": g, "patient_id": f"P{k}", "split": s}
        for k, (g, s) in enumerate([(0, "train")] * 3 + [(2, "train")] * 2 + [(0, "val")] * 2)
    ]
    rows[6]["patient_id"] = "P0"  # patient P0 in train and val
    rows += [
        {"path": "images/cut.png", "grade": 0, "patient_id": "C", "split": "train"},
        {"path": "images/text.png", "grade": 2, "patient_id": "T", "split": "train"},
        {"path": "images/dup.png", "grade": 0, "patient_id": "D", "split": "val"},
        {"path": "images/red.png", "grade": 2, "patient_id": "R", "split": "train"},
        {"path": "images/gone.png", "grade": 0, "patient_id": "G", "split": "train"},
        {"path": "images/img_0002.png", "grade": 9, "patient_id": "X", "split": "train"},
    ]
    write_manifest(root / "manifest.csv", rows)
    before = _tree_digest(root)
    report = check_dataset(root)
    assert not report.ok
    found = {
        (p.severity, Path(p.file.split(" ")[0].split(":")[0]).name, p.message.split(" (")[0])
        for p in report.problems
    }
    expected = {
        ("error", "manifest.csv", "file not found"),
        ("error", "manifest.csv", "unknown KL grade '9'"),
        ("error", "cut.png", "cannot read this image"),
        ("error", "text.png", "cannot read this image"),
        (
            "error",
            "img_0001.png,",
            "identical images in splits ['train', 'val']: the test set leaks into training",
        ),
        ("error", "img_0000.png", "patient 'P0' is in splits ['train', 'val']"),
        ("error", "manifest.csv", "no KL-2 images in split 'val'"),
        (
            "error",
            "manifest.csv",
            "no 'test' split: kecae trains on train, selects on val and tests on test, and the "
            "splits given are ['train', 'val']",
        ),
        (
            "warning",
            "red.png",
            "colour image, converted to grey: a colour photograph or scan?; the marks stay in "
            "the grey image",
        ),
    }
    assert found == expected
    assert all(p.fix for p in report.problems)
    assert kecae_main(["data", "check", str(root), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "8 fatal problem(s)" in captured.err and "fix:" in captured.err
    assert "ERROR: " in captured.out and "WARNING: " in captured.out
    assert _tree_digest(root) == before


def test_check_folder_layout_skips_and_auto_split_empty_class(
    tmp_path, image_tree, write_image, capsys
):
    root = image_tree(tmp_path / "d", {(None, 0): 6, (None, 2): 1})
    (root / "0" / "readme.txt").write_text("x")
    report = check_dataset(root)
    assert report.skipped == {"not an image file": 1}
    messages = [p.message for p in report.errors]
    # one KL-2 patient can only be in one of the three automatically assigned splits
    assert (
        sum("no KL-2 images in split" in m and "as kecae would assign it" in m for m in messages)
        == 2
    )
    assert any("own patient" in p.message for p in report.warnings)
    assert "1 not an image file" in report.format()


def test_notes_say_every_choice_made_for_the_user(tmp_path, image_tree):
    root = image_tree(
        tmp_path / "d",
        {("train", 0): 3, ("train", 1): 2, ("train", 2): 2, ("train", 4): 1, ("val", 0): 1},
        shape=(48, 60),
    )
    report = check_dataset(root, grades=(0, 1), size=32)
    assert report.grades == (0, 1)
    assert (
        "3 images of grades 2, 4 are not used (KL-2: 2, KL-4: 1; 9 images in all): this task "
        "compares KL-0 and KL-1 (--grades picks the pair)"
    ) in report.notes
    assert (
        "images are 48 px on their short side: centre-cropped to a square and downscaled to "
        "the model's 32 px"
    ) in report.notes
    # a split without the pair's second grade is an error in terms of that grade
    assert any("no KL-1 images in split 'val'" in p.message for p in report.errors)
    assert "notes:" in report.format()
    # the report survives its JSON form (the check's cache)
    assert check_dataset.__module__ == "kecae.data.check"
    from kecae.data.check import CheckReport

    again = CheckReport.from_dict(report.to_dict())
    assert again == report


def test_a_red_burned_in_annotation_is_named(tmp_path, image_tree):
    from PIL import Image, ImageDraw

    root = image_tree(tmp_path / "d", {("train", 0): 2, ("train", 2): 2}, shape=(64, 64))
    victim = next((root / "train" / "2").iterdir())
    img = Image.open(victim).convert("RGB")
    ImageDraw.Draw(img).rectangle([4, 4, 20, 14], outline=(255, 0, 0), width=2)
    img.save(victim)
    report = check_dataset(root)
    (warning,) = [p for p in report.warnings if "colour" in p.message]
    assert warning.file == str(victim)
    assert "% of its pixels are coloured (a burned-in annotation" in warning.message


def test_a_small_red_annotation_on_a_224_px_image_is_named(tmp_path, image_tree):
    """A thin red mark covering ~0.2 % of a 224 px knee (under the 1 % share that lets JPEG
    chroma noise through) is saturated ink: it is still named."""
    from PIL import Image, ImageDraw

    from kecae.data.readers import colour_fraction, ink_fraction

    root = image_tree(tmp_path / "d", {("train", 0): 2, ("train", 2): 2}, shape=(224, 224))
    victim = next((root / "train" / "0").iterdir())
    img = Image.open(victim).convert("RGB")
    ImageDraw.Draw(img).line([(10, 12), (60, 12)], fill=(255, 0, 0), width=2)
    img.save(victim)
    rgb = np.asarray(Image.open(victim).convert("RGB"), np.float64) / 255.0
    assert 0.001 < colour_fraction(rgb) < 0.01  # below the share that alone makes an image colour
    assert ink_fraction(rgb) > 0.001
    report = check_dataset(root)
    (warning,) = [p for p in report.warnings if "colour" in p.message]
    assert warning.file == str(victim)
    assert "0.2 % of its pixels are coloured (a burned-in annotation" in warning.message


def test_a_grey_224_px_jpeg_is_not_called_colour(tmp_path):
    """JPEG chroma noise of a grey image saved as RGB reaches neither the colour share nor the
    saturated-ink share."""
    from PIL import Image

    from kecae.data.readers import load_image

    rng = np.random.default_rng(0)
    grey = (rng.random((224, 224)) * 255).astype(np.uint8)
    Image.fromarray(grey).convert("RGB").save(tmp_path / "g.jpg", quality=75)
    assert not load_image(tmp_path / "g.jpg").colour


def test_cached_check_reads_back_the_whole_report(tmp_path, image_tree):
    from kecae.data.check import cached_check

    root = image_tree(tmp_path / "d", {("train", 0): 2, ("train", 2): 2, ("train", 3): 1})
    first = cached_check(root, grades=(0, 2), cache_dir=tmp_path / "cache")
    (cached,) = (tmp_path / "cache").glob("check-*.json")
    again = cached_check(root, grades=(0, 2), cache_dir=tmp_path / "cache")
    assert again == first and any("KL-3: 1" in n for n in again.notes)
    # other settings are another check
    cached_check(root, grades=(0, 3), cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("check-*.json"))) == 2
    assert cached.is_file()
