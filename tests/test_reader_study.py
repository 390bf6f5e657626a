"""Reader study: prepare (blinding), the web app against a live server (every refusal, killing the
server, several readers at once), and analyze (Table III against scikit-learn / statsmodels).

The browser test is in test_reader_study_browser.py.
"""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest
from reader_study_kit import ROOT, Server, answer_phase1, answers, links, make_generated, schedule

from kecae.evaluation import metrics as M
from kecae.reader_study import analyze as A
from kecae.reader_study.prepare import prepare_study
from kecae.utils import KecaeError

READERS = ["alice", "bob", "carol"]


@pytest.fixture
def study(tmp_path):
    gen = make_generated(tmp_path, pairs=6)
    prepare_study(gen, tmp_path / "study", pairs=3, readers=READERS, controls=4, seed=1)
    return tmp_path / "study"


def _png_chunks(path) -> list[bytes]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, pos = [], 8
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        assert zlib.crc32(kind + data[pos + 8:pos + 8 + n]) == int.from_bytes(
            data[pos + 8 + n:pos + 12 + n], "big")
        out.append(kind)
        pos += 12 + n
    return out


# ------------------------------------------------------------------------------------ prepare

def test_prepare_blinds_the_images(study, tmp_path):
    from PIL import Image

    images = sorted((study / "images").iterdir())
    # 3 pairs: X'1, X'2 and their two recipients; 4 controls
    assert len(images) == 3 * 4 + 4
    con = sqlite3.connect(study / "study.sqlite")
    truth = con.execute("SELECT phase, kind, grade, direction, image_id FROM items").fetchall()
    assert sorted((p, k) for p, k, *_ in truth).count((1, "exchanged")) == 6
    assert sum(k == "control" for _, k, *_ in truth) == 4
    assert sum(k == "sham" for _, k, *_ in truth) == 4
    assert {g for p, k, g, *_ in truth if k == "control"} == {0, 2}
    for path in images:
        # random 16-character ids, pixels only: no text chunk (the source named its label)
        assert len(path.stem) == 16 and path.suffix == ".png"
        assert set(_png_chunks(path)) <= {b"IHDR", b"IDAT", b"IEND"}, path
        with Image.open(path) as im:  # real images resized to the generated size, all grey
            assert (im.size, im.mode) == ((32, 32), "L")
    # generated pixels are kept exactly
    con.row_factory = sqlite3.Row
    for r in con.execute("SELECT im.id, im.source FROM images im JOIN items i "
                         "ON i.image_id = im.id WHERE i.kind = 'exchanged' AND i.phase = 1"):
        with Image.open(r["source"]) as a, Image.open(study / "images" / f"{r['id']}.png") as b:
            assert np.array_equal(np.asarray(a), np.asarray(b))
    # controls are not images of the chosen pairs
    used = {r[0] for r in con.execute("SELECT original_id FROM items "
                                      "WHERE kind = 'exchanged' AND phase = 2")}
    ctrl = {r[0] for r in con.execute("SELECT image_id FROM items WHERE kind = 'control'")}
    sources = dict(con.execute("SELECT id, source FROM images").fetchall())
    assert not {sources[i] for i in used} & {sources[i] for i in ctrl}
    # tokens: only their hashes are stored; links file private
    tokens = [p.rsplit("/", 1)[1] for p in links(study).values()]
    dump = "\n".join(con.iterdump())
    assert len(tokens) == 3 and not any(t in dump for t in tokens)
    assert stat.S_IMODE((study / "links.txt").stat().st_mode) == 0o600
    con.close()


def test_prepare_orders(study):
    orders = {r: schedule(study, r) for r in READERS}
    for rows in orders.values():
        phases = [r["phase"] for r in rows]
        assert phases == sorted(phases) and phases.count(1) == 10 and phases.count(2) == 10
    firsts = {tuple(r["id"] for r in rows) for rows in orders.values()}
    assert len(firsts) == 3  # each reader has their own order
    assert {frozenset(r["id"] for r in rows) for rows in orders.values()} == {
        frozenset(r["id"] for r in orders["alice"])}  # the same images


