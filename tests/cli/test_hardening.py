"""The bad-input table, second round: the 18 defects of the hardening review, one row each (some
with variants), each with its input, the exit code (or HTTP status), the line it must print
and the files that must be unchanged.

A row's input is a command line run in this process (:class:`Cli`), in a child process when the
line is a log line (:class:`Proc`), an HTTP request to the reader-study app (:class:`Http`), or
a request to a served study whose console is read (:class:`Served`). The mechanisms behind the
rows are tested beyond the rows at the end: every numeric option has a range, every command
refuses an unwritable output, two real trainers in one folder, the lock's life cycle.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import typing
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kecae import runlock
from kecae.cli import build_parser, main
from kecae.cli.options import OPTION_CLASSES
from kecae.config import field_range
from kecae.generation import GenerateConfig, generate
from kecae.reader_study import prepare as prepare_module
from kecae.reader_study.app import create_app
from kecae.reader_study.prepare import prepare_study
from kecae.reader_study.security import RedactTokens, foreign_origin

REPO = Path(__file__).resolve().parents[2]
PORT0 = ("--port", "0")
NOT_PERMITTED = "(Operation not permitted|Permission denied)"  # as root / as a user
COMMON = ["--no-progress", "--device", "cpu"]
KECAE = ["--preset", "tiny", "--num-pairs", "50", "--batch-size", "8"]


# ---------------------------------------------------------------------------------------------
# The world: data sets, a classifier, KECAE runs, a generated folder and a reader study
# ---------------------------------------------------------------------------------------------


def _flat(root: Path, learnable_tree) -> Path:
    """A folder layout without split folders: kecae assigns the splits (70/15/15 by patient)."""
    learnable_tree(root / "tmp", {"all": 20}, seed=5)
    for grade in ("0", "2"):
        shutil.move(root / "tmp" / "all" / grade, root / "flat" / grade)
    shutil.rmtree(root / "tmp")
    return root / "flat"


@pytest.fixture(scope="module")
def world(tmp_path_factory, learnable_tree) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("world")
    data = learnable_tree(root / "data", {"train": 10, "val": 6, "test": 6}, seed=4)
    flat = _flat(root, learnable_tree)
    clf = ["--arch", "small", "--image-size", "32", "--epochs", "1", "--batch-size", "8"]
    assert (
        main(["train-classifier", "--data", str(data), "--out", str(root / "sup"), *clf, *COMMON])
        == 0
    )
    sup = root / "sup" / "best.pt"
    for name, d in (("k", data), ("kflat", flat)):
        args = ["train", "--data", str(d), "--out", str(root / name), "--supervisor", str(sup)]
        assert main([*args, *KECAE, "--max-steps", "2", *COMMON]) == 0
    generate(
        GenerateConfig(
            checkpoint=str(root / "k" / "checkpoints" / "last.pt"),
            data=str(data),
            out=str(root / "gen"),
            pairs=6,
            progress=False,
            device="cpu",
        )
    )
    prepare_study(root / "gen", root / "study", pairs=2, readers=["alice", "bob"], seed=0)
    return {
        "root": root,
        "data": data,
        "flat": flat,
        "sup": sup,
        "k": root / "k",
        "kflat": root / "kflat",
        "gen": root / "gen",
        "study": root / "study",
    }


def _train(w, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--supervisor",
        str(w["sup"]),
        *KECAE,
        "--max-steps",
        "2",
        *COMMON,
        *extra,
    ]


def _classifier(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train-classifier",
        "--data",
        str(data),
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
        *COMMON,
        *extra,
    ]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".kecae_cache"))
    return dst


def _token(study: Path, reader: str = "alice") -> str:
    for line in (study / "links.txt").read_text().splitlines():
        if line.startswith(f"{reader}\t"):
            return line.split("\t")[1].rsplit("/", 1)[1]
    raise AssertionError(f"no link for {reader}")


def _first_item(study: Path, token: str) -> str:
    import sqlite3

    con = sqlite3.connect(study / "study.sqlite")
    try:
        rid = con.execute(
            "SELECT id FROM readers WHERE token_sha256 = ?",
            (hashlib.sha256(token.encode()).hexdigest(),),
        ).fetchone()[0]
        return con.execute(
            "SELECT item_id FROM schedule WHERE reader_id = ? ORDER BY position", (rid,)
        ).fetchone()[0]
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# Inputs and how each is run
# ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    code: int  # exit status, or HTTP status
    lines: list[str]  # what to search for the row's line
    stderr: str = ""  # a command's error output (one line for an exit status 2)


@dataclass
class Cli:
    """``kecae ARGS`` in this process."""

    args: list[str]

    def run(self) -> Outcome:
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(self.args)
            except SystemExit as exc:  # argparse's own usage errors
                code = int(exc.code or 0)
        text = err.getvalue()
        return Outcome(code, text.splitlines() + out.getvalue().splitlines(), text)


@dataclass
class Proc:
    """``python -m kecae ARGS`` in a child process: its log lines are on its stderr."""

    args: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def run(self) -> Outcome:
        r = subprocess.run(
            [sys.executable, "-m", "kecae", *self.args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **self.env},
        )
        return Outcome(r.returncode, r.stderr.splitlines() + r.stdout.splitlines(), r.stderr)


@dataclass
class Http:
    """One request to a study's app (Flask's test client)."""

    study: Path
    method: str
    path: str
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def run(self) -> Outcome:
        client = create_app(self.study).test_client()
        resp = client.open(
            self.path,
            method=self.method,
            data=self.body,
            headers={"Content-Type": "application/x-www-form-urlencoded", **self.headers},
        )
        page = re.sub(r"<[^>]+>", " ", resp.get_data(as_text=True))
        return Outcome(resp.status_code, [" ".join(page.split())])


def _interruptible() -> None:
    """In the server's child process before it starts: SIGINT at its default (Python then turns
    it into KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Served:
    """A GET to ``kecae reader-study serve`` in a child process after ``break_it`` ran; the
    lines are the server's console from then on (before it, the reader links it prints for
    the operator to send)."""

    study: Path
    path: str
    break_it: Callable[[], None]

    def run(self) -> Outcome:
        import http.client

        log = self.study.parent / "serve.log"
        with open(log, "w") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kecae", "reader-study", "serve", str(self.study), *PORT0],
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
                # a shell's background job (`make test &`) starts with SIGINT ignored and the
                # child would inherit that: the server stops on Ctrl-C, as a user's would
                preexec_fn=_interruptible,
            )
        try:
            deadline = time.monotonic() + 60
            while not (m := re.search(r" at http://[^:]+:(\d+)/ ", log.read_text())):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            time.sleep(0.5)  # the links are printed just before the server starts accepting
            started = len(log.read_text().splitlines())  # the links (sent to readers) end here
            self.break_it()
            con = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=30)
            con.request("GET", self.path)
            status = con.getresponse().status
            con.close()
            time.sleep(0.5)  # the error is logged after the reply
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
        return Outcome(status, log.read_text().splitlines()[started:])


