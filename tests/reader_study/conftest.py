"""The reader-study tests' kit (fixture ``kit``): a small generated folder, a live server, HTTP
calls; and ``study``, a prepared study of it.

The generated folder imitates `kecae generate` (same manifest columns) without a model: random
grey PNGs, each carrying a PNG text chunk that names its label (prepare must strip it), and
real source images of another size than the generated ones (prepare must resize them).
"""

from __future__ import annotations

import csv
import http.client
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from kecae.generated_files import MANIFEST_FIELDS
from kecae.reader_study.prepare import prepare_study

ROOT = Path(__file__).resolve().parents[2]
READERS = ["alice", "bob", "carol"]


def make_generated(root: Path, pairs: int = 6, size: int = 32, seed: int = 0) -> Path:
    """``root``/generated (pairs x (X'1, X'2) + manifest.csv) and ``root``/data (sources)."""
    rng = np.random.default_rng(seed)
    data, gen = root / "data", root / "generated"
    rows = []
    for k in range(pairs):
        src = {}
        for g in (0, 2):
            p = data / str(g) / f"knee{g}_{k:03d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (size + 8, size + 4), dtype=np.uint8)).save(p)
            src[g] = p
        for direction, grade, rec, don, name in (
            ("kl0_to_kl2", 2, src[0], src[2], f"2/pair{k:07d}_kl0to2.png"),
            ("kl2_to_kl0", 0, src[2], src[0], f"0/pair{k:07d}_kl2to0.png"),
        ):
            p = gen / name
            p.parent.mkdir(parents=True, exist_ok=True)
            info = PngImagePlugin.PngInfo()
            info.add_text("label", f"KL-{grade} {direction}")
            Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(
                p, pnginfo=info
            )
            rows.append(
                [
                    name,
                    grade,
                    "train",
                    f"p{k}",
                    "R",
                    Path(name).stem,
                    k,
                    direction,
                    rec.stem,
                    don.stem,
                    str(rec.resolve()),
                    str(don.resolve()),
                    "0" * 64,
                ]
            )
    with open(gen / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(MANIFEST_FIELDS)
        w.writerows(rows)
    return gen


def links(study: Path) -> dict[str, str]:
    """Reader name -> link path, from STUDY/links.txt."""
    out = {}
    for line in (study / "links.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, path = line.split("\t")
            out[name] = path
    return out


def answers(study: Path) -> list[sqlite3.Row]:
    """Every answer in the database, with the reader's name and the item's schedule position."""
    con = sqlite3.connect(study / "study.sqlite")
    con.row_factory = sqlite3.Row
    try:
        return con.execute(
            "SELECT r.name, s.position, a.item_id, a.kl_call, a.realism, a.match, a.elapsed_ms "
            "FROM answers a JOIN readers r ON r.id = a.reader_id "
            "JOIN schedule s ON s.reader_id = a.reader_id AND s.item_id = a.item_id "
            "ORDER BY r.name, s.position"
        ).fetchall()
    finally:
        con.close()


def schedule(study: Path, reader: str) -> list[sqlite3.Row]:
    """The reader's items in order, with their truth (for tests only)."""
    con = sqlite3.connect(study / "study.sqlite")
    con.row_factory = sqlite3.Row
    try:
        return con.execute(
            "SELECT s.position, i.* FROM schedule s JOIN items i ON i.id = s.item_id "
            "JOIN readers r ON r.id = s.reader_id WHERE r.name = ? ORDER BY s.position",
            (reader,),
        ).fetchall()
    finally:
        con.close()


class Server:
    """``kecae reader-study serve STUDY --port 0`` in a child process."""

    def __init__(self, study: Path, *extra: str):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # output goes to a file: a pipe nobody reads would fill up and block the server
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop())
            "w+", prefix="kecae-serve-", suffix=".log"
        )
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kecae",
                "reader-study",
                "serve",
                str(study),
                "--port",
                "0",
                *extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 30
        while True:  # "reader study STUDY at http://HOST:PORT/ ..."
            m = re.search(r" at (http://\S+?)/ ", Path(self.log.name).read_text())
            if m:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"the server did not start: {self.output()}")
            time.sleep(0.05)
        self.url = m.group(1)
        parts = urllib.parse.urlsplit(self.url)
        self.host, self.port = parts.hostname, parts.port
        deadline = time.monotonic() + 10
        while True:  # listening is announced before serving starts
            try:
                self.request("GET", "/")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request with the path sent exactly as given (no normalisation)."""
        con = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            con.request(method, path, body=body, headers=headers or {})
            resp = con.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            con.close()

    def post(self, path: str, fields: dict[str, str], **kw) -> tuple[int, dict[str, str], bytes]:
        return self.request(
            "POST",
            path,
            urllib.parse.urlencode(fields),
            {"Content-Type": "application/x-www-form-urlencoded", **kw},
        )

    def current(self, link: str) -> tuple[int | None, str | None]:
        """(phase, item key) of the reader's next image, from the page; (None, None) when done."""
        status, _, body = self.request("GET", link)
        assert status == 200, body
        page = body.decode()
        m = re.search(r'name="item" value="([^"]+)"', page)
        if not m:
            return None, None
        return int(re.search(r"Phase (\d) of", page).group(1)), m.group(1)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def output(self) -> str:
        """What the server printed so far."""
        return Path(self.log.name).read_text()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def answer_phase1(server: Server, link: str, n: int, kl: str = "2", realism: str = "4") -> None:
    """Answer the reader's next ``n`` phase-1 images through the HTTP API."""
    for _ in range(n):
        phase, item = server.current(link)
        assert phase == 1
        status, _, body = server.post(
            f"{link}/answer", {"item": item, "kl": kl, "realism": realism}
        )
        assert status == 303, body


class ReaderStudyKit:
    """The helpers above, handed to the tests by the ``kit`` fixture."""

    ROOT = ROOT
    READERS = READERS
    Server = Server
    make_generated = staticmethod(make_generated)
    links = staticmethod(links)
    answers = staticmethod(answers)
    schedule = staticmethod(schedule)
    answer_phase1 = staticmethod(answer_phase1)


@pytest.fixture(scope="session")
def kit() -> type[ReaderStudyKit]:
    return ReaderStudyKit


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A prepared study: 3 pairs and 4 controls for three readers."""
    gen = make_generated(tmp_path, pairs=6)
    prepare_study(gen, tmp_path / "study", pairs=3, readers=READERS, controls=4, seed=1)
    return tmp_path / "study"