def test_prepare_is_seeded(tmp_path):
    gen = make_generated(tmp_path, pairs=8)
    chosen = []
    for out in ("a", "b"):
        prepare_study(gen, tmp_path / out, pairs=3, readers=["x"], controls=2, seed=7)
        con = sqlite3.connect(tmp_path / out / "study.sqlite")
        chosen.append(sorted(con.execute("SELECT pair_index, direction FROM items WHERE phase = 1"
                                         ).fetchall(), key=str))
        con.close()
    assert chosen[0] == chosen[1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(pairs=7), "at most 6"),
    (dict(pairs=0), "at least 1"),
    (dict(controls=20), r"needs 10 real KL-0"),
    (dict(controls=-1), "0 or more"),
    (dict(readers=[]), "at least one reader"),
    (dict(readers=["a", "a"]), "distinct"),
    (dict(readers=["../x"]), "not allowed"),
    (dict(readers=["<b>"]), "not allowed"),
])
def test_prepare_refuses(tmp_path, kwargs, message):
    gen = make_generated(tmp_path, pairs=6)
    args = dict(pairs=2, readers=["a"], controls=0) | kwargs
    with pytest.raises(KecaeError, match=message):
        prepare_study(gen, tmp_path / "study", **args)
    assert not (tmp_path / "study").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data", "generated"] or \
        sorted(p.name for p in tmp_path.iterdir()) == ["data", "generated"]


def test_prepare_never_overwrites(study, tmp_path):
    with pytest.raises(KecaeError, match="not empty"):
        prepare_study(tmp_path / "generated", study, pairs=1, readers=["a"])
    with pytest.raises(KecaeError, match="manifest.csv not found"):
        prepare_study(tmp_path / "data", tmp_path / "other", pairs=1, readers=["a"])


# ------------------------------------------------------------------------------ the web app

