"""kecae.cli.main: every bad input ends in one line naming the input and the fix, exit status
2, nothing lost; the parser stays light (no torch, no web server) to build.

One table, one row per input a user can get wrong; each row runs the real command line and
checks that the message has the expected words, that it is a single line without a traceback,
and that no file outside the preprocessed-image caches was changed, added or removed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kecae.cli import main
from kecae.generation import GenerateConfig, generate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world(tmp_path_factory, learnable_tree, write_manifest) -> dict[str, Path]:
    """A data set, a trained classifier and a 2-step tiny KECAE, plus data sets with a fatal
    problem each: a patient in two splits, a test image copied into train, an unreadable file."""
    root = tmp_path_factory.mktemp("world")
    data = learnable_tree(root / "data", {"train": 10, "val": 6, "test": 6}, seed=4)
    common = ["--no-progress", "--device", "cpu"]
    assert (
        main(
            [
                "train-classifier",
                "--data",
                str(data),
                "--out",
                str(root / "sup"),
                "--arch",
                "small",
                "--image-size",
                "32",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                *common,
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
                str(root / "k"),
                "--supervisor",
                str(root / "sup" / "best.pt"),
                "--preset",
                "tiny",
                "--max-steps",
                "2",
                "--num-pairs",
                "50",
                "--batch-size",
                "8",
                *common,
            ]
        )
        == 0
    )

    rows = [
        {
            "path": str(p),
            "grade": p.parent.name,
            "split": p.parent.parent.name,
            "patient_id": p.stem,
        }
        for p in sorted(data.glob("*/*/*.png"))
    ]
    test_row = next(r for r in rows if r["split"] == "test")
    train_row = next(r for r in rows if r["split"] == "train" and r["grade"] == test_row["grade"])
    train_row["patient_id"] = test_row["patient_id"]  # one patient in train and test
    write_manifest(root / "leak" / "manifest.csv", rows)
    dup = root / "dup"
    shutil.copytree(data, dup)
    test_img = sorted((dup / "test" / "0").glob("*.png"))[0]
    shutil.copy2(test_img, dup / "train" / "0" / "copied_from_test.png")
    broken = root / "broken"
    shutil.copytree(data, broken)
    (broken / "train" / "2" / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    return {
        "root": root,
        "data": data,
        "sup": root / "sup" / "best.pt",
        "kecae": root / "k" / "checkpoints" / "last.pt",
        "leak": root / "leak",
        "dup": dup,
        "broken": broken,
    }


def _snapshot(*folders: Path) -> dict[str, str]:
    """sha256 of every file under the folders, preprocessed-image caches left out."""
    files = {}
    for folder in folders:
        for dirpath, dirs, names in os.walk(folder):
            dirs[:] = [d for d in dirs if d != ".kecae_cache"]
            for name in names:
                p = Path(dirpath) / name
                if p.is_file():
                    files[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return files


def _gen(w, out, *extra) -> list[str]:
    return [
        "generate",
        "--checkpoint",
        str(w["kecae"]),
        "--data",
        str(w["data"]),
        "--out",
        str(out),
        "--pairs",
        "2",
        "--no-progress",
        "--device",
        "cpu",
        *extra,
    ]


def _train(w, out, *extra, data=None) -> list[str]:
    return [
        "train",
        "--data",
        str(data or w["data"]),
        "--out",
        str(out),
        "--supervisor",
        str(w["sup"]),
        "--preset",
        "tiny",
        "--max-steps",
        "3",
        "--num-pairs",
        "50",
        "--batch-size",
        "8",
        "--no-progress",
        "--device",
        "cpu",
        *extra,
    ]


def _clf(w, out, *extra, data=None) -> list[str]:
    return [
        "train-classifier",
        "--data",
        str(data or w["data"]),
        "--out",
        str(out),
        "--arch",
        "small",
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--no-progress",
        "--device",
        "cpu",
        *extra,
    ]


def _foreign_folder(w, t):
    (t / "mine").mkdir()
    (t / "mine" / "manifest.csv").write_text("path,grade\nknee.png,0\n")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(t / "mine" / "knee.png")
    return _gen(w, t / "mine")


def _generated_with_foreign_image(w, t):
    generate(
        GenerateConfig(
            checkpoint=str(w["kecae"]),
            data=str(w["data"]),
            out=str(t / "g"),
            pairs=2,
            progress=False,
            device="cpu",
        )
    )
    victim = sorted((t / "g" / "2").glob("*.png"))[0]
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(victim)  # same name, not ours
    return _gen(w, t / "g")


def _damaged_meta(w, t):
    (t / "g").mkdir()
    (t / "g" / "generation.json").write_text('{"checkpoint": "unfinished')
    return _gen(w, t / "g")


def _bad_model_config(w, t):
    ckpt = torch.load(w["kecae"], weights_only=True)
    ckpt["model_config"] = {**ckpt["model_config"], "no_such_field": 1}
    torch.save(ckpt, t / "edited.pt")
    return [
        "generate",
        "--checkpoint",
        str(t / "edited.pt"),
        "--data",
        str(w["data"]),
        "--out",
        str(t / "g"),
        "--pairs",
        "2",
        "--device",
        "cpu",
        "--no-progress",
    ]


def _mismatched_weights(w, t):
    ckpt = torch.load(w["kecae"], weights_only=True)
    name = next(iter(ckpt["model"]))
    ckpt["model"][name] = torch.zeros(3, 3)
    torch.save(ckpt, t / "edited.pt")
    return [
        "generate",
        "--checkpoint",
        str(t / "edited.pt"),
        "--data",
        str(w["data"]),
        "--out",
        str(t / "g"),
        "--pairs",
        "2",
        "--device",
        "cpu",
        "--no-progress",
    ]


def _out_is_file(w, t):
    (t / "f").write_text("keep me")
    return _train(w, t / "f")


def _giant_png(w, t):
    """A 30000 x 30000 PNG header (the pixels are never decoded: Pillow refuses it on open)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    folder = t / "data"
    shutil.copytree(w["data"], folder, ignore=shutil.ignore_patterns(".kecae_cache"))
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
    (folder / "train" / "2" / "huge.png").write_bytes(png)
    return ["data", "check", str(folder), "--no-progress"]


