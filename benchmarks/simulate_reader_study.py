"""A simulated three-reader study, end to end through the real commands and the real HTTP API.

    python benchmarks/simulate_reader_study.py --out benchmarks/results [--screenshots DIR]

1. Writes a generated folder the way `kecae generate` lays it out, from built-in phantoms with a
   perfect key exchange (X'1 = the KL-0 knee rendered with the KL-2 donor's joint space and
   osteophytes, X'2 the reverse), so no model has to be trained.
2. `kecae reader-study prepare` (100 pairs, 40 real controls, readers r1 r2 r3).
3. `kecae reader-study serve` in a child process; three simulated readers answer at the same time
   through HTTP, each image read from the page as a browser would, each answer POSTed as a form.
   Reader model: an image conveys its intended (or true) grade with probability q (0.90 for
   generated images, 0.95 for real ones), else the other grade; reader i reports what the image
   conveys with probability r_i (0.97, 0.93, 0.88), so their expected accuracy on generated
   images is q r_i + (1 - q)(1 - r_i) = 87.6 %, 84.4 %, 80.4 %, and their mistakes are partly
   shared (the images that convey the wrong grade), as real readers' are. Realism ~ round(N(4.0,
   0.7)) on generated images and N(4.4, 0.6) on real ones, plus a per-reader offset. Phase 2:
   "match" with probability 0.9 / 0.85 / 0.8 when the image conveys its grade, 0.2 otherwise;
   0.05 on shams.
4. `kecae reader-study analyze STUDY --run RUN` and `kecae report --run RUN`; the table goes to
   ``OUT/reader_study_simulated.txt`` and the numbers to ``OUT/reader_study_simulated.json``.

``--screenshots DIR`` also drives a small second study through headless Chromium (Debian's
``chromium`` + ``chromium-driver``) and saves each screen: phase 1, phase 2, done, error.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import http.client
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kecae.generated_files import MANIFEST_FIELDS
from kecae.phantoms import KEY_FIELDS, render, sample_params

READERS = {"r1": 0.97, "r2": 0.93, "r3": 0.88}  # P(report what the image conveys)
MATCH = {"r1": 0.90, "r2": 0.85, "r3": 0.80}  # P("match") when the image conveys its grade
REALISM_OFFSET = {"r1": 0.1, "r2": 0.0, "r3": -0.2}
Q_GENERATED, Q_REAL = 0.90, 0.95


def make_generated(root: Path, pairs: int, size: int, seed: int) -> Path:
    """Phantom pairs with a ground-truth exchange, in `kecae generate`'s layout."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    data, gen = root / "data", root / "generated"
    for d in (data / "0", data / "2", gen / "0", gen / "2"):
        d.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(pairs):
        p1, p2 = sample_params(0, rng), sample_params(2, rng)
        key1 = {f: getattr(p1, f) for f in KEY_FIELDS}
        key2 = {f: getattr(p2, f) for f in KEY_FIELDS}
        x1, x2 = data / "0" / f"knee{k:04d}_0.png", data / "2" / f"knee{k:04d}_2.png"
        Image.fromarray(render(p1, size)).save(x1)
        Image.fromarray(render(p2, size)).save(x2)
        ex1, ex2 = f"2/pair{k:07d}_kl0to2.png", f"0/pair{k:07d}_kl2to0.png"
        Image.fromarray(render(dataclasses.replace(p1, grade=2, **key2), size)).save(gen / ex1)
        Image.fromarray(render(dataclasses.replace(p2, grade=0, **key1), size)).save(gen / ex2)
        rows.append(
            [
                ex1,
                2,
                "train",
                f"p{k}a",
                p1.side,
                Path(ex1).stem,
                k,
                "kl0_to_kl2",
                x1.stem,
                x2.stem,
                str(x1.resolve()),
                str(x2.resolve()),
                "phantom",
            ]
        )
        rows.append(
            [
                ex2,
                0,
                "train",
                f"p{k}b",
                p2.side,
                Path(ex2).stem,
                k,
                "kl2_to_kl0",
                x2.stem,
                x1.stem,
                str(x2.resolve()),
                str(x1.resolve()),
                "phantom",
            ]
        )
    with open(gen / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(MANIFEST_FIELDS)
        w.writerows(rows)
    return gen


def kecae(*args: str, capture: bool = True) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "kecae", *args],
        cwd=ROOT,
        text=True,
        capture_output=capture,
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"kecae {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


class Served:
    """`kecae reader-study serve STUDY --port 0` in a child process."""

    def __init__(self, study: Path):
        # open for the server's life: closed in stop()
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log")  # noqa: SIM115 (see stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kecae", "reader-study", "serve", str(study), "--port", "0"],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        for _ in range(600):
            m = re.search(r" at (http://\S+?)/ ", Path(self.log.name).read_text())
            if m:
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"the server did not start: {Path(self.log.name).read_text()}")
        self.url = m.group(1)
        parts = urllib.parse.urlsplit(self.url)
        self.host, self.port = parts.hostname, parts.port

    def request(self, method: str, path: str, fields: dict | None = None) -> tuple[int, str]:
        con = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            body = urllib.parse.urlencode(fields) if fields is not None else None
            headers = {"Content-Type": "application/x-www-form-urlencoded"} if fields else {}
            con.request(method, path, body=body, headers=headers)
            resp = con.getresponse()
            return resp.status, resp.read().decode()
        finally:
            con.close()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


