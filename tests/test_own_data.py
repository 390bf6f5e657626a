"""A researcher's own data, first try: the layouts real data sets come in, each end to end
through `kecae run` at tiny size, asserting what the user gets (labels, counts, files, the
report's words), not only the exit code.

- a Kaggle-style tree ``split/grade/9003175_1.png`` with five grades, sides 1/2 in the names and
  a red burned-in annotation on one image, with ``--grades 0 2`` and ``--grades 0 1``;
- an OAI-style ``ID,SIDE,KL,FILE`` CSV of DICOM files (MONOCHROME1 and 2, not square);
- a run that fails before training (a typo'd --data, a regex that misses the names, too many
  pairs) and is corrected;
- a run whose classifiers call every knee one grade (the report must say so).
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

from kecae.cli import main

#: The tiny pipeline every case runs (seconds on one core).
TINY = [
    "--preset",
    "tiny",
    "--supervisor-arch",
    "small",
    "--judge-arch",
    "siamese",
    "--classifier-epochs",
    "1",
    "--kecae-steps",
    "2",
    "--device",
    "cpu",
]
KAGGLE_REGEX = r"(?P<patient>\d{7})_(?P<side>\d)"


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> list[dict]:
    """Built-in phantoms of all five grades at 64 px: rows of their ground truth."""
    from kecae.phantoms.dataset import make_phantoms

    root = tmp_path_factory.mktemp("phantoms")
    gt = make_phantoms(
        root, n_kl0=36, n_kl1=12, n_kl2=36, n_kl3=6, n_kl4=4, size=64, seed=7, progress=False
    )
    with open(gt, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["file"] = root / r["path"]
    return rows


def kaggle_tree(root: Path, rows: list[dict]) -> Path:
    """``root/<split>/<grade>/<patient>_<1|2>.png``: two knees per patient, one split each, and
    one KL-2 image with a red annotation burned in."""
    by_split: dict[str, list[dict]] = {}
    for r in rows:
        by_split.setdefault(r["split"], []).append(r)
    pid = 9003000
    for split, rs in sorted(by_split.items()):
        for k, r in enumerate(rs):
            pid += k % 2 == 0
            dst = root / split / r["grade"] / f"{pid}_{1 + k % 2}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(r["file"], dst)
    victim = sorted((root / "train" / "2").glob("*.png"))[0]
    img = Image.open(victim).convert("RGB")
    ImageDraw.Draw(img).rectangle([3, 3, 20, 12], outline=(255, 0, 0), width=2)
    img.save(victim)
    return root


def oai_csv(root: Path, rows: list[dict]) -> Path:
    """``root/oai.csv`` (ID, SIDE 1/2, KL, FILE) of 12-bit DICOMs 64 x 76, a third MONOCHROME1."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    (root / "dicom").mkdir(parents=True)
    out = []
    for k, r in enumerate(x for x in rows if x["grade"] in ("0", "2", "3")):
        pix = np.asarray(Image.open(r["file"]).convert("L"), dtype=np.float64) / 255.0
        canvas = np.zeros((76, 64))
        canvas[6:70] = pix
        value = np.round(canvas * 4095).astype(np.uint16)
        mono1 = k % 3 == 0
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.Modality = "DX"
        ds.set_pixel_data(
            (4095 - value).astype(np.uint16) if mono1 else value,
            "MONOCHROME1" if mono1 else "MONOCHROME2",
            12,
        )
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        name = f"dicom/{k:03d}.dcm"
        ds.save_as(root / name, enforce_file_format=True)
        out.append({"ID": 9100000 + k // 2, "SIDE": 1 + k % 2, "KL": r["grade"], "FILE": name})
    with open(root / "oai.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["ID", "SIDE", "KL", "FILE"])
        w.writeheader()
        w.writerows(out)
    return root / "oai.csv"


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_kaggle_tree_with_sides_in_the_names(phantoms, tmp_path, capsys):
    data = kaggle_tree(tmp_path / "kaggle", phantoms)
    run = tmp_path / "runs" / "kaggle"
    args = ["run", "--data", str(data), "--out", str(run), "--patient-regex", KAGGLE_REGEX]
    assert main([*args, *TINY]) == 0
    out = capsys.readouterr().out
    # every choice said once, before training
    before = out.split("[run] supervisor ...")[0]
    assert "side values mapped: 1 -> R" in before and "2 -> L" in before
    assert re.search(
        r"22 images of grades 1, 3, 4 are not used \(KL-1: 12, KL-3: 6, KL-4: 4", before
    )
    assert "colour image, converted to grey" in before and "burned-in annotation" in before
    assert "model input: 32 px, the tiny preset's size on the CPU" in before
    assert out.count("[run] warning:") == before.count("[run] warning:")  # said once
    # the data as the run sees it: patients and L/R sides from the names, only grades 0-4 kept
    view = read_csv(run / "data.csv")
    assert len(view) == 94 and {r["side"] for r in view} == {"L", "R"}
    assert all(re.fullmatch(r"\d{7}", r["patient_id"]) for r in view)
    # the evaluation ran (it crashed on side '2' before) and the report is there
    m = json.loads((run / "metrics.json").read_text())
    assert m["exchange_success"]["n"] >= 1 and (run / "report.html").is_file()
    # generated folders named by grade, labels.json keyed by the grade
    labels = json.loads((run / "generated" / "labels.json").read_text())
    assert labels["class_to_idx"] == {"0": 0, "2": 2}
    assert {p.name for p in (run / "generated").iterdir() if p.is_dir()} == {"0", "2"}
    # one console log, the cache inside the run folder, nothing written into the data set
    console = (run / "console.log").read_text()
    assert console.startswith("=== ") and "side values mapped" in console and "\r" not in console
    assert (run / ".kecae_cache").is_dir() and not list(data.rglob(".kecae_cache"))

    # the run folder agrees with itself: a no-op rerun and `kecae evaluate --run` re-use the
    # run's evaluation (same pairs, seed, data), other settings write beside it
    own = (run / "metrics.json").read_text()
    assert main([*args, *TINY]) == 0
    assert "is in metrics.json: re-used" in capsys.readouterr().out
    assert main(["evaluate", "--run", str(run)]) == 0
    assert "already holds the evaluation of these settings" in capsys.readouterr().out
    assert (
        json.loads((run / "metrics.json").read_text())["evaluation"]
        == json.loads(own)["evaluation"]
    )
    assert main(["evaluate", "--run", str(run), "--pairs", "3"]) == 0
    out = capsys.readouterr().out
    beside = run / "evaluations" / "pairs3"
    assert f"written to {beside / 'metrics.json'}" in out
    assert json.loads((beside / "metrics.json").read_text())["exchange_success"]["n"] == 3
    assert (beside / "eval" / "examples.npz").is_file()
    pipeline_keys = {"config", "timings"}
    assert pipeline_keys <= json.loads((run / "metrics.json").read_text()).keys()
    assert (
        json.loads((run / "metrics.json").read_text())["exchange_success"]
        == json.loads(own)["exchange_success"]
    )
    # each command on the run kept in its one console log
    log = (run / "console.log").read_text()
    assert log.count("=== ") == 4 and "kecae evaluate --run" in log
    # `kecae report --run` on the data set is refused, nothing written into it
    assert main(["report", "--run", str(data)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    assert not (data / "report.html").exists()
    # the report opens with the data: counts per split and grade, patients, what was left out,
    # input size against the model size; its row labels are words, not metrics.json keys
    page = (run / "report.html").read_text()
    assert page.index('<section id="data">') < page.index('<section id="headline">')
    data = page[page.index('<section id="data">') : page.index('<section id="headline">')]
    assert "<th>Split</th><th>KL-0</th><th>KL-2</th><th>Images</th><th>Patients</th>" in data
    assert "22 images of grades 1, 3, 4 are not used" in data
    assert "the model works at 32 px" in data and "burned-in annotation" in data
    assert not re.search(r"<td>(<code>)?[a-z0-9]+_[a-z0-9_]+(</code>)?</td>", page)
    assert "<code>--kecae-steps</code>" in page


def test_kaggle_tree_any_grade_pair(phantoms, tmp_path):
    data = kaggle_tree(tmp_path / "kaggle", phantoms)
    run = tmp_path / "runs" / "doubtful"
    args = ["run", "--data", str(data), "--out", str(run), "--patient-regex", KAGGLE_REGEX]
    assert main([*args, "--grades", "0", "1", *TINY]) == 0
    for name in ("supervisor", "judge"):
        assert json.loads((run / name / "metrics.json").read_text())["grades"] == [0, 1]
    assert yaml.safe_load((run / "kecae" / "config.yaml").read_text())["grades"] == [0, 1]
    gen = run / "generated"
    assert {p.name for p in gen.iterdir() if p.is_dir()} == {"0", "1"}
    rows = read_csv(gen / "manifest.csv")
    assert {(r["grade"], r["direction"]) for r in rows} == {
        ("1", "kl0_to_kl1"),
        ("0", "kl1_to_kl0"),
    }
    assert all(Path(r["path"]).name.endswith(("_kl0to1.png", "_kl1to0.png")) for r in rows)
    with Image.open(gen / rows[0]["path"]) as img:
        assert img.text["kecae:direction"] == "kl0_to_kl1"
    assert json.loads((gen / "labels.json").read_text())["class_to_idx"] == {"0": 0, "1": 1}
    plan = json.loads((run / "data_check.json").read_text())
    assert plan["grades"] == [0, 1] and set(plan["counts"]["train"]) == {"0", "1"}
    # every word of the report names the run's pair; its data section every grade as it is
    page = (run / "report.html").read_text()
    data = page[page.index('<section id="data">') : page.index('<section id="headline">')]
    assert "<th>KL-0</th><th>KL-1</th>" in data
    assert "grades 2, 3, 4 are not used (KL-2: 36," in data
    rest = page[page.index('<section id="headline">') : page.index('<section id="configuration">')]
    assert "KL-1 donor" in rest and "KL-2" not in re.sub(r"data:image/png;base64,[^\"]*", "", rest)


def test_oai_csv_of_dicoms(phantoms, tmp_path, capsys):
    manifest = oai_csv(tmp_path / "oai", phantoms)
    run = tmp_path / "runs" / "oai"
    assert main(["run", "--data", str(manifest), "--out", str(run), *TINY]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert (
        "manifest columns read as: FILE -> path, KL -> grade, ID -> patient_id, SIDE -> side"
        in text
    )
    assert "6 images of grade 3 are not used" in text
    assert text.count("has no splits") <= 1  # said once, not once per image set
    view = read_csv(run / "data.csv")
    assert {r["patient_id"] for r in view} == {str(9100000 + k // 2) for k in range(len(view))}
    assert {r["side"] for r in view} == {"L", "R"}
    # a patient's two knees stay in one split
    split_of: dict[str, set] = {}
    for r in view:
        split_of.setdefault(r["patient_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of.values())
    # the default 2,000 pairs were cut to what the train split has, said before training
    plan = json.loads((run / "data_check.json").read_text())
    train = plan["counts"]["train"]
    assert plan["gen_pairs"] == train["0"] * train["2"] < 2000
    assert len(read_csv(run / "generated" / "manifest.csv")) == 2 * plan["gen_pairs"]
    # nothing written into the user's data folder
    assert sorted(p.name for p in (tmp_path / "oai").iterdir()) == ["dicom", "oai.csv"]


def test_a_run_that_stops_before_training_leaves_its_folder_free(phantoms, tmp_path, capsys):
    data = kaggle_tree(tmp_path / "kaggle", phantoms)
    run = tmp_path / "runs" / "mine"
    # a typo in --data: one line, no folder made
    assert main(["run", "--data", str(tmp_path / "kagle"), "--out", str(run), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "kagle: no such file or folder" in err
    assert not run.exists()
    # the README's regex shape on these names: refused with the names it misses and one that fits
    readme = r"(?P<patient>\d{7})(?P<side>[LR])"
    args = ["run", "--data", str(data), "--out", str(run), *TINY]
    assert main([*args, "--patient-regex", readme]) == 2
    err = capsys.readouterr().err
    assert "matches 0 of 94 file names" in err and r"(?P<patient>\d{5,})_(?P<side>[12])" in err
    # more pairs than the train split has: refused by the option's name, before any training
    assert main([*args, "--patient-regex", KAGGLE_REGEX, "--gen-pairs", "999999"]) == 2
    err = capsys.readouterr().err
    assert "--gen-pairs 999999 is more than the" in err and "--pairs" not in err.replace(
        "--gen-pairs", ""
    )
    assert not (run / "run.yaml").exists() and not (run / "supervisor").exists()
    # the corrected command runs in the same folder
    assert main([*args, "--patient-regex", KAGGLE_REGEX]) == 0
    assert yaml.safe_load((run / "run.yaml").read_text())["patient_regex"] == KAGGLE_REGEX
    log = (run / "console.log").read_text()
    # every try that reached the folder, the failures included (the typo made no folder)
    assert log.count("=== ") == 3 and log.count("error: ") == 2


def test_a_degenerate_classifier_run_says_so(phantoms, tmp_path, capsys):
    # every knee the same image (one bit apart, so no file is a duplicate): no classifier can
    # tell the grades, each calls every test knee one grade
    data = kaggle_tree(tmp_path / "kaggle", phantoms)
    files = sorted(data.rglob("*.png"))
    base = np.asarray(Image.open(files[0]).convert("L"))
    for k, path in enumerate(files):
        img = base.copy()
        img.flat[k] ^= 1
        Image.fromarray(img).save(path)
    run = tmp_path / "runs" / "same"
    args = ["run", "--data", str(data), "--out", str(run), "--patient-regex", KAGGLE_REGEX]
    assert main([*args, *TINY]) == 0
    out = capsys.readouterr().out
    headline = out.split("headline numbers")[1].splitlines()
    assert headline[1].startswith("  WARNING: the judge calls 100 % of the test knees KL-")
    assert "[not meaningful: degenerate judge]" in out
    m = json.loads((run / "metrics.json").read_text())
    # the judge "agrees" with itself on every exchange, and that is not counted as met
    targets = m["targets"]
    for name, t in targets.items():
        if t["metric"].startswith("exchange_success.judge_"):
            assert t["met"] is None, name
    assert "4 not meaningful (a degenerate classifier); 7 need phantom ground truth" in out
    # the report says it before anything else, then the data, then the numbers
    page = (run / "report.html").read_text()
    top = page.index('<div class="warning">')
    assert top < page.index('<section id="data">') < page.index('<section id="headline">')
    assert "The judge is degenerate" in page[top : page.index('<section id="data">')]
    assert page.count("not meaningful") >= 6  # the two headline cards, four targets
    assert re.search(r"Targets: \d of 3 computable targets met; 4 not meaningful", page)
    # fidelity: not computable here, without advice to run what cannot compute it
    fidelity = page[page.index('<section id="fidelity">') :]
    fidelity = fidelity[: fidelity.index("</section>")]
    assert "Not computable on these data" in fidelity and "kecae evaluate" not in fidelity
