"""The catalog (kecae.data.catalog): folder layouts, manifests, patient regexes and the errors
of a bad data set."""

from __future__ import annotations

import pytest

from kecae.data.catalog import load_catalog
from kecae.errors import KecaeError


def test_split_grade_folders_with_aliases_and_skips(tmp_path, image_tree, write_image):
    root = image_tree(
        tmp_path / "knee",
        {("train", 0): 3, ("train", 2): 2, ("valid", 0): 1, ("auto_test", 2): 1, ("train", 1): 1},
    )
    (root / "train" / "0" / "notes.txt").write_text("not an image")
    write_image(root / "train" / "0" / ".thumb.png")
    write_image(root / "train" / "stray.png")
    write_image(root / ".kecae_cache" / "0" / "old.png")  # hidden folder: ignored entirely
    cat = load_catalog(root)
    assert cat.layout == "folders" and cat.root == root.resolve()
    assert cat.counts() == {
        ("auto_test", 2): 1,
        ("train", 0): 3,
        ("train", 1): 1,
        ("train", 2): 2,
        ("val", 0): 1,
    }
    assert cat.skipped == {
        "file outside a grade folder": 1,
        "hidden file": 1,
        "not an image file": 1,
    }
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
        ("9001695", "L"),
        ("9001695", "R"),
        ("9003175", "L"),
    ]
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


def test_manifest_columns_aliases_and_absolute_paths(tmp_path, write_image, write_manifest):
    a = write_image(tmp_path / "imgs" / "a.png")
    b = write_image(tmp_path / "elsewhere" / "b.png")
    csv_path = write_manifest(
        tmp_path / "list" / "my.csv",
        [
            {
                "path": "../imgs/a.png",
                "KL": "2.0",
                "patient_id": "p1",
                "side": "left",
                "split": "Validation",
                "age": "61",
            },
            {"path": str(b), "KL": "0", "patient_id": "", "side": "", "split": "test", "age": ""},
        ],
    )
    cat = load_catalog(csv_path)
    assert cat.layout == "manifest" and cat.manifest == csv_path.resolve()
    r1, r2 = cat.records
    assert (r1.path, r1.grade, r1.patient_id, r1.side, r1.split) == (
        a.resolve(),
        2,
        "p1",
        "L",
        "val",
    )
    assert (r2.path, r2.grade, r2.patient_id, r2.side, r2.split) == (
        b.resolve(),
        0,
        "b",
        None,
        "test",
    )
    assert any("without a patient id" in p.message for p in cat.problems)


def test_folder_with_ground_truth_csv_uses_it(tmp_path, image_tree):
    root = image_tree(
        tmp_path / "ph", {("train", 0): 2, ("test", 2): 1}, manifest="ground_truth.csv"
    )
    cat = load_catalog(root)
    assert cat.layout == "manifest" and cat.manifest.name == "ground_truth.csv"
    assert cat.counts() == {("test", 2): 1, ("train", 0): 2}
    assert [r.image_id for r in cat.records] == [
        "images/img_0000",
        "images/img_0001",
        "images/img_0002",
    ]


@pytest.mark.parametrize(
    "row, match",
    [
        ({"path": "images/missing.png", "grade": 0}, r"row 3: images/missing\.png: file not found"),
        (
            {"path": "images/img_0000.png", "grade": 7},
            r"row 3: images/img_0000\.png: unknown KL grade '7'",
        ),
        ({"path": "images/img_0000.png", "grade": "x"}, r"row 3: .*unknown KL grade 'x'"),
        ({"path": "", "grade": 0}, r"row 3: <empty path>: empty path"),
    ],
)
def test_bad_manifest_rows(tmp_path, image_tree, write_manifest, row, match):
    root = image_tree(tmp_path, {(None, 0): 1}, manifest="tmp.csv")
    write_manifest(root / "manifest.csv", [{"path": "images/img_0000.png", "grade": 0}, row])
    with pytest.raises(KecaeError, match=match):
        load_catalog(root)
    cat = load_catalog(root, strict=False)
    assert len(cat.records) == 1
    assert [p.file for p in cat.problems if p.severity == "error"] == [
        f"{root.resolve() / 'manifest.csv'}:3 ({row['path'] or '<empty path>'})"
    ]


def test_manifest_missing_columns_and_mixed_splits(tmp_path, image_tree, write_manifest):
    root = image_tree(tmp_path, {(None, 0): 2}, manifest="tmp.csv")
    write_manifest(root / "manifest.csv", [{"image": "images/img_0000.png", "grade": 0}])
    with pytest.raises(KecaeError, match="needs a path column"):
        load_catalog(root)
    write_manifest(
        root / "manifest.csv",
        [
            {"path": "images/img_0000.png", "grade": 0, "split": "train"},
            {"path": "images/img_0001.png", "grade": 0, "split": ""},
        ],
    )
    with pytest.raises(KecaeError, match="1 rows have no split while 1 do"):
        load_catalog(root)


KAGGLE_REGEX = r"(?P<patient>\d{7})_(?P<side>[12])"