def truth(study: Path) -> dict[str, dict]:
    """The simulation's oracle (a real reader has no such access): item key -> its truth."""
    con = sqlite3.connect(study / "study.sqlite")
    con.row_factory = sqlite3.Row
    try:
        return {
            r["id"]: dict(r)
            for r in con.execute(
                "SELECT i.id, i.phase, i.kind, i.grade, im.source FROM items i "
                "JOIN images im ON im.id = i.image_id"
            )
        }
    finally:
        con.close()


def simulate_reader(
    server: Served, link: str, name: str, oracle: dict, seed: int, stats: dict
) -> None:
    rng = np.random.default_rng(seed)
    n = 0
    while True:
        status, page = server.request("GET", link)
        assert status == 200, page
        m = re.search(r'name="item" value="([^"]+)"', page)
        if not m:
            break
        item = oracle[m.group(1)]
        # an image conveys the same thing to every reader, in both phases: seeded by the image
        image_rng = np.random.default_rng(zlib.crc32(Path(item["source"]).name.encode()))
        q = Q_GENERATED if item["kind"] == "exchanged" else Q_REAL
        ok = bool(image_rng.random() < q)
        if item["phase"] == 1:
            seen = item["grade"] if ok else 2 - item["grade"]
            call = seen if rng.random() < READERS[name] else 2 - seen
            mu = (4.0 if item["kind"] == "exchanged" else 4.4) + REALISM_OFFSET[name]
            sd = 0.7 if item["kind"] == "exchanged" else 0.6
            realism = int(np.clip(np.rint(rng.normal(mu, sd)), 1, 5))
            fields = {"item": item["id"], "kl": str(call), "realism": str(realism)}
        else:
            p = 0.05 if item["kind"] == "sham" else (MATCH[name] if ok else 0.2)
            fields = {"item": item["id"], "match": "yes" if rng.random() < p else "no"}
        fields["elapsed_ms"] = str(int(rng.gamma(4.0, 1500.0)))
        status, body = server.request("POST", f"{link}/answer", fields)
        assert status == 303, body
        n += 1
    stats[name] = n