def _yaml(w, t):
    (t / "c.yaml").write_text(f"data: {w['data']}\nlr: fast\n")
    return ["train", "--config", str(t / "c.yaml"), "--out", str(t / "k")]


no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


#: (case id, command line from (world, tmp folder), words the message must hold)
CASES: list[tuple[str, Callable[[dict, Path], list[str]], str]] = [
    # generate: the folder
    (
        "generate into a folder it did not make",
        _foreign_folder,
        r"--out .*mine holds files that kecae generate did not write \(knee.png, manifest.csv\): "
        r"choose a new or empty folder",
    ),
    (
        "generate into the data folder",
        lambda w, t: _gen(w, w["data"]),
        r"--out .*data is the data folder .*: its images would be read as part of the data set",
    ),
    (
        "generate inside the data folder",
        lambda w, t: _gen(w, w["data"] / "gen"),
        r"inside the data folder",
    ),
    (
        "generate over a foreign image",
        _generated_with_foreign_image,
        r"pair0000\d+_kl0to2.png is not an image this generation wrote \(its "
        r"kecae:checkpoint_sha256.*move it out of the folder",
    ),
    (
        "generate with a damaged generation.json",
        _damaged_meta,
        r"generation.json is damaged .*choose another --out, or delete the folder",
    ),
    (
        "generate more pairs than exist",
        lambda w, t: _gen(w, t / "g", "--pairs", "100000"),
        r"--pairs 100000 is more than the 100 KL-0 x KL-2 pairs .*ask for at most 100",
    ),
    # generate: numbers
    (
        "generate --batch-size -1",
        lambda w, t: _gen(w, t / "g", "--batch-size", "-1"),
        r"--batch-size -1: must be a whole number >= 1",
    ),
    (
        "generate --batch-size 0",
        lambda w, t: _gen(w, t / "g", "--batch-size", "0"),
        r"--batch-size 0: must be a whole number >= 1",
    ),
    ("generate --pairs 0", lambda w, t: _gen(w, t / "g", "--pairs", "0"), r"--pairs 0: must be"),
    ("generate --seed -3", lambda w, t: _gen(w, t / "g", "--seed", "-3"), r"--seed -3: must be"),
    # checkpoints
    (
        "checkpoint with a wrong model_config",
        _bad_model_config,
        r"edited.pt: its model_config does not describe a KECAE .*use another checkpoint",
    ),
    (
        "checkpoint with mismatched weights",
        _mismatched_weights,
        r"edited.pt: the model weights do not fit the model its configuration describes \(Error"
        r".* size mismatch for .*use another checkpoint or retrain",
    ),
    (
        "classifier checkpoint given as KECAE",
        lambda w, t: [
            "generate",
            "--checkpoint",
            str(w["sup"]),
            "--data",
            str(w["data"]),
            "--out",
            str(t / "g"),
        ],
        r"holds a classifier model, but a kecae checkpoint is needed",
    ),
    # devices
    pytest.param(
        "generate --device cuda without a GPU",
        lambda w, t: [*_gen(w, t / "g")[:-2], "--device", "cuda"],
        r"--device cuda: no CUDA GPU is available on this machine \(it has cpu\)",
        marks=no_gpu,
    ),
    (
        "train --device gpu",
        lambda w, t: [*_train(w, t / "k")[:-2], "--device", "gpu"],
        r"--device 'gpu' is not a device name: use auto, cpu or cuda",
    ),
    (
        "evaluate --device gpu",
        lambda w, t: ["evaluate", "--run", str(t), "--device", "gpu"],
        r"--device 'gpu' is not a device name",
    ),
    # train: numbers
    (
        "train --lr 0",
        lambda w, t: _train(w, t / "k", "--lr", "0"),
        r"--lr 0.0: must be a finite number > 0",
    ),
    ("train --lr nan", lambda w, t: _train(w, t / "k", "--lr", "nan"), r"--lr nan: must be"),
    (
        "train --lambda-sup -1",
        lambda w, t: _train(w, t / "k", "--lambda-sup", "-1"),
        r"--lambda-sup -1.0: must be a finite number >= 0",
    ),
    (
        "train --lambda-lda inf",
        lambda w, t: _train(w, t / "k", "--lambda-lda", "inf"),
        r"--lambda-lda inf: must be a finite number >= 0",
    ),
    ("train --num-pairs 0", lambda w, t: _train(w, t / "k", "--num-pairs", "0"), r"--num-pairs 0"),
    ("train --log-every 0", lambda w, t: _train(w, t / "k", "--log-every", "0"), r"--log-every 0"),
    (
        "train --sample-every 0",
        lambda w, t: _train(w, t / "k", "--sample-every", "0"),
        r"--sample-every 0",
    ),
    (
        "train --ckpt-every -2",
        lambda w, t: _train(w, t / "k", "--ckpt-every", "-2"),
        r"--ckpt-every -2",
    ),
    (
        "train --max-steps -1",
        lambda w, t: _train(w, t / "k", "--max-steps", "-1"),
        r"--max-steps -1: must be a whole number >= 0",
    ),
    (
        "train --config with lr: fast",
        _yaml,
        r"--config .*c.yaml: lr: 'fast' is not a number \(e.g. lr: 1e-3\)",
    ),
    # train: resume that would mislabel
    (
        "resume with another lr and lambda",
        lambda w, t: _train(
            w, w["root"] / "k", "--lr", "0.5", "--lambda-sup", "3", "--max-steps", "4"
        ),
        r"k holds a run made with other settings \(lr 0.0001 there, 0.5 now; lambda_sup 0.01 "
        r"there, 3.0 now\); only stopping criteria.* or --fresh to train afresh in a new folder",
    ),
    (
        "resume with another width",
        lambda w, t: _train(w, w["root"] / "k", "--model", "width=0.25"),
        r"model \{\} there, \{'width': 0.25\} now",
    ),
    (
        "finished classifier with another arch",
        lambda w, t: [*_clf(w, w["root"] / "sup"), "--arch", "siamese"],
        r"sup holds a run made with other settings \(arch 'small' there, 'siamese' now\)",
    ),
    # train: the output folder
    ("train --out is a file", _out_is_file, r"--out .*f is a file, not a folder"),
    (
        "train --out not writable",
        lambda w, t: _train(w, "/sys/kecae_test_run"),
        r"cannot write /sys/kecae_test_run \(Operation not permitted\): choose an output folder",
    ),
    (
        "train --out below a file",
        lambda w, t: (t / "f").write_text("x") and _train(w, t / "f" / "k"),
        r"cannot write .*/f/k: .*/f is a file, where a folder is needed; choose another output",
    ),
    # train: fatal data problems
    (
        "train on a patient in two splits",
        lambda w, t: _train(w, t / "k", data=w["leak"]),
        r"kecae data check finds 1 fatal problem\(s\) .*patient .* is in splits \['test', 'train'\]"
        r".*--accept-data-problems",
    ),
    (
        "classifier on test images copied into train",
        lambda w, t: _clf(w, t / "c", data=w["dup"]),
        r"identical images in splits \['test', 'train'\]: the test set leaks into training",
    ),
    (
        "classifier on an unreadable file",
        lambda w, t: _clf(w, t / "c", data=w["broken"]),
        r"scan.png: cannot read this image",
    ),
    # train-classifier: numbers
    (
        "classifier --max-train -1",
        lambda w, t: _clf(w, t / "c", "--max-train", "-1"),
        r"--max-train -1: must be a whole number >= 0",
    ),
    (
        "classifier --image-size 8",
        lambda w, t: _clf(w, t / "c", "--image-size", "8"),
        r"--image-size 8: must be a side in pixels from 16 to 4096",
    ),
    (
        "classifier --batch-size 0",
        lambda w, t: _clf(w, t / "c", "--batch-size", "0"),
        r"--batch-size 0",
    ),
    # data
    (
        "data check on a 30000 x 30000 PNG",
        _giant_png,
        r"huge.png: image too large \(900,000,000 pixels, more than Pillow's safety limit",
    ),
    (
        "data cache --size 0",
        lambda w, t: ["data", "cache", str(w["data"]), "--size", "0"],
        r"--size 0: must be a side in pixels",
    ),
    (
        "--patient-regex that does not compile",
        lambda w, t: ["data", "check", str(w["data"]), "--patient-regex", "(?P<patient>"],
        r"--patient-regex '\(\?P<patient>' is not a valid regular expression",
    ),
    (
        "--patient-regex without a patient group",
        lambda w, t: _clf(w, t / "c", "--patient-regex", r"\d+"),
        r"--patient-regex '\\\\d\+' needs a named group 'patient'",
    ),
    (
        "phantoms --seed -1",
        lambda w, t: ["phantoms", str(t / "p"), "--seed", "-1"],
        r"--seed -1: must be a whole number from 0",
    ),
    # evaluate, studies, run
    (
        "evaluate --pairs 0",
        lambda w, t: ["evaluate", "--run", str(t), "--pairs", "0"],
        r"--pairs 0: must be a whole number >= 1",
    ),
    (
        "study --batch-size 0",
        lambda w, t: ["study", "downstream", "--run", str(t), "--batch-size", "0"],
        r"--batch-size 0: must be",
    ),
    (
        "study --lr -1",
        lambda w, t: ["study", "downstream", "--run", str(t), "--lr", "-1"],
        r"--lr -1.0: must be a finite number > 0",
    ),
    ("run without --data", lambda w, t: ["run", "--out", str(t / "r")], r"--data is required"),
    (
        "run --kecae-steps 0",
        lambda w, t: ["run", "--data", str(w["data"]), "--out", str(t / "r"), "--kecae-steps", "0"],
        r"--kecae-steps 0",
    ),
    (
        "run --eval-pairs 0",
        lambda w, t: ["run", "--data", str(w["data"]), "--out", str(t / "r"), "--eval-pairs", "0"],
        r"--eval-pairs 0",
    ),
]