Input = Cli | Proc | Http | Served


@dataclass
class Row:
    """One row of the table."""

    number: str  # the defect's number in the review ("3b": its second variant)
    name: str
    make: Callable[[Ctx], Input]  # builds the input (and whatever it needs) under ctx.tmp
    code: int  # the exit status or HTTP status it must give
    line: str  # a regular expression one line must match ({names} from ctx.facts)
    unchanged: Callable[[Ctx], list[Path]] | None = None  # default: the world and ctx.tmp
    absent: str | None = None  # a text no line may hold ({names} from ctx.facts)


@dataclass
class Ctx:
    w: dict[str, Path]
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    cleanups: list[Callable[[], None]]
    facts: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# What each row sets up
# ---------------------------------------------------------------------------------------------


def _data_grew(c: Ctx) -> Input:
    """1: a run on a folder without splits, then 10 images more (the splits are reassigned)."""
    data = _copy(c.w["flat"], c.tmp / "flat")
    assert main(_train(c.w, data, c.tmp / "k")) == 0
    for i in range(10):
        pixels = np.random.default_rng(i).integers(0, 256, (40, 40), dtype=np.uint8)
        Image.fromarray(pixels).save(data / ("0", "2")[i % 2] / f"new{i}.png")
    return Cli(_train(c.w, data, c.tmp / "k", "--max-steps", "3"))