@pytest.mark.parametrize(
    "side_map, expected, note",
    [
        (None, ["R", "L", "R"], "1 -> R (2 images), 2 -> L (1 images) (OAI's convention"),
        ({"1": "L", "2": "R"}, ["L", "R", "L"], "1 -> L (2 images), 2 -> R (1 images); "),
    ],
)
def test_numeric_sides_are_mapped_and_the_mapping_said(
    tmp_path, write_image, side_map, expected, note
):
    for name in ("9003175_1", "9003175_2", "9003176_1"):
        write_image(tmp_path / "train" / "0" / f"{name}.png")
    cat = load_catalog(tmp_path, patient_regex=KAGGLE_REGEX, side_map=side_map)
    assert [r.side for r in cat.records] == expected
    assert [r.patient_id for r in cat.records] == ["9003175", "9003175", "9003176"]
    (text,) = cat.notes
    assert note in text and "--side-map 1=" in text  # how to map them the other way


def test_unknown_side_value_is_an_error_naming_the_option(tmp_path, write_image, write_manifest):
    for name in ("9003175_1", "9003175_3"):
        write_image(tmp_path / "d" / "train" / "0" / f"{name}.png")
    with pytest.raises(KecaeError, match=r"side value '3' \(1 images\).*--side-map 3=L"):
        load_catalog(tmp_path / "d", patient_regex=r"(?P<patient>\d{7})_(?P<side>\d)")
    cat = load_catalog(
        tmp_path / "d", strict=False, patient_regex=r"(?P<patient>\d{7})_(?P<side>\d)"
    )
    assert [p.severity for p in cat.problems] == ["error"] and cat.problems[0].file.endswith(
        "9003175_3.png"
    )
    # mapped by the user, it reads
    cat = load_catalog(
        tmp_path / "d", patient_regex=r"(?P<patient>\d{7})_(?P<side>\d)", side_map={"3": "L"}
    )
    assert [r.side for r in cat.records] == ["R", "L"]
    with pytest.raises(KecaeError, match="a side is L or R"):
        load_catalog(tmp_path / "d", side_map={"3": "up"})
    # a manifest's side column goes through the same map
    a = write_image(tmp_path / "m" / "a.png")
    csv_path = write_manifest(tmp_path / "m" / "m.csv", [{"path": a.name, "grade": 0, "side": "X"}])
    with pytest.raises(KecaeError, match=r"m\.csv:2 \(a\.png\): side value 'X'"):
        load_catalog(csv_path)


def test_patient_regex_that_misses_the_names_is_an_error_with_a_suggestion(tmp_path, write_image):
    names = [f"90031{k:02d}_{1 + k % 2}" for k in range(20)]
    for name in names:
        write_image(tmp_path / "train" / "0" / f"{name}.png")
    readme_regex = r"(?P<patient>\d{7})(?P<side>[LR])"
    with pytest.raises(KecaeError) as info:
        load_catalog(tmp_path, patient_regex=readme_regex)
    message = str(info.value)
    assert "matches 0 of 20 file names (not matched: 9003100_1.png, 9003101_2.png" in message
    assert r"pass --patient-regex '(?P<patient>\d{5,})_(?P<side>[12])'" in message
    # without a regex, the leak warning suggests one that fits
    (warning,) = [p for p in load_catalog(tmp_path).problems if "own patient" in p.message]
    assert r"(?P<patient>\d{5,})_(?P<side>[12])" in warning.fix
    # 18 of 20 (90 %) is enough; 17 of 20 is not
    for k in (0, 1):
        (tmp_path / "train" / "0" / f"{names[k]}.png").rename(
            tmp_path / "train" / "0" / f"scan{k}.png"
        )
    assert len(load_catalog(tmp_path, patient_regex=KAGGLE_REGEX).records) == 20
    (tmp_path / "train" / "0" / f"{names[2]}.png").rename(tmp_path / "train" / "0" / "scan2.png")
    cat = load_catalog(tmp_path, strict=False, patient_regex=KAGGLE_REGEX)
    assert any("matches 17 of 20" in p.message for p in cat.problems if p.severity == "error")


def test_oai_style_columns_are_read_and_named(tmp_path, write_image, write_manifest):
    a = write_image(tmp_path / "dicom" / "a.dcm")
    b = write_image(tmp_path / "dicom" / "b.dcm")
    csv_path = write_manifest(
        tmp_path / "oai.csv",
        [
            {"ID": "9100000", "SIDE": "1", "KL": "2", "FILE": "dicom/a.dcm"},
            {"ID": "9100000", "SIDE": "2", "KL": "0", "FILE": "dicom/b.dcm"},
        ],
    )
    cat = load_catalog(csv_path)
    assert [(r.path, r.grade, r.patient_id, r.side) for r in cat.records] == [
        (a.resolve(), 2, "9100000", "R"),
        (b.resolve(), 0, "9100000", "L"),
    ]
    assert cat.notes[0] == (
        "manifest columns read as: FILE -> path, KL -> grade, ID -> patient_id, SIDE -> side"
    )
    assert not [p for p in cat.problems if "patient id" in p.message]


@pytest.mark.parametrize(
    "grades, expected",
    [([0, 2], (0, 2)), ([2, 0], (0, 2)), ([0, 1], (0, 1)), ((3, 4), (3, 4))],
)
def test_task_grades(grades, expected):
    from kecae.data.catalog import task_grades

    assert task_grades(grades) == expected


@pytest.mark.parametrize("grades", [[0], [0, 0], [0, 5], [0, 1, 2], ["a", "b"]])
def test_task_grades_refuses(grades):
    from kecae.data.catalog import task_grades

    with pytest.raises(KecaeError, match=r"--grades .*two different KL grades 0-4"):
        task_grades(grades)