@pytest.mark.parametrize(
    "name, make_args, words",
    CASES,
    ids=[c.values[0] if hasattr(c, "values") else c[0] for c in CASES],
)
def test_bad_input_one_line_exit_2_nothing_lost(name, make_args, words, world, tmp_path, capsys):
    args = make_args(world, tmp_path)
    before = _snapshot(world["root"], tmp_path)
    capsys.readouterr()
    try:
        rc = main(args)
    except SystemExit as exc:  # argparse's own usage errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("kecae ")]
    assert len(lines) == 1, err
    import re

    assert re.search(words, lines[0]), lines[0]
    assert _snapshot(world["root"], tmp_path) == before, "a file was changed, added or removed"


def test_disk_full_during_checkpoint_save_keeps_the_last_one(world, tmp_path, monkeypatch, capsys):
    """torch.save onto a full disk (/dev/full): a one-line error and the previous checkpoint."""
    import kecae.checkpoint as C

    out = tmp_path / "k"
    assert main(_train(world, out, "--max-steps", "2")) == 0
    before = (out / "checkpoints" / "last.pt").read_bytes()
    # a file on a full disk, closed by the checkpoint writer that opens it
    full_disk = lambda path: open("/dev/full", "wb")  # noqa: E731, SIM115 (the writer closes it)
    monkeypatch.setattr(C, "_open_for_write", full_disk)
    capsys.readouterr()
    assert main(_train(world, out, "--max-steps", "4")) == 2
    err = capsys.readouterr().err
    assert "no space left on the device while writing" in err and "last.pt" in err
    assert (out / "checkpoints" / "last.pt").read_bytes() == before
    assert not list(out.rglob("*.tmp"))