def _relabelled(c: Ctx) -> Input:
    """1b: one image moved from the KL-0 to the KL-2 folder of its split."""
    data = _copy(c.w["data"], c.tmp / "data")
    assert main(_train(c.w, data, c.tmp / "k")) == 0
    shutil.move(data / "train" / "0" / "train000.png", data / "train" / "2" / "moved.png")
    return Cli(_train(c.w, data, c.tmp / "k", "--max-steps", "3"))


def _held_by_another_process(c: Ctx) -> Input:
    """2: another process holds the run folder (the lock, as a second `kecae train` takes it)."""
    run = _copy(c.w["k"], c.tmp / "k")
    code = (
        "import sys, time; from kecae.runlock import lock_run_folder; "
        "lock_run_folder(sys.argv[1]); print('locked', flush=True); time.sleep(120)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(run)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    c.cleanups.append(lambda: (holder.kill(), holder.wait()))
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    c.facts["pid"] = str(holder.pid)
    return Cli(_train(c.w, c.w["data"], run, "--max-steps", "3"))


def _read_only(c: Ctx, folder: Path) -> Path:
    """``folder``, made unwritable: immutable (chattr +i) as root, read-only (chmod) else."""
    folder.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
            pytest.skip("root without chattr: no folder here is unwritable to this process")
        c.cleanups.append(lambda: subprocess.run(["chattr", "-i", str(folder)], check=False))
    else:
        folder.chmod(0o555)
        c.cleanups.append(lambda: folder.chmod(0o755))
    return folder


def _phantoms(out: Path) -> list[str]:
    return ["phantoms", str(out), "--kl0", "10", "--kl2", "10", "--size", "64", "--no-progress"]


def _prepare(w, out: Path) -> list[str]:
    gen, readers = str(w["gen"]), ("--readers", "a", "b")
    return [
        "reader-study",
        "prepare",
        "--generated",
        gen,
        "--pairs",
        "2",
        *readers,
        "--out",
        str(out),
    ]


def _disk_full(c: Ctx) -> Input:
    """4b: the disk fills up while the study's images are written."""
    written = []

    def write_png(path: Path, pixels: np.ndarray) -> None:
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        written.append(path)
        Image.fromarray(pixels).save(path)

    c.monkeypatch.setattr(prepare_module, "_write_png", write_png)
    return Cli(_prepare(c.w, c.tmp / "study"))


def _fifo_manifest(c: Ctx) -> Input:
    os.mkfifo(c.tmp / "m.csv")
    return Cli(["data", "check", str(c.tmp / "m.csv"), "--no-progress"])


def _log_with_text(c: Ctx) -> Input:
    """8: a log.csv row inside the file whose step is not a number; resumed with its settings."""
    run = _copy(c.w["kflat"], c.tmp / "k")
    lines = (run / "log.csv").read_text().splitlines()
    lines.insert(1, "abc," + lines[1].split(",", 1)[1])
    (run / "log.csv").write_text("\n".join(lines) + "\n")
    return Cli(_train(c.w, c.w["flat"], run))


def _answer(c: Ctx, **headers: str) -> Input:
    token = _token(c.w["study"])
    item = _first_item(c.w["study"], token)
    return Http(c.w["study"], "POST", f"/r/{token}/answer", f"item={item}&kl=2&realism=4", headers)


def _server_error(c: Ctx) -> Input:
    """10: the database goes bad while the study is served: a 500 and a logged traceback."""
    study = _copy(c.w["study"], c.tmp / "study")
    token = _token(study)
    c.facts["token"] = token

    def break_it() -> None:
        for name in ("study.sqlite-wal", "study.sqlite-shm"):
            (study / name).unlink(missing_ok=True)
        (study / "study.sqlite").write_bytes(b"not a database" * 100)

    return Served(study, f"/r/{token}", break_it)


def _manifest(c: Ctx, split: Callable[[str], str]) -> Input:
    rows = ["path,grade,patient_id,split"]
    for p in sorted(c.w["data"].glob("*/*/*.png")):
        rows.append(
            f"{p},{p.parent.name},{p.parent.parent.name}{p.stem},{split(p.parent.parent.name)}"
        )
    (c.tmp / "m").mkdir()
    (c.tmp / "m" / "manifest.csv").write_text("\n".join(rows) + "\n")
    return Cli(["data", "check", str(c.tmp / "m"), "--no-progress"])


def _broken(c: Ctx) -> Input:
    data = _copy(c.w["data"], c.tmp / "broken")
    (data / "train" / "2" / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    return Cli(_classifier(data, c.tmp / "c", "--accept-data-problems"))


def _tiny_images(c: Ctx) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("val", 6), ("test", 6)):
        for g in ("0", "2"):
            folder = c.tmp / "tiny" / split / g
            folder.mkdir(parents=True)
            for i in range(n):
                side = 1 if i == 0 else 8
                pixels = rng.integers(0, 256, (side, side), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{split}_{g}_{i}.png")
    return c.tmp / "tiny"


def _png_header_only(path: Path, side: int) -> None:
    """A valid PNG of ``side`` x ``side`` black pixels, compressed to a few hundred KB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        return struct.pack(">I", len(body)) + kind + body + crc

    z = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _bomb(c: Ctx) -> Input:
    data = _copy(c.w["data"], c.tmp / "data")
    _png_header_only(data / "train" / "2" / "big.png", 12_000)  # 144 MP, under Pillow's limit
    assert (data / "train" / "2" / "big.png").stat().st_size < 200_000
    return Proc(["data", "check", str(data), "--no-progress"])


def _everything(c: Ctx) -> list[Path]:
    return [c.w["root"], c.tmp]


no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
IN_USE = r"k is in use by process {pid}: two commands in one run folder would overwrite"
OTHER_DATA = r"k holds a run made with other settings \(data_version \w{{12}} there, \w{{12}} now"
SERVE = ["reader-study", "serve"]

ROWS: list[Row] = [
    Row("1", "resume after images were added to a folder without splits", _data_grew, 2,
        OTHER_DATA + r": the data set .*flat has changed since.*or pass --fresh"),
    Row("1b", "resume after an image was relabelled (moved to another grade folder)",
        _relabelled, 2, OTHER_DATA),
    Row("2", "a second process in a run folder", _held_by_another_process, 2, IN_USE),
    Row("3", "phantoms into an immutable / read-only folder",
        lambda c: Cli(_phantoms(_read_only(c, c.tmp / "ro") / "p")), 2,
        r"cannot write .*ro/p \((Operation not permitted|Permission denied)\): choose an output"),
    Row("3b", "phantoms into /sys", lambda c: Cli(_phantoms(Path("/sys/kecae_test_p"))), 2,
        r"cannot write /sys/kecae_test_p \((Operation not permitted|Permission denied)\)"),
    Row("3c", "phantoms onto an existing file",
        lambda c: (c.tmp / "f").write_text("keep") and Cli(_phantoms(c.tmp / "f")), 2,
        r"OUT .*/f is a file, not a folder"),
    Row("4", "reader-study prepare into a read-only folder",
        lambda c: Cli(_prepare(c.w, _read_only(c, c.tmp / "ro") / "s")), 2,
        r"cannot write .*ro \((Operation not permitted|Permission denied)\)"),
    Row("4b", "reader-study prepare onto a full disk", _disk_full, 2,
        r"no space left on the device while writing .*\.png: free some disk space"),
    Row("5", "serve --threads 0", lambda c: Cli([*SERVE, str(c.w["study"]), "--threads", "0"]),
        2, r"--threads 0: must be a whole number of threads from 1 to 1024"),
    Row("6", "serve --port -1", lambda c: Cli([*SERVE, str(c.w["study"]), "--port", "-1"]), 2,
        r"--port -1: must be a port from 0 to 65535"),
    Row("6b", "serve --port 70000",
        lambda c: Cli([*SERVE, str(c.w["study"]), "--port", "70000"]), 2,
        r"--port 70000: must be a port from 0 to 65535"),
    Row("7", "data check on a FIFO named m.csv", _fifo_manifest, 2,
        r"m.csv is not a regular file or folder \(a pipe, socket or device\)"),
    Row("8", "resume with a non-numeric row inside log.csv", _log_with_text, 2,
        r"log.csv line 2: step 'abc' is not a number, so the log cannot be continued"),
    Row("9", "an answer POSTed from another origin", lambda c: _answer(c, Origin="http://evil.example"),
        403, r"came from another site and was refused"),
    Row("9b", "an answer POSTed with a foreign Referer and no Origin",
        lambda c: _answer(c, Referer="http://evil.example/page"), 403, r"another site"),
    Row("9c", "an answer POSTed with Origin: null", lambda c: _answer(c, Origin="null"), 403,
        r"another site"),
    Row("10", "a server error while a reader's page is served", _server_error, 500,
        r"Exception on /r/<redacted> \[GET\]", unchanged=lambda c: [c.w["root"]],
        absent="{token}"),
    Row("11", "run --out inside a folder-layout --data (nothing is trained)",
        lambda c: Cli(["run", "--data", str(c.w["data"]), "--out", str(c.w["data"] / "run"),
                       "--preset", "tiny", *COMMON[1:]]), 2,
        r"--out .*data/run is inside the data folder .*: its images would be read as part of"),
    Row("12", "a manifest whose split column is all 'train'",
        lambda c: _manifest(c, lambda s: "train"), 2,
        r"no 'val' split: kecae trains on train, selects on val and tests on test"),
    Row("12b", "a manifest with an unknown split name",
        lambda c: _manifest(c, lambda s: {"val": "hold"}.get(s, s)), 2,
        r"unknown split 'hold' \(12 image\(s\)\)"),
    Row("13", "--accept-data-problems with an unreadable image", _broken, 2,
        r"1 problem\(s\) in .*broken that --accept-data-problems cannot cover .*scan.png: "
        r"cannot read this image"),
    pytest.param(Row("14", "tune --device cuda without a GPU (no trial is stored)",
        lambda c: Cli(["tune", "--run", str(c.tmp), "--device", "cuda", "--no-progress"]), 2,
        r"--device cuda: no CUDA GPU is available on this machine"), marks=no_gpu),
    Row("15", "a classifier's folder as generate --checkpoint (a KECAE run folder is taken)",
        lambda c: Cli(["generate", "--checkpoint", str(c.w["sup"].parent), "--data",
                       str(c.w["data"]), "--out", str(c.tmp / "g"), *COMMON]), 2,
        r"sup holds no KECAE checkpoint \(looked for kecae/checkpoints/last.pt and "
        r"checkpoints/last.pt\)"),
    Row("15b", "a classifier run folder given as train --supervisor",
        lambda c: Cli(_train(c.w, c.w["data"], c.tmp / "k", "--supervisor",
                             str(c.w["sup"].parent))), 2,
        r"checkpoint .*/sup is a folder, not a file: .*e.g. .*/sup/best.pt"),
    Row("16", "analyze --bootstrap -5",
        lambda c: Cli(["reader-study", "analyze", str(c.w["study"]), "--bootstrap", "-5"]), 2,
        r"--bootstrap -5: must be a whole number from 0 to 100000"),
    Row("17", "training on 1x1 and 8x8 images warns (and trains)",
        lambda c: Proc(_classifier(_tiny_images(c), c.tmp / "c")), 0,
        r"44 image\(s\) smaller than the model input of 32 px on their short side \(the "
        r"smallest 1 x 1 px\): they are upscaled",
        unchanged=lambda c: [c.w["root"], c.tmp / "tiny"]),
    Row("17b", "data check on 1x1 and 8x8 images states the minimum",
        lambda c: Cli(["data", "check", str(_tiny_images(c)), "--no-progress"]), 0,
        r"44 image\(s\) under 32 px on their short side \(the smallest 1 x 1 px\)"),
    Row("18", "a 140 KB PNG of 144 megapixels is refused from its header", _bomb, 2,
        r"big.png: image too large \(12000 x 12000 = 144,000,000 pixels, more than the limit "
        r"of 50,000,000"),
    Row("18b", "the pixel limit is configurable (KECAE_MAX_IMAGE_PIXELS)",
        lambda c: Proc(["data", "check", str(c.w["data"]), "--no-progress"],
                       {"KECAE_MAX_IMAGE_PIXELS": "1000"}), 2,
        r"image too large \(40 x 40 = 1,600 pixels, more than the limit of 1,000"),
]  # fmt: skip


def _snapshot(*folders: Path) -> dict[str, str]:
    """sha256 of every file under the folders, preprocessed-image caches left out."""
    files = {}
    for folder in folders:
        for dirpath, dirs, names in os.walk(folder):
            dirs[:] = [d for d in dirs if d != ".kecae_cache"]
            for name in names:
                p = Path(dirpath) / name
                if p.is_file():  # a FIFO is not: reading it would wait for a writer
                    files[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return files


def _row_id(row) -> str:
    r = row.values[0] if hasattr(row, "values") else row
    return f"{r.number} {r.name}"


@pytest.mark.parametrize("row", ROWS, ids=[_row_id(r) for r in ROWS])
def test_hardening_row(row: Row, world, tmp_path, monkeypatch):
    c = Ctx(world, tmp_path, monkeypatch, [])
    try:
        given = row.make(c)
        watched = (row.unchanged or _everything)(c)
        before = _snapshot(*watched)
        got = given.run()
    finally:
        for undo in reversed(c.cleanups):
            undo()
    text = "\n".join(got.lines)
    assert got.code == row.code, text[-3000:]
    assert "Traceback" not in (got.stderr if isinstance(given, Served) else text)
    if isinstance(given, Cli) and row.code == 2:
        assert len([ln for ln in got.stderr.splitlines() if ln.startswith("kecae ")]) == 1, text
    line = row.line.format(**c.facts)
    assert any(re.search(line, ln) for ln in got.lines), f"{line!r} not in:\n{text[-3000:]}"
    if row.absent is not None:
        assert row.absent.format(**c.facts) not in text
    assert _snapshot(*watched) == before, "a file was changed, added or removed"


# ---------------------------------------------------------------------------------------------
# The mechanisms, beyond the rows
# ---------------------------------------------------------------------------------------------


def _numeric(hint) -> bool:
    """int, float, an optional one, or a list of them."""
    inner = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is not list and len(inner) == 1:
        hint = inner[0]  # X | None
    if typing.get_origin(hint) is list:
        hint = (typing.get_args(hint) or (str,))[0]
    return hint in (int, float)


def test_every_numeric_option_has_a_range():
    """Every number of every command (declared with the option, by the class, or by its
    name) has a range: `serve --threads 0`, `--port 70000` and `--bootstrap -5` were three
    options without one."""
    build_parser()
    assert len(OPTION_CLASSES) >= 15
    missing = []
    for cls in OPTION_CLASSES:
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            option = f.metadata.get("option")
            if option is not None and (option.hidden or option.parse is not None):
                continue  # not an option, or validated by its own parser
            if _numeric(hints[f.name]) and field_range(cls, f) is None:
                missing.append(f"{cls.__name__}.{f.name}")
    assert not missing, f"numeric options without a range: {missing}"


def _generate(w, out: Path) -> list[str]:
    ckpt = str(w["k"] / "checkpoints" / "last.pt")
    where = ["--data", str(w["data"]), "--out", str(out), "--pairs", "2"]
    return ["generate", "--checkpoint", ckpt, *where, *COMMON]


OUTPUT_COMMANDS = {
    "phantoms": lambda w, out: _phantoms(out),
    "data check --json": lambda w, out: ["data", "check", str(w["data"]), "--json", str(out / "j")],
    "train-classifier": lambda w, out: _classifier(w["data"], out),
    "train": lambda w, out: _train(w, w["data"], out),
    "generate": _generate,
    "run": lambda w, out: ["run", "--data", str(w["data"]), "--out", str(out), "--device", "cpu"],
    "reader-study prepare": lambda w, out: _prepare({"gen": w["gen"]}, out / "s"),
}


@pytest.mark.parametrize("command", OUTPUT_COMMANDS)
def test_every_command_refuses_an_unwritable_output(command, world, tmp_path):
    """One writable-output check serves every command that writes: /sys cannot be written."""
    before = _snapshot(world["root"], tmp_path)
    got = Cli(OUTPUT_COMMANDS[command](world, Path("/sys/kecae_unwritable"))).run()
    assert got.code == 2, got.stderr
    refused = rf"cannot write /sys/kecae_unwritable\b.*\({NOT_PERMITTED}\)"
    assert re.search(refused, got.stderr), got.stderr
    assert _snapshot(world["root"], tmp_path) == before


def test_two_real_trainers_one_folder(world, tmp_path):
    """The review's case: a second `kecae train` into a folder a first one trains in is refused
    with the first one's pid; after the first is killed (-9), a third resumes (the kernel has
    dropped the lock; the pid in the file is stale) and the log has no step twice."""
    out = tmp_path / "k"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "kecae", *_train(world, world["data"], out)]

    def trainer(steps: int) -> list[str]:
        return [*base, "--max-steps", str(steps), "--ckpt-every", "5", "--log-every", "1"]

    first = subprocess.Popen(
        trainer(100_000), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints" / "last.pt").exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        assert runlock.holder(out) == first.pid
        second = subprocess.run(trainer(100_000), capture_output=True, text=True, env=env)
        assert second.returncode == 2
        assert f"is in use by process {first.pid}" in second.stderr
    finally:
        first.kill()
        first.wait()
    assert runlock.holder(out) == first.pid  # left behind by kill -9: stale
    at = int(torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"])
    third = subprocess.run(trainer(at + 10), capture_output=True, text=True, env=env)
    assert third.returncode == 0, third.stderr
    assert f"resuming {out} at step {at}" in third.stderr
    assert not (out / runlock.LOCK_NAME).exists()
    steps = [ln.split(",")[0] for ln in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == [str(s) for s in range(1, at + 11)]


def test_lock_is_reentrant_released_at_scope_end_and_takes_over_stale_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    (run / runlock.LOCK_NAME).write_text(f"{dead}\n")  # a killed holder's file
    with runlock.lock_scope():
        runlock.lock_run_folder(run)
        runlock.lock_run_folder(run)  # the same process again: fine
        assert runlock.holder(run) == os.getpid()
        other = subprocess.run(
            [sys.executable, "-c", "import sys; from kecae.runlock import lock_run_folder; "
             "lock_run_folder(sys.argv[1])", str(run)],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        assert other.returncode != 0 and f"in use by process {os.getpid()}" in other.stderr
    assert not (run / runlock.LOCK_NAME).exists()
    runlock.lock_run_folder(tmp_path / "not-yet")  # nothing to lock: no folder is made
    assert not (tmp_path / "not-yet").exists()


@pytest.mark.parametrize(
    "method, host, origin, referer, refused",
    [
        ("POST", "127.0.0.1:8765", "http://127.0.0.1:8765", None, False),
        ("POST", "127.0.0.1:8765", None, "http://127.0.0.1:8765/r/x", False),
        ("POST", "127.0.0.1:8765", None, None, False),  # curl, a script: no browser page
        ("POST", "study.example", "https://study.example", None, False),  # behind a TLS proxy
        ("POST", "127.0.0.1:8765", "http://evil.example", None, True),
        ("POST", "127.0.0.1:8765", "http://127.0.0.1:9999", None, True),  # another port
        ("POST", "127.0.0.1:8765", "null", None, True),
        ("POST", "127.0.0.1:8765", None, "http://evil.example/", True),
        ("DELETE", "127.0.0.1:8765", "http://evil.example", None, True),
        ("GET", "127.0.0.1:8765", "http://evil.example", None, False),  # changes nothing
    ],
)
def test_foreign_origin(method, host, origin, referer, refused):
    assert (foreign_origin(method, host, origin, referer) is not None) is refused


def test_tokens_are_redacted_from_message_arguments_and_tracebacks():
    token = "AbCdEfGhIjKlMnOpQrStUvWx0123"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactTokens())
    log = logging.getLogger("kecae.test.redaction")
    log.addHandler(handler)
    try:
        log.error("Exception on %s [GET]", f"/r/{token}")
        try:
            raise ValueError(f"bad path /r/{token}/answer")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert token not in text and text.count("/r/<redacted>") == 2
