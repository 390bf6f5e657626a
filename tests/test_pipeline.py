"""`kecae run` and `kecae demo` (kecae.pipeline) end to end on tiny data sets: phantoms ->
classifiers -> KECAE -> generate -> evaluate -> report through the CLI, the demo's step reuse,
`kecae run` on a Kaggle-style folder, and the run folder moved and used from elsewhere."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from kecae.cli import main

#: Every metric the evaluation promises (dotted paths into metrics.json).
KEYS = [
    "separability.svm_hk_accuracy",
    "separability.svm_hn_accuracy",
    "separability.n",
    *[
        f"exchange_success.{who}_{what}{d}"
        for who, what in (
            ("judge", ""),
            ("judge", "agreement_"),
            ("judge", "agreement_control_"),
            ("judge", "control_"),
            ("judge", "recon_"),
            ("judge", "lift_"),
            ("judge", "relative_"),
            ("supervisor", "control_"),
            ("supervisor", "recon_"),
        )
        for d in ("kl0_to_kl2", "kl2_to_kl0")
    ],
    "exchange_success.judge_kl0_to_kl2_raw",
    "exchange_success.supervisor_kl2_to_kl0_raw",
    "exchange_success.n",
    "judge.test_accuracy",
    "judge.arch",
    "judge.confusion",
    "judge.recall_kl0",
    "judge.recall_kl2",
    "plausibility.real_test",
    "plausibility.x_ex",
    "plausibility.recon",
    "plausibility.control",
    "plausibility.ratio_to_real",
    "plausibility.knn_real_test",
    "plausibility.n_fit",
    "supervisor.test_accuracy",
    "fidelity.key_transfer_median",
    "fidelity.key_transfer_median_kl2_to_kl0",
    "fidelity.key_transfer_failed",
    "fidelity.osteophyte_transfer_rate",
    "fidelity.osteophyte_rate_real_kl2",
    "fidelity.osteophyte_rate_x1_ex",
    "fidelity.osteophyte_gap_kl0_to_kl2",
    "fidelity.nonkey_ssim_median",
    "fidelity.recon_key_transfer_median",
    "fidelity.refusal_rate",
    "fidelity.n",
    "quality.recon_psnr",
    "quality.recon_ssim",
    "quality.frechet",
    "quality.frechet_real_floor",
    "quality.n",
    "targets",
]


def get(d: dict, dotted: str):
    for part in dotted.split("."):
        assert isinstance(d, dict) and part in d, f"missing {dotted}"
        d = d[part]
    return d


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    data = run / "data"
    assert (
        main(
            [
                "phantoms",
                str(data),
                "--kl0",
                "60",
                "--kl2",
                "40",
                "--size",
                "64",
                "--seed",
                "3",
                "--no-progress",
            ]
        )
        == 0
    )
    for name, arch, seed in (("supervisor", "siamese", "0"), ("judge", "small", "1")):
        assert (
            main(
                [
                    "train-classifier",
                    "--data",
                    str(data),
                    "--out",
                    str(run / name),
                    "--arch",
                    arch,
                    "--image-size",
                    "64",
                    "--epochs",
                    "2",
                    "--batch-size",
                    "16",
                    "--seed",
                    seed,
                    "--no-progress",
                ]
            )
            == 0
        )
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--out",
                str(run / "kecae"),
                "--supervisor",
                str(run / "supervisor" / "best.pt"),
                "--preset",
                "tiny",
                "--model",
                "image_size=64",
                "--max-steps",
                "3",
                "--num-pairs",
                "200",
                "--batch-size",
                "8",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    return run


def test_generate_evaluate_report(run):
    gen = run / "generated"
    assert (
        main(
            [
                "generate",
                "--checkpoint",
                str(run / "kecae" / "checkpoints" / "last.pt"),
                "--data",
                str(run / "data"),
                "--pairs",
                "6",
                "--out",
                str(gen),
                "--no-progress",
            ]
        )
        == 0
    )
    rows = list(csv.DictReader((gen / "manifest.csv").read_text().splitlines()))
    assert len(rows) == 12 and all((gen / r["path"]).is_file() for r in rows)

    assert (
        main(["evaluate", "--run", str(run), "--pairs", "24", "--separability-images", "40"]) == 0
    )
    m = json.loads((run / "metrics.json").read_text())
    for key in KEYS:
        get(m, key)
    test_rows = [
        r
        for r in csv.DictReader((run / "data" / "ground_truth.csv").read_text().splitlines())
        if r["split"] == "test"
    ]
    per_grade = [sum(r["grade"] == g for r in test_rows) for g in ("0", "2")]
    assert m["exchange_success"]["n"] == 24  # 24 of the test split's KL-0 x KL-2 pairs
    assert m["separability"]["n"] == sum(min(20, n) for n in per_grade)  # at most 20 per grade
    assert m["judge"]["arch"] == "small" and m["exchange_success"]["judge_independent"] is True
    for key in ("judge_kl0_to_kl2", "supervisor_kl2_to_kl0_raw", "judge_agreement_kl2_to_kl0"):
        assert 0.0 <= m["exchange_success"][key] <= 1.0
    # a success needs a plausible image, so it can never exceed the label-only rate
    ex = m["exchange_success"]
    assert ex["judge_kl0_to_kl2"] <= ex["judge_kl0_to_kl2_raw"]
    assert ex["judge_lift_kl0_to_kl2"] == pytest.approx(
        ex["judge_kl0_to_kl2_raw"] - ex["judge_control_kl0_to_kl2"]
    )
    # the paper's decoded exchange: the no-exchange control is the reconstruction itself
    assert ex["judge_control_kl0_to_kl2"] == ex["judge_recon_kl0_to_kl2"]
    p = m["plausibility"]
    assert p["n_fit"] > 0 and p["n_calibration"] > 0 and 0 <= p["real_test"] <= 1
    assert 0.0 <= m["separability"]["svm_hk_accuracy"] <= 1.0
    assert m["quality"]["recon_psnr"] > 0 and -1 <= m["quality"]["recon_ssim"] <= 1
    assert m["quality"]["frechet"] >= 0 and m["quality"]["frechet_real_floor"] >= 0
    assert set(m["targets"]) and all("met" in t for t in m["targets"].values())
    # on phantoms every rule is also applied to perfect exchanges rendered from the ground truth
    oracle = m["oracle"]
    assert oracle["exchange_success"]["n"] == 24
    # the controls are the model's own, only X' differs
    assert oracle["exchange_success"]["judge_control_kl0_to_kl2"] == ex["judge_control_kl0_to_kl2"]
    assert oracle["fidelity"]["key_transfer_median"] == pytest.approx(1.0, abs=0.35)
    agreement = m["targets"]["judge agrees with its call on the donor, KL-0 -> KL-2"]
    assert agreement["oracle"] == oracle["exchange_success"]["judge_agreement_kl0_to_kl2"]
    assert m["targets"]["SVM on hK"].get("oracle") is None  # no oracle for the latents
    ex_npz = __import__("numpy").load(run / "eval" / "examples.npz")
    assert ex_npz["x1_ex"].shape[1:] == (64, 64)

    assert main(["report", "--run", str(run)]) == 0
    html = (run / "report.html").read_text()
    HTMLParser().feed(html)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 3
    for b64 in images:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="https?://', html)


def test_demo_runs_and_reuses_finished_steps(tmp_path, capsys, monkeypatch):
    args = [
        "demo",
        "--out",
        str(tmp_path / "demo"),
        "--kl0",
        "50",
        "--kl2",
        "34",
        "--phantom-size",
        "64",
        "--preset",
        "tiny",
        "--classifier-epochs",
        "1",
        "--kecae-steps",
        "2",
        "--gen-pairs",
        "4",
        "--eval-pairs",
        "12",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "report:" in out and (tmp_path / "demo" / "report.html").exists()
    m = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert set(m["timings"]) == {
        "phantoms",
        "data check",
        "supervisor",
        "judge",
        "kecae",
        "generate",
        "evaluate",
    }
    ckpt = tmp_path / "demo" / "kecae" / "checkpoints" / "last.pt"
    before = (
        ckpt.stat().st_mtime_ns,
        (tmp_path / "demo" / "supervisor" / "best.pt").stat().st_mtime_ns,
    )
    assert main(args) == 0  # second run: nothing is trained again
    after = (
        ckpt.stat().st_mtime_ns,
        (tmp_path / "demo" / "supervisor" / "best.pt").stat().st_mtime_ns,
    )
    assert before == after
    # scaling up: KECAE continues from its checkpoint and the generated set is rebuilt from it
    gen_meta = tmp_path / "demo" / "generated" / "generation.json"
    old_hash = json.loads(gen_meta.read_text())["checkpoint_sha256"]
    assert main([*args[:-2], "--kecae-steps", "3", "--device", "cpu"]) == 0
    assert json.loads(gen_meta.read_text())["checkpoint_sha256"] != old_hash
    from kecae.checkpoint import load_checkpoint

    assert load_checkpoint(ckpt)["step"] == 3

    # the run folder survives a move: cp -a runs/demo /x/demo, the original gone, then from
    # another working folder: kecae study downstream --run /x/demo; kecae evaluate --run ...
    moved = tmp_path / "x" / "demo"
    shutil.copytree(tmp_path / "demo", moved, symlinks=True)
    shutil.rmtree(tmp_path / "demo")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert (
        main(
            [
                "study",
                "downstream",
                "--run",
                str(moved),
                "--arch",
                "small",
                "--sets",
                "T",
                "--train-fraction",
                "1",
                "--check-fractions",
                "1",
                "--check-sets",
                "T",
                "--steps",
                "2",
                "--no-budget-check",
                "--seeds",
                "1",
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    m = json.loads((moved / "metrics.json").read_text())
    assert m["downstream"]["data"] == str(moved / "data")
    assert (
        main(
            [
                "evaluate",
                "--run",
                "../x/demo",
                "--pairs",
                "12",
                "--separability-images",
                "20",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    # other settings than the run's own: written beside its metrics.json
    m = json.loads((moved / "evaluations" / "svm20" / "metrics.json").read_text())
    assert m["supervisor"]["checkpoint"] == str(moved / "supervisor" / "best.pt")
    assert "fidelity" in m  # the phantoms' ground truth was found in the moved folder
    assert main(["report", "--run", "../x/demo"]) == 0


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
                    img = (
                        120
                        + 30 * np.sin(xx / (3 + rng.random() * 3))
                        + rng.normal(0, 12, (size, size))
                    )
                    img[np.abs(yy - size // 2) < half] = 30
                    folder = root / split / str(grade)
                    folder.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                        folder / f"{pid}{side}.png"
                    )
    return root


RUN_ARGS = [
    "--patient-regex",
    REGEX,
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
    "--gen-pairs",
    "4",
    "--eval-pairs",
    "12",
    "--device",
    "cpu",
]


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
    assert set(m["timings"]) == {
        "data check",
        "supervisor",
        "judge",
        "kecae",
        "generate",
        "evaluate",
    }
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
    assert (
        main(
            [
                "evaluate",
                "--run",
                rel,
                "--pairs",
                "12",
                "--separability-images",
                "20",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert main(["report", "--run", rel]) == 0
    assert (
        main(
            [
                "study",
                "downstream",
                "--run",
                rel,
                "--arch",
                "small",
                "--sets",
                "T",
                "T'",
                "--gen-ratio",
                "0.3",
                "--train-fraction",
                "1",
                "--check-fractions",
                "1",
                "--check-sets",
                "T",
                "--steps",
                "2",
                "--no-budget-check",
                "--seeds",
                "1",
                "--batch-size",
                "8",
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    m = json.loads((moved / "metrics.json").read_text())
    # 0.3 generated images per real one: 4 pairs, the run's own (its KECAE has these settings)
    assert m["downstream"]["rows"][1]["n_train_generated"] == 8
    assert m["downstream"]["fractions"][0]["kecae_reused"] is True
    sub = yaml.safe_load(
        (
            moved
            / "studies"
            / "downstream"
            / "iid"
            / "fraction_1"
            / "small"
            / "T_prime"
            / "seed_0"
            / "config.yaml"
        ).read_text()
    )
    assert sub["data"] == "../../../../../../../data.csv" and sub["mix_dirs"] == [
        "../../../generated_pairs_0.3.csv"
    ]
    # the same settings again: every step reused, nothing trained
    best = moved / "supervisor" / "best.pt"
    last = moved / "kecae" / "checkpoints" / "last.pt"
    before = best.stat().st_mtime_ns, last.stat().st_mtime_ns
    assert main(["run", "--data", str(finished["data"]), "--out", rel, *RUN_ARGS]) == 0
    assert (best.stat().st_mtime_ns, last.stat().st_mtime_ns) == before
    # other settings: refused with the list of differences
    capsys.readouterr()
    assert (
        main(
            [
                "run",
                "--data",
                str(finished["data"]),
                "--out",
                rel,
                *RUN_ARGS,
                "--kecae-lr",
                "0.5",
                "--judge-arch",
                "small",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "judge_arch 'siamese' there, 'small' now; kecae_lr 0.001 there, 0.5 now" in err
    assert "--fresh" in err
