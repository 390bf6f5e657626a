"""The reader-study web app (kecae.reader_study.app): bad requests refused, answers final and
committed one by one, a killed server loses nothing, several readers at once."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest

from kecae.reader_study.prepare import prepare_study


@pytest.fixture(scope="module")
def live(tmp_path_factory, kit):
    """A served study: alice in phase 1 with no answer, bob done with phase 1."""
    tmp = tmp_path_factory.mktemp("live")
    gen = kit.make_generated(tmp, pairs=4)
    study = tmp / "study"
    prepare_study(gen, study, pairs=2, readers=kit.READERS, controls=2, seed=0)
    with kit.Server(study) as server:
        link = kit.links(study)
        kit.answer_phase1(server, link["bob"], 6)
        yield server, study, link


def _case_paths(study, link, kit):
    alice, bob = kit.schedule(study, "alice"), kit.schedule(study, "bob")
    first = alice[0]
    phase2_original = next(
        r["original_id"] for r in alice if r["phase"] == 2 and r["kind"] == "exchanged"
    )
    return dict(
        alice=link["alice"],
        bob=link["bob"],
        unknown="/r/" + "A" * 32,
        item=first["id"],
        second=alice[1]["id"],
        phase2_item=next(r["id"] for r in alice if r["phase"] == 2),
        bob_phase2=next(r["id"] for r in bob if r["phase"] == 2 and r["position"] == 6),
        image=first["image_id"],
        phase2_original=phase2_original,
        nobody="B" * 16,
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
    ("phase 2 before phase 1", "POST", "{alice}/answer", "item={phase2_item}&match=yes", FORM, 409),
    ("out of order", "POST", "{alice}/answer", "item={second}&kl=2&realism=4", FORM, 409),
    ("GET an answer", "GET", "{alice}/answer", None, None, 405),
    ("PUT an answer", "PUT", "{alice}/answer", GOOD, FORM, 405),
    ("DELETE the reader", "DELETE", "{alice}", None, None, 405),
    ("POST an image", "POST", "{alice}/image/{image}", "", FORM, 405),
    (
        "JSON body",
        "POST",
        "{alice}/answer",
        '{{"item": "{item}", "kl": 2, "realism": 4}}',
        "application/json",
        415,
    ),
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


@pytest.mark.parametrize(
    "what, method, path, body, ctype, status", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_requests_are_refused(live, what, method, path, body, ctype, status, kit):
    server, study, link = live
    p = _case_paths(study, link, kit)
    headers = {"Content-Type": ctype} if ctype else {}
    if body is not None and ctype is None:
        headers["Content-Type"] = ""
    got, hdrs, content = server.request(
        method, path.format(**p), body.format(**p) if body is not None else None, headers
    )
    assert got == status, content[:300]
    assert b"SQLite format" not in content and b"import" not in content
    if got != 413:
        assert hdrs["content-type"].startswith("text/html")
        assert f"{status}".encode() in content  # the page says what happened
    # a refusal changes nothing: alice still has no answer, bob only his phase-1 kit.answers
    assert {(r["name"], r["position"]) for r in kit.answers(study)} == {
        ("bob", i) for i in range(6)
    }


def test_good_requests(live, kit):
    server, study, link = live
    p = _case_paths(study, link, kit)
    status, hdrs, body = server.request("GET", f"{p['alice']}/image/{p['image']}")
    assert status == 200 and hdrs["content-type"] == "image/png" and body[:4] == b"\x89PNG"
    assert "last-modified" not in hdrs and "etag" not in hdrs
    # bob is in phase 2: its originals are now in his set
    status, _, _ = server.request("GET", f"{p['bob']}/image/{p['phase2_original']}")
    assert status == 200
    status, hdrs, body = server.request("GET", p["alice"])
    assert status == 200 and hdrs["referrer-policy"] == "same-origin"
    assert "default-src 'none'" in hdrs["content-security-policy"]
    page = body.decode()
    assert "Phase 1 of 2 · image 1 of 6" in page and "0 of 12 answers saved" in page
    # the phase-1 page names no label, direction, kind or source
    for word in (
        "KL-0 →",
        "kl0_to",
        "kl2_to",
        "exchanged",
        "control",
        "sham",
        "pair",
        "knee0",
        "knee2",
    ):
        assert word not in page, word
    status, _, body = server.request("GET", p["bob"])
    assert "Phase 2 of 2 · comparison 1 of 6" in body.decode()
    status, hdrs, body = server.request("GET", p["unknown"], headers={"Accept": "application/json"})
    assert status == 404 and json.loads(body)["error"] == 404
    for path in ("/", "/static/reader.css", "/static/reader.js"):
        assert server.request("GET", path)[0] == 200, path


def test_answers_are_final_and_resubmission_is_idempotent(study, kit):
    link = kit.links(study)["alice"]
    with kit.Server(study) as server:
        _, item = server.current(link)
        form = {"item": item, "kl": "0", "realism": "2"}
        assert server.post(f"{link}/answer", form)[0] == 303
        assert server.post(f"{link}/answer", form)[0] == 303  # a double click: same answer, ok
        status, _, body = server.post(f"{link}/answer", dict(form, kl="2"))
        assert status == 409 and b"final" in body
        status, _, body = server.post(f"{link}/answer", form, Accept="application/json")
        assert status == 200 and json.loads(body) == {
            "saved": True,
            "duplicate": True,
            "answered": 1,
            "total": 20,
        }
    rows = kit.answers(study)
    assert [(r["name"], r["position"], r["kl_call"], r["realism"]) for r in rows] == [
        ("alice", 0, 0, 2)
    ]


def test_killed_server_loses_no_answer(study, kit):
    """SIGKILL while a reader answers: every acknowledged answer is in the database."""
    link = kit.links(study)["carol"]
    acknowledged: list[int] = []
    server = kit.Server(study)
    stop = threading.Event()

    def reader():
        try:
            while not stop.is_set():
                phase, item = server.current(link)
                if phase != 1:
                    return
                status, _, _ = server.post(
                    f"{link}/answer", {"item": item, "kl": "2", "realism": "3"}
                )
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
    saved = [r for r in kit.answers(study) if r["name"] == "carol"]
    assert len(acknowledged) >= 4
    # every acknowledged answer is there; at most the one in flight was saved unacknowledged
    assert len(acknowledged) <= len(saved) <= len(acknowledged) + 1
    assert [r["position"] for r in saved] == list(range(len(saved)))
    # the reader comes back and continues where they were
    with kit.Server(study) as again:
        _, _, body = again.request("GET", link)
        assert f"image {len(saved) + 1} of 10" in body.decode()


def test_several_readers_at_once(study, kit):
    link = kit.links(study)
    errors: list[str] = []
    with kit.Server(study) as server:

        def reader(name: str, kl: str) -> None:
            try:
                kit.answer_phase1(server, link[name], 10, kl=kl)
            except Exception as exc:  # noqa: BLE001 (collected and asserted empty below)
                errors.append(f"{name}: {exc!r}")

        # and one reader sending the same answer twice at the same moment (two tabs showing
        # the same image: the item is read once, before either tab answers)
        _, item = server.current(link["alice"])

        def twice() -> None:
            try:
                for _ in range(2):
                    server.post(
                        f"{link['alice']}/answer", {"item": item, "kl": "0", "realism": "1"}
                    )
            except Exception as exc:  # noqa: BLE001 (collected and asserted empty below)
                errors.append(f"twice: {exc!r}")

        threads = [
            threading.Thread(target=reader, args=(n, k)) for n, k in (("bob", "0"), ("carol", "2"))
        ]
        threads += [threading.Thread(target=twice) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert not errors
    rows = kit.answers(study)
    assert sum(r["name"] == "bob" for r in rows) == sum(r["name"] == "carol" for r in rows) == 10
    assert [(r["position"], r["kl_call"]) for r in rows if r["name"] == "alice"] == [(0, 0)]


def test_serve_binds_localhost_by_default(study, kit):
    from kecae.cli import build_parser
    from kecae.cli.options import from_args
    from kecae.reader_study.config import ServeConfig

    args = build_parser().parse_args(["reader-study", "serve", str(study)])
    assert from_args(ServeConfig, args).host == "127.0.0.1"
    with kit.Server(study) as server:
        assert server.host == "127.0.0.1"
        others = {
            ip for *_, (ip, *_) in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        }
        for ip in others - {"127.0.0.1"}:
            if ip.startswith("127."):
                continue
            with pytest.raises(OSError):
                socket.create_connection((ip, server.port), timeout=2).close()