def screenshots(generated: Path, folder: Path, work: Path) -> list[Path]:
    """Phase 1, phase 2, done and error screens of a small study, from headless Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    study = work / "screens"
    kecae(
        "reader-study",
        "prepare",
        "--generated",
        str(generated),
        "--pairs",
        "2",
        "--readers",
        "dr_lee",
        "--out",
        str(study),
        "--seed",
        "3",
    )
    link = next(
        line.split("\t")[1]
        for line in (study / "links.txt").read_text().splitlines()
        if not line.startswith("#")
    )
    os.environ.setdefault("SE_OFFLINE", "true")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or ""
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,800",
        f"--user-data-dir={work / 'chromium-profile'}",
    ):
        opts.add_argument(flag)
    drv = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver") or ""))
    server = Served(study)
    folder.mkdir(parents=True, exist_ok=True)
    shots = []

    def shot(name: str, wait_id: str) -> None:
        WebDriverWait(drv, 15).until(lambda d: d.find_elements(By.ID, wait_id))
        WebDriverWait(drv, 15).until(
            lambda d: d.execute_script(
                "return [...document.images].every(i => i.complete && i.naturalWidth > 0);"
            )
        )
        shots.append(folder / f"reader_study_{name}.png")
        drv.save_screenshot(str(shots[-1]))

    try:
        drv.get(server.url + link)
        drv.find_element(By.CSS_SELECTOR, 'input[name="kl"][value="2"] + span').click()
        drv.find_element(By.CSS_SELECTOR, 'input[name="realism"][value="4"] + span').click()
        shot("phase1", "answer")
        for _ in range(4):  # the rest of phase 1 through HTTP
            _, page = server.request("GET", link)
            item = re.search(r'name="item" value="([^"]+)"', page).group(1)
            server.request("POST", f"{link}/answer", {"item": item, "kl": "0", "realism": "3"})
        drv.get(server.url + link)
        drv.find_element(By.CSS_SELECTOR, 'input[name="match"][value="yes"] + span').click()
        shot("phase2", "answer")
        for _ in range(4):
            _, page = server.request("GET", link)
            item = re.search(r'name="item" value="([^"]+)"', page).group(1)
            server.request("POST", f"{link}/answer", {"item": item, "match": "no"})
        drv.get(server.url + link)
        shot("done", "done")
        drv.get(server.url + "/r/" + "x" * 32)
        shot("error", "error")
    finally:
        drv.quit()
        server.close()
    return shots


def montage(shots: list[Path], path: Path, scale: float = 0.5) -> Path:
    """The screens in a 2 x 2 grid at ``scale``, as a small palette PNG (for the README)."""
    from PIL import Image

    tiles = []
    for p in shots:
        with Image.open(p) as im:
            w, h = im.size
            tiles.append(
                im.convert("RGB").resize((int(w * scale), int(h * scale)), Image.Resampling.LANCZOS)
            )
    tw, th = max(t.size[0] for t in tiles), max(t.size[1] for t in tiles)
    gap = 6
    sheet = Image.new("RGB", (2 * tw + gap, 2 * th + gap), (60, 66, 75))
    for n, t in enumerate(tiles):
        sheet.paste(t, ((n % 2) * (tw + gap), (n // 2) * (th + gap)))
    sheet.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results", help="where the results go")
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--controls", type=int, default=40)
    ap.add_argument("--size", type=int, default=128, help="phantom size, px")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--screenshots", metavar="DIR", help="also save each screen here")
    args = ap.parse_args()
    out = Path(args.out)
    work = Path(tempfile.mkdtemp(prefix="kecae-reader-sim-"))
    t0 = time.perf_counter()
    try:
        # 1. a generated folder, with enough unused pairs for the controls
        generated = make_generated(work, args.pairs + args.controls, args.size, args.seed)
        t_gen = time.perf_counter() - t0
        # 2. the study
        study = work / "study"
        prep = kecae(
            "reader-study",
            "prepare",
            "--generated",
            str(generated),
            "--pairs",
            str(args.pairs),
            "--controls",
            str(args.controls),
            "--readers",
            *READERS,
            "--seed",
            str(args.seed),
            "--out",
            str(study),
        )
        # 3. three readers at once through HTTP
        links = dict(
            line.split("\t")
            for line in (study / "links.txt").read_text().splitlines()
            if not line.startswith("#")
        )
        oracle = truth(study)
        server = Served(study)
        stats: dict[str, int] = {}
        t1 = time.perf_counter()
        try:
            threads = [
                threading.Thread(
                    target=simulate_reader,
                    args=(server, links[name], name, oracle, 1000 * args.seed + i, stats),
                )
                for i, name in enumerate(READERS)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            server.close()
        t_answers = time.perf_counter() - t1
        n_answers = sum(stats.values())
        # 4. analyze, into a run folder, and its report
        run = work / "run"
        table = kecae("reader-study", "analyze", str(study), "--run", str(run))
        kecae("report", "--run", str(run))
        expected = {n: Q_GENERATED * r + (1 - Q_GENERATED) * (1 - r) for n, r in READERS.items()}
        expected_ctrl = {n: Q_REAL * r + (1 - Q_REAL) * (1 - r) for n, r in READERS.items()}
        header = [
            "Simulated three-reader study (benchmarks/simulate_reader_study.py): "
            f"{args.pairs} pairs of {args.size}-px phantoms with a ground-truth key exchange, "
            f"{args.controls} real controls, seed {args.seed}.",
            "Reader model: an image conveys its intended/true grade with p = "
            f"{Q_GENERATED} (generated) / {Q_REAL} (real); reader r_i reports it with p = "
            + ", ".join(f"{n} {r}" for n, r in READERS.items())
            + ".",
            "Expected accuracy on generated images: "
            + ", ".join(f"{n} {100 * v:.1f} %" for n, v in expected.items())
            + "; on controls: "
            + ", ".join(f"{n} {100 * v:.1f} %" for n, v in expected_ctrl.items())
            + ".",
            f"{n_answers} answers POSTed by 3 concurrent readers through the live server in "
            f"{t_answers:.1f} s ({n_answers / t_answers:.0f} answers/s, each committed with "
            f"synchronous=FULL); phantoms {t_gen:.1f} s.",
            "",
            "$ kecae reader-study prepare --generated GEN --pairs "
            f"{args.pairs} --controls {args.controls} --readers r1 r2 r3 --out STUDY",
            re.sub(r"/r/\S+", "/r/<token>", prep).rstrip().replace(str(work), "…"),
            "",
            "$ kecae reader-study analyze STUDY --run RUN",
            table.rstrip().replace(str(work), "…"),
        ]
        out.mkdir(parents=True, exist_ok=True)
        (out / "reader_study_simulated.txt").write_text("\n".join(header) + "\n")
        data = json.loads((study / "analysis.json").read_text())
        data["study"] = "simulated"
        data["simulation"] = {
            "readers": READERS,
            "q_generated": Q_GENERATED,
            "q_real": Q_REAL,
            "expected_accuracy": expected,
            "expected_control_accuracy": expected_ctrl,
            "answers": n_answers,
            "answer_seconds": t_answers,
        }
        (out / "reader_study_simulated.json").write_text(json.dumps(data, indent=2) + "\n")
        print("\n".join(header))
        if args.screenshots:
            shots = screenshots(generated, Path(args.screenshots), work)
            for p in [*shots, montage(shots, Path(args.screenshots) / "reader_study_screens.png")]:
                print(f"screenshot {p}")
        print(
            f"\nwritten {out}/reader_study_simulated.txt and .json "
            f"({time.perf_counter() - t0:.0f} s)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