def test_leftover_tmp_files_are_removed_on_the_next_start(world, tmp_path):
    """A kill leaves `.<name>.<pid>.<random>.tmp` files; the next run removes those whose writer
    is gone and keeps a live writer's."""
    out = tmp_path / "k"
    assert main(_train(world, out, "--max-steps", "2")) == 0
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = [
        out / "checkpoints" / f".last.pt.{dead}.abcd1234.pt.tmp",
        out / f".config.yaml.{dead}.x_y_z_12.yaml.tmp",
    ]
    live = out / f".log.csv.{os.getpid()}.live0001.csv.tmp"
    for p in [*stale, live]:
        p.write_bytes(b"half")
    assert main(_train(world, out, "--max-steps", "3")) == 0
    assert not any(p.exists() for p in stale) and live.exists()


def test_fifo_in_a_grade_folder_is_skipped(world, tmp_path):
    """A named pipe in a grade folder used to hang `data check` (opening it waits for a
    writer); it is skipped and counted."""
    data = tmp_path / "data"
    shutil.copytree(world["data"], data, ignore=shutil.ignore_patterns(".kecae_cache"))
    os.mkfifo(data / "train" / "0" / "pipe.png")
    assert stat.S_ISFIFO(os.stat(data / "train" / "0" / "pipe.png").st_mode)
    r = subprocess.run(
        [sys.executable, "-m", "kecae", "data", "check", str(data), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert r.returncode == 0, r.stderr
    assert "1 not a regular file" in r.stdout and "44 images" in r.stdout


def test_accepted_data_problems_are_recorded(world, tmp_path):
    out = tmp_path / "c"
    assert main([*_clf(world, out, data=world["leak"]), "--accept-data-problems"]) == 0
    assert "accept_data_problems: true" in (out / "config.yaml").read_text()
    recorded = json.loads((out / "data_check.json").read_text())["accepted_fatal_problems"]
    assert len(recorded) == 1 and "is in splits" in recorded[0]["message"]


def test_help_stays_light():
    code = (
        "import sys, kecae.cli; kecae.cli.build_parser(); "
        "print(sorted(m for m in ('flask', 'torch', 'sklearn', 'waitress', 'optuna') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert out.stdout.strip() == "[]", out.stderr