@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A served study: alice in phase 1 with no answer, bob done with phase 1."""
    tmp = tmp_path_factory.mktemp("live")
    gen = make_generated(tmp, pairs=4)
    study = tmp / "study"
    prepare_study(gen, study, pairs=2, readers=READERS, controls=2, seed=0)
    with Server(study) as server:
        link = links(study)
        answer_phase1(server, link["bob"], 6)
        yield server, study, link


def _case_paths(study, link):
    alice, bob = schedule(study, "alice"), schedule(study, "bob")
    first = alice[0]
    phase2_original = next(r["original_id"] for r in alice
                           if r["phase"] == 2 and r["kind"] == "exchanged")
    return dict(
        alice=link["alice"], bob=link["bob"], unknown="/r/" + "A" * 32,
        item=first["id"], second=alice[1]["id"],
        phase2_item=next(r["id"] for r in alice if r["phase"] == 2),
        bob_phase2=next(r["id"] for r in bob if r["phase"] == 2 and r["position"] == 6),
        image=first["image_id"], phase2_original=phase2_original, nobody="B" * 16,
    )


FORM = "application/x-www-form-urlencoded"
GOOD = "item={item}&kl=2&realism=4"
# (what, method, path, body, content type, status): every request must be refused
BAD_REQUESTS = [
    ("unknown token", "GET", "{unknown}", None, None, 404),
    ("malformed token", "GET", "/r/abc", None, None, 404),
    ("token with a dot", "GET", "/r/" + "a" * 20 + ".x", None, None, 404),
    ("unknown token, answer", "POST", "{unknown}/answer", GOOD, FORM, 404),
    ("unknown token, image", "GET", "{unknown}/image/{image}", None, None, 404),
    ("realism 0", "POST", "{alice}/answer", "item={item}&kl=2&realism=0", FORM, 400),
    ("realism 6", "POST", "{alice}/answer", "item={item}&kl=2&realism=6", FORM, 400),
    ("realism 3.5", "POST", "{alice}/answer", "item={item}&kl=2&realism=3.5", FORM, 400),
    ("realism text", "POST", "{alice}/answer", "item={item}&kl=2&realism=four", FORM, 400),
    ("realism missing", "POST", "{alice}/answer", "item={item}&kl=2", FORM, 400),
    ("KL-1 call", "POST", "{alice}/answer", "item={item}&kl=1&realism=4", FORM, 400),
    ("KL call missing", "POST", "{alice}/answer", "item={item}&realism=4", FORM, 400),
    ("negative time", "POST", "{alice}/answer", GOOD + "&elapsed_ms=-5", FORM, 400),
    ("phase-2 answer maybe", "POST", "{bob}/answer", "item={bob_phase2}&match=maybe", FORM, 400),
    ("phase-2 answer missing", "POST", "{bob}/answer", "item={bob_phase2}", FORM, 400),
    ("image not in the set", "GET", "{alice}/image/{nobody}", None, None, 404),
    ("phase-2 image in phase 1", "GET", "{alice}/image/{phase2_original}", None, None, 404),
    ("item not in the set", "POST", "{alice}/answer", "item={nobody}&kl=2&realism=4", FORM, 404),
    ("item missing", "POST", "{alice}/answer", "kl=2&realism=4", FORM, 404),
    ("phase 2 before phase 1", "POST", "{alice}/answer", "item={phase2_item}&match=yes", FORM,
     409),
    ("out of order", "POST", "{alice}/answer", "item={second}&kl=2&realism=4", FORM, 409),
    ("GET an answer", "GET", "{alice}/answer", None, None, 405),
    ("PUT an answer", "PUT", "{alice}/answer", GOOD, FORM, 405),
    ("DELETE the reader", "DELETE", "{alice}", None, None, 405),
    ("POST an image", "POST", "{alice}/image/{image}", "", FORM, 405),
    ("JSON body", "POST", "{alice}/answer", '{{"item": "{item}", "kl": 2, "realism": 4}}',
     "application/json", 415),
    ("no content type", "POST", "{alice}/answer", GOOD, None, 415),
    ("huge body", "POST", "{alice}/answer", GOOD + "&pad=" + "x" * 20000, FORM, 413),
    # paths that try to leave the study folder or reach files that are never served
    ("dot-dot in an image id", "GET", "{alice}/image/../../study.sqlite", None, None, 404),
    ("encoded dot-dot", "GET", "{alice}/image/..%2F..%2Fstudy.sqlite", None, None, 404),
    ("encoded dots", "GET", "{alice}/image/%2e%2e%2fstudy.sqlite", None, None, 404),
    ("image file name", "GET", "{alice}/image/{image}.png", None, None, 404),
    ("static dot-dot", "GET", "/static/../app.py", None, None, 404),
    ("static encoded dot-dot", "GET", "/static/..%2fapp.py", None, None, 404),
    ("static absolute", "GET", "/static//etc/passwd", None, None, 404),
    ("the database", "GET", "/study.sqlite", None, None, 404),
    ("the links", "GET", "/links.txt", None, None, 404),
    ("the images folder", "GET", "/images/{image}.png", None, None, 404),
]


@pytest.mark.parametrize("what, method, path, body, ctype, status", BAD_REQUESTS,
                         ids=[c[0] for c in BAD_REQUESTS])
def test_bad_requests_are_refused(live, what, method, path, body, ctype, status):
    server, study, link = live
    p = _case_paths(study, link)
    headers = {"Content-Type": ctype} if ctype else {}
    if body is not None and ctype is None:
        headers["Content-Type"] = ""
    got, hdrs, content = server.request(method, path.format(**p),
                                        body.format(**p) if body is not None else None, headers)
    assert got == status, content[:300]
    assert b"SQLite format" not in content and b"import" not in content
    if got != 413:
        assert hdrs["content-type"].startswith("text/html")
        assert f"{status}".encode() in content  # the page says what happened
    # a refusal changes nothing: alice still has no answer, bob only his phase-1 answers
    assert {(r["name"], r["position"]) for r in answers(study)} == {("bob", i) for i in range(6)}


def test_good_requests(live):
    server, study, link = live
    p = _case_paths(study, link)
    status, hdrs, body = server.request("GET", f"{p['alice']}/image/{p['image']}")
    assert status == 200 and hdrs["content-type"] == "image/png" and body[:4] == b"\x89PNG"
    assert "last-modified" not in hdrs and "etag" not in hdrs
    # bob is in phase 2: its originals are now in his set
    status, _, _ = server.request("GET", f"{p['bob']}/image/{p['phase2_original']}")
    assert status == 200
    status, hdrs, body = server.request("GET", p["alice"])
    assert status == 200 and hdrs["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in hdrs["content-security-policy"]
    page = body.decode()
    assert "Phase 1 of 2 · image 1 of 6" in page and "0 of 12 answers saved" in page
    # the phase-1 page names no label, direction, kind or source
    for word in ("KL-0 →", "kl0_to", "kl2_to", "exchanged", "control", "sham", "pair", "knee0",
                 "knee2"):
        assert word not in page, word
    status, _, body = server.request("GET", p["bob"])
    assert "Phase 2 of 2 · comparison 1 of 6" in body.decode()
    status, hdrs, body = server.request("GET", p["unknown"], headers={"Accept": "application/json"})
    assert status == 404 and json.loads(body)["error"] == 404
    for path in ("/", "/static/reader.css", "/static/reader.js"):
        assert server.request("GET", path)[0] == 200, path


def test_answers_are_final_and_resubmission_is_idempotent(study):
    link = links(study)["alice"]
    with Server(study) as server:
        _, item = server.current(link)
        form = {"item": item, "kl": "0", "realism": "2"}
        assert server.post(f"{link}/answer", form)[0] == 303
        assert server.post(f"{link}/answer", form)[0] == 303  # a double click: same answer, ok
        status, _, body = server.post(f"{link}/answer", dict(form, kl="2"))
        assert status == 409 and b"final" in body
        status, _, body = server.post(f"{link}/answer", form, Accept="application/json")
        assert status == 200 and json.loads(body) == {"saved": True, "duplicate": True,
                                                      "answered": 1, "total": 20}
    rows = answers(study)
    assert [(r["name"], r["position"], r["kl_call"], r["realism"]) for r in rows] == [
        ("alice", 0, 0, 2)]


def test_killed_server_loses_no_answer(study):
    """SIGKILL while a reader answers: every acknowledged answer is in the database."""
    link = links(study)["carol"]
    acknowledged: list[int] = []
    server = Server(study)
    stop = threading.Event()

    def reader():
        try:
            while not stop.is_set():
                phase, item = server.current(link)
                if phase != 1:
                    return
                status, _, _ = server.post(f"{link}/answer",
                                           {"item": item, "kl": "2", "realism": "3"})
                if status == 303:
                    acknowledged.append(len(acknowledged))
        except (OSError, http.client.HTTPException):  # the server is gone, maybe mid-reply
            pass

    t = threading.Thread(target=reader)
    t.start()
    deadline = time.monotonic() + 20
    while len(acknowledged) < 4 and time.monotonic() < deadline:
        time.sleep(0.005)
    server.kill()  # mid-session, possibly mid-request
    stop.set()
    t.join(timeout=20)
    server.stop()
    saved = [r for r in answers(study) if r["name"] == "carol"]
    assert len(acknowledged) >= 4
    # every acknowledged answer is there; at most the one in flight was saved unacknowledged
    assert len(acknowledged) <= len(saved) <= len(acknowledged) + 1
    assert [r["position"] for r in saved] == list(range(len(saved)))
    # the reader comes back and continues where they were
    with Server(study) as again:
        _, _, body = again.request("GET", link)
        assert f"image {len(saved) + 1} of 10" in body.decode()


def test_several_readers_at_once(study):
    link = links(study)
    errors: list[str] = []
    with Server(study) as server:
        def reader(name: str, kl: str) -> None:
            try:
                answer_phase1(server, link[name], 10, kl=kl)
            except Exception as exc:
                errors.append(f"{name}: {exc!r}")

        # and one reader sending the same answer twice at the same moment (two tabs)
        def twice() -> None:
            try:
                _, item = server.current(link["alice"])
                for _ in range(2):
                    server.post(f"{link['alice']}/answer", {"item": item, "kl": "0",
                                                             "realism": "1"})
            except Exception as exc:
                errors.append(f"twice: {exc!r}")

        threads = [threading.Thread(target=reader, args=(n, k))
                   for n, k in (("bob", "0"), ("carol", "2"))]
        threads += [threading.Thread(target=twice) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert not errors
    rows = answers(study)
    assert sum(r["name"] == "bob" for r in rows) == sum(r["name"] == "carol" for r in rows) == 10
    assert [(r["position"], r["kl_call"]) for r in rows if r["name"] == "alice"] == [(0, 0)]


def test_serve_binds_localhost_by_default(study):
    from kecae.cli import build_parser

    args = build_parser().parse_args(["reader-study", "serve", str(study)])
    assert args.host == "127.0.0.1"
    with Server(study) as server:
        assert server.host == "127.0.0.1"
        others = {ip for *_, (ip, *_) in socket.getaddrinfo(socket.gethostname(), None,
                                                             socket.AF_INET)}
        for ip in others - {"127.0.0.1"}:
            if ip.startswith("127."):
                continue
            with pytest.raises(OSError):
                socket.create_connection((ip, server.port), timeout=2).close()


# ---------------------------------------------------------------------------------- analyze

def _fill(study, calls: dict[str, dict[str, tuple]]) -> None:
    """Write answers straight into the database: reader -> item id -> (kl, realism, match)."""
    con = sqlite3.connect(study / "study.sqlite")
    with con:
        for name, per_item in calls.items():
            rid = con.execute("SELECT id FROM readers WHERE name = ?", (name,)).fetchone()[0]
            for item, (kl, realism, match) in per_item.items():
                con.execute("INSERT INTO answers (reader_id, item_id, kl_call, realism, match, "
                            "answered_at) VALUES (?, ?, ?, ?, ?, 'now')",
                            (rid, item, kl, realism, match))
    con.close()


def test_analyze_against_sklearn_and_statsmodels(study):
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    items = schedule(study, "alice")  # the same items for everyone
    p1 = sorted((r for r in items if r["phase"] == 1), key=lambda r: r["id"])
    p2 = sorted((r for r in items if r["phase"] == 2), key=lambda r: r["id"])
    rng = np.random.default_rng(3)
    truth = np.array([r["grade"] for r in p1])
    kinds = np.array([r["kind"] for r in p1])
    calls, realism = {}, {}
    calls["alice"] = truth.copy()  # always right
    calls["bob"] = np.where(truth == 0, 2, truth)  # always KL-2
    calls["carol"] = np.where(rng.random(len(truth)) < 0.7, truth, 2 - truth)
    fill: dict[str, dict] = {}
    for name in READERS:
        realism[name] = rng.integers(1, 6, len(truth))
        fill[name] = {r["id"]: (int(calls[name][i]), int(realism[name][i]), None)
                      for i, r in enumerate(p1)}
        # phase 2: alice says yes to everything, the others answer half of it
        for i, r in enumerate(p2):
            if name == "alice" or i % 2 == 0:
                fill[name][r["id"]] = (None, None, int(name == "alice" or r["kind"] != "sham"))
    _fill(study, fill)
    res = A.analyze_study(study, n_boot=200, seed=0)
    rows = {r.reader: r for r in res.readers}

    gen = kinds == "exchanged"
    for name in READERS:
        c, t, s = calls[name], truth, realism[name]
        ok = c == t
        assert rows[name].accuracy["all"].value == pytest.approx(ok[gen].mean())
        assert rows[name].accuracy["KL-0"].value == pytest.approx(ok[gen & (t == 0)].mean())
        assert rows[name].accuracy["KL-2"].value == pytest.approx(ok[gen & (t == 2)].mean())
        assert rows[name].realism["KL-2"].mean == pytest.approx(s[gen & (t == 2)].mean())
        assert rows[name].control_accuracy["all"].value == pytest.approx(ok[~gen].mean())
        assert rows[name].control_realism["all"].mean == pytest.approx(s[~gen].mean())
        lo, hi = rows[name].accuracy["all"].ci_low, rows[name].accuracy["all"].ci_high
        assert lo <= rows[name].accuracy["all"].value <= hi
    assert rows["alice"].accuracy["all"].value == 1.0
    assert rows["bob"].accuracy["KL-0"].value == 0.0 and rows["bob"].accuracy["KL-2"].value == 1
    assert rows["alice"].match_rate["all"].value == 1.0
    assert rows["alice"].sham_match_rate.value == 1.0
    assert rows["bob"].sham_match_rate.value in (0.0, None)
    assert rows["alice"].answered == rows["alice"].total == 20
    assert res.overall.accuracy["all"].n == 3 * gen.sum()
    assert res.overall.accuracy["all"].value == pytest.approx(
        np.mean([(calls[n] == truth)[gen].mean() for n in READERS]))

    kappas = {(g.statistic, tuple(g.readers), g.images): g for g in res.agreement}
    for a, b in (("alice", "bob"), ("alice", "carol"), ("bob", "carol")):
        g = kappas[("cohen_kappa", (a, b), "generated")]
        assert g.kappa == pytest.approx(cohen_kappa_score(calls[a][gen], calls[b][gen]))
        assert g.n_items == gen.sum() and g.ci_low <= g.kappa <= g.ci_high
    table, _ = aggregate_raters(np.stack([calls[n][gen] for n in READERS], axis=1))
    g = kappas[("fleiss_kappa", tuple(READERS), "generated")]
    assert g.kappa == pytest.approx(sm_fleiss(table, method="fleiss"))
    assert g.ci_low <= g.kappa <= g.ci_high
    assert ("fleiss_kappa", tuple(READERS), "control") in kappas
    # seeded: the same intervals again
    again = A.analyze_study(study, n_boot=200, seed=0)
    assert again.to_dict() == res.to_dict()


@pytest.mark.parametrize("seed", range(5))
def test_fleiss_kappa_matches_statsmodels(seed):
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    rng = np.random.default_rng(seed)
    ratings = rng.choice([0, 2, 3], size=(rng.integers(5, 40), rng.integers(2, 7)),
                         p=[0.5, 0.3, 0.2])
    table, _ = aggregate_raters(ratings)
    assert M.fleiss_kappa(ratings) == pytest.approx(sm_fleiss(table, method="fleiss"))


def test_kappa_edges():
    assert np.isnan(M.cohen_kappa([0, 0, 0], [0, 0, 0]))  # one category throughout: undefined
    assert M.cohen_kappa([0, 0, 2], [0, 0, 2]) == 1.0
    assert A.kappa(np.array([[0, 2, 2, 0], [0, 2, 0, 0]])) == pytest.approx(
        M.cohen_kappa([0, 2, 2, 0], [0, 2, 0, 0]))
    k, _, _, n = A.agreement(np.array([[0, 2, np.nan, 0], [0, 2, 2, np.nan]]), n_boot=50)
    assert n == 2 and k == 1.0  # only the items both readers called


def test_analyze_cli_writes_json_csv_metrics_and_report(study, tmp_path):
    import csv

    from kecae.report import write_report

    link = links(study)
    with Server(study) as server:
        for name, kl in (("alice", "2"), ("bob", "2"), ("carol", "0")):
            answer_phase1(server, link[name], 10, kl=kl, realism="4")
    run = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "kecae", "reader-study", "analyze", str(study),
                          "--run", str(run), "--bootstrap", "100"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "Table III" in out.stdout and "all readers" in out.stdout
    assert "Fleiss' κ" in out.stdout and "Cohen's κ, alice – bob" in out.stdout
    data = json.loads((study / "analysis.json").read_text())
    assert [r["reader"] for r in data["readers"]] == READERS
    assert data["readers"][0]["realism"]["all"]["mean"] == 4.0
    with open(study / "analysis.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["statistic"] for r in rows} == {"accuracy", "realism_mean", "match_rate",
                                              "cohen_kappa", "fleiss_kappa"}
    acc = next(r for r in rows if r["statistic"] == "accuracy" and r["reader"] == "carol"
               and r["images"] == "generated" and r["label"] == "KL-0")
    assert float(acc["value"]) == 1.0 and acc["n"] == "3"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["reader_study"]["readers"][2]["reader"] == "carol"
    page = write_report(run).read_text()
    assert "Reader study" in page and "Cohen" in page and "alice" in page
    assert "reader_study.readers" not in page  # laid out, not dumped as a raw entry


def test_help_stays_light():
    code = ("import sys, kecae.cli; kecae.cli.build_parser(); "
            "print(sorted(m for m in ('flask', 'torch', 'sklearn', 'waitress') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=False)
    assert out.stdout.strip() == "[]", out.stderr
