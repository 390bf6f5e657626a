"""Your own data, end to end: `kecae run` on a Kaggle-style folder (root/<split>/<grade>/*.png,
OAI-style file names with patient and side), then the run folder moved elsewhere and evaluated,
reported, studied and rerun from another working folder."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from kecae.cli import main

REGEX = r"(?P<patient>\d{7})(?P<side>[LR])"


def write_kaggle_tree(root: Path, patients: dict[str, int], size: int = 40, seed: int = 0) -> Path:
    """root/<split>/<grade>/<patient><side>.png with both knees of each patient in one split.
    KL-2 knees show a narrow dark joint band, KL-0 a wide one (a learnable difference); a few
    KL-1 knees sit beside them, as in the public data set, and are not used."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    pid = 9000000
    for split, n in patients.items():
        for grade in (0, 2, 1):
            for _ in range(n if grade != 1 else 1):
                pid += 1
                for side in "LR":
                    half = {0: 5, 1: 4, 2: 2}[grade]
                    img = (120 + 30 * np.sin(xx / (3 + rng.random() * 3))
                           + rng.normal(0, 12, (size, size)))
                    img[np.abs(yy - size // 2) < half] = 30
                    folder = root / split / str(grade)
                    folder.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                        folder / f"{pid}{side}.png")
    return root


RUN_ARGS = ["--patient-regex", REGEX, "--preset", "tiny", "--supervisor-arch", "small",
            "--judge-arch", "siamese", "--classifier-epochs", "1", "--kecae-steps", "2",
            "--gen-pairs", "4", "--eval-pairs", "12", "--device", "cpu"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("own")
    data = write_kaggle_tree(base / "knees", {"train": 6, "val": 3, "test": 3})
    run = base / "runs" / "mine"
    assert main(["run", "--data", str(data), "--out", str(run), *RUN_ARGS]) == 0
    return {"base": base, "data": data, "run": run}


def test_run_on_a_kaggle_style_folder(finished):
    run, data = finished["run"], finished["data"]
    m = json.loads((run / "metrics.json").read_text())
    assert (run / "report.html").is_file() and {"exchange_success", "judge", "timings"} <= set(m)
    assert set(m["timings"]) == {"data view", "data check", "supervisor", "judge", "kecae",
                                 "generate", "evaluate"}
    assert m["judge"]["arch"] == "siamese" and m["exchange_success"]["n"] == 12
    # the regex gives patients and sides; the data view fixes them for every step
    with open(run / "data.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * (2 * (6 + 3 + 3) + 3)  # two knees; KL-0, KL-2 and one KL-1 per split
    assert {r["side"] for r in rows} == {"L", "R"} and all(len(r["patient_id"]) == 7 for r in rows)
    assert Path(rows[0]["path"]).is_absolute()  # the user's data lies outside the run folder
    # paths inside the run folder are stored relative to the file that names them
    kecae_cfg = yaml.safe_load((run / "kecae" / "config.yaml").read_text())
    assert kecae_cfg["data"] == "../data.csv" and kecae_cfg["out"] == "."
    assert kecae_cfg["supervisor"] == "../supervisor/best.pt"
    gen = json.loads((run / "generated" / "generation.json").read_text())
    assert gen["data"] == "../data.csv" and gen["checkpoint"] == "../kecae/checkpoints/last.pt"
    assert yaml.safe_load((run / "run.yaml").read_text())["data"] == str(data)
    # the generated images are marked synthetic and name their sources
    with open(run / "generated" / "manifest.csv", newline="") as fh:
        first = next(csv.DictReader(fh))
    with Image.open(run / "generated" / first["path"]) as img:
        assert img.text["kecae:synthetic"] == "true"
        assert img.text["kecae:recipient"] == first["recipient_id"]
        assert img.text["kecae:donor"] == first["donor_id"]


def test_moved_run_evaluates_reports_studies_and_reruns(finished, tmp_path, monkeypatch, capsys):
    """cp -a RUN elsewhere, remove the original, work from another folder."""
    moved = tmp_path / "elsewhere" / "mine"
    shutil.copytree(finished["run"], moved, symlinks=True)
    shutil.rmtree(finished["run"])
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    rel = "../elsewhere/mine"
    assert main(["evaluate", "--run", rel, "--pairs", "12", "--separability-images", "20",
                 "--device", "cpu"]) == 0
    assert main(["report", "--run", rel]) == 0
    assert main(["study", "downstream", "--run", rel, "--arch", "small", "--sets", "T", "T'",
                 "--epochs", "1", "--seeds", "1", "--batch-size", "8", "--device", "cpu",
                 "--no-progress"]) == 0
    m = json.loads((moved / "metrics.json").read_text())
    assert m["downstream"]["rows"][1]["n_train_generated"] == 8  # 4 pairs from the moved folder
    sub = yaml.safe_load((moved / "studies" / "downstream" / "small" / "T_prime" / "seed_0" /
                          "config.yaml").read_text())
    assert sub["data"] == "../../../../../data.csv" and sub["augment_dirs"] == [
        "../../../../../generated"]
    # the same settings again: every step reused, nothing trained
    best = moved / "supervisor" / "best.pt"
    last = moved / "kecae" / "checkpoints" / "last.pt"
    before = best.stat().st_mtime_ns, last.stat().st_mtime_ns
    assert main(["run", "--data", str(finished["data"]), "--out", rel, *RUN_ARGS]) == 0
    assert (best.stat().st_mtime_ns, last.stat().st_mtime_ns) == before
    # other settings: refused with the list of differences
    capsys.readouterr()
    assert main(["run", "--data", str(finished["data"]), "--out", rel, *RUN_ARGS,
                 "--kecae-lr", "0.5", "--judge-arch", "small"]) == 2
    err = capsys.readouterr().err
    assert "judge_arch 'siamese' there, 'small' now; kecae_lr 0.001 there, 0.5 now" in err
    assert "--fresh" in err
