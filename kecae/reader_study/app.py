"""The reader-study web app (Flask) and its server (waitress).

Routes (``<token>`` is the reader's personal token; ids are random, opaque strings)::

    GET  /                          a short "open your personal link" page
    GET  /r/<token>                 the reader's next image (phase 1 or 2), or the done page
    POST /r/<token>/answer          one answer, as an HTML form; 303 back to /r/<token>
    GET  /r/<token>/image/<id>      a PNG of the reader's set, never a path
    GET  /static/...                the pages' CSS and JavaScript (package data)

Answers. Each answer is one ``BEGIN IMMEDIATE ... COMMIT`` transaction (WAL, synchronous=FULL)
and the reply — the redirect to the next image — is sent only after the commit: whatever the
reader has seen acknowledged is on disk. Images are answered in the reader's order; an answer
is final. Sending the same answer for the same image again (a double click, a retried request)
changes nothing and is acknowledged; a different answer for an answered image is refused with
409 Conflict. Phase 2 opens when phase 1 is complete (it names the intended exchange, which
would unblind phase 1).

Refusals: a state-changing request from another site (its Origin or Referer): 403, before
any route (:mod:`kecae.reader_study.security`, which also sets the headers of every response);
an unknown or malformed token, an item or image outside the reader's set (or of
phase 2 while phase 1 is open), and any path outside the routes above: 404; a missing or
out-of-range value: 400; a wrong method: 405; a body that is not a form: 415; an oversized
body: 413; an out-of-order, early phase-2 or changed answer: 409. A client that prefers
``application/json`` gets JSON replies instead of pages.

Flask is imported inside the functions: only this command needs the web stack, and
``kecae --help`` must not load it. The server is :mod:`kecae.reader_study.server`.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kecae.reader_study import db, security

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
ID_RE = re.compile(r"^[A-Za-z0-9_-]{16}$")
MAX_ELAPSED_MS = 24 * 3600 * 1000

#: Keyboard shortcuts, shown on the buttons: key -> (form field, value).
SHORTCUTS = {
    1: {
        "ArrowLeft": ("kl", "0"),
        "ArrowRight": ("kl", "2"),
        **{str(s): ("realism", str(s)) for s in range(1, 6)},
    },
    2: {"y": ("match", "yes"), "n": ("match", "no")},
}

REALISM_LABELS = {
    1: "clearly synthetic",
    2: "probably synthetic",
    3: "unsure",
    4: "probably real",
    5: "indistinguishable from a real radiograph",
}

#: Each exchange direction as the reader is told it: direction -> (title, what was changed).
DIRECTION_WORDS = {
    "kl0_to_kl2": (
        "KL-0 → KL-2",
        "the healthy knee given early-OA features (narrower joint "
        "space, possible osteophytes), the rest of the knee unchanged",
    ),
    "kl2_to_kl0": (
        "KL-2 → KL-0",
        "the early-OA features removed (a normal joint space, no "
        "osteophytes), the rest of the knee unchanged",
    ),
}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _state(con: sqlite3.Connection, reader_id: int) -> dict[str, Any]:
    """The reader's progress: counts per phase and the next unanswered item (None when done)."""
    rows = con.execute(
        "SELECT s.position, i.id AS item, i.phase, i.image_id, i.original_id, i.direction, "
        "       a.item_id IS NOT NULL AS answered "
        "FROM schedule s JOIN items i ON i.id = s.item_id "
        "LEFT JOIN answers a ON a.reader_id = s.reader_id AND a.item_id = s.item_id "
        "WHERE s.reader_id = ? ORDER BY s.position",
        (reader_id,),
    ).fetchall()
    total = {1: 0, 2: 0}
    done = {1: 0, 2: 0}
    nxt = None
    for r in rows:
        total[r["phase"]] += 1
        done[r["phase"]] += r["answered"]
        if nxt is None and not r["answered"]:
            nxt = r
    return {"total": total, "done": done, "next": nxt, "open_phase": 1 if done[1] < total[1] else 2}


def _parse_answer(form: Any, phase: int) -> dict[str, int | None]:
    """The answer's columns from the form, or a 400 that names the bad field."""
    from flask import abort

    out: dict[str, int | None] = {"kl_call": None, "realism": None, "match": None}
    if phase == 1:
        kl, realism = form.get("kl"), form.get("realism")
        if kl not in ("0", "2"):
            abort(400, f"kl must be 0 (KL-0) or 2 (KL-2), got {kl!r}")
        if realism is None or not re.fullmatch(r"[1-5]", realism):
            abort(400, f"realism must be a whole number from 1 to 5, got {realism!r}")
        out.update(kl_call=int(kl), realism=int(realism))
    else:
        match = form.get("match")
        if match not in ("yes", "no"):
            abort(400, f"match must be yes or no, got {match!r}")
        out["match"] = int(match == "yes")
    elapsed = form.get("elapsed_ms") or None
    if elapsed is not None and (
        not re.fullmatch(r"\d{1,9}", elapsed) or int(elapsed) > MAX_ELAPSED_MS
    ):
        abort(
            400,
            f"elapsed_ms must be a whole number of milliseconds up to "
            f"{MAX_ELAPSED_MS}, got {elapsed!r}",
        )
    out["elapsed_ms"] = int(elapsed) if elapsed is not None else None
    return out


class _StudyAccess:
    """The study a running app serves: its folder, settings, images and one database connection
    per request; and the reader a token names."""

    def __init__(self, study: Path) -> None:
        self.study = study
        con = db.open_study(study)  # fails early, with a clear message, for a wrong folder
        self.settings = db.meta(con)
        con.close()
        self.images_dir = (study / db.IMAGES_DIR).resolve()

    def db(self) -> sqlite3.Connection:
        from flask import g

        if "db" not in g:
            g.db = db.connect(self.study / db.DB_NAME)
        return g.db

    def close(self, _exc: BaseException | None = None) -> None:
        from flask import g

        con = g.pop("db", None)
        if con is not None:
            con.close()

    def reader_of(self, token: str) -> sqlite3.Row:
        """The reader ``token`` names, or a 404 (a malformed token is never looked up)."""
        from flask import abort

        row = None
        if TOKEN_RE.match(token):
            row = (
                self.db()
                .execute(
                    "SELECT id, name FROM readers WHERE token_sha256 = ?", (db.token_hash(token),)
                )
                .fetchone()
            )
        if row is None:
            abort(
                404,
                "This link is not valid for this study: check that you opened the whole "
                "link you were sent.",
            )
        return row


def create_app(study: str | Path) -> Flask:
    """The Flask app serving ``study`` (a folder written by ``kecae reader-study prepare``)."""
    from flask import Flask

    access = _StudyAccess(Path(study).resolve())
    app = Flask(
        __name__, static_folder="static", template_folder="templates", static_url_path="/static"
    )
    app.config.update(
        MAX_CONTENT_LENGTH=16 * 1024, STUDY=access.study, SEND_FILE_MAX_AGE_DEFAULT=3600
    )
    # the default JSON provider has sort_keys; its stub types only the base class
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.merge_slashes = False  # "//x" is refused, not redirected somewhere else
    app.teardown_appcontext(access.close)
    security.install(app)
    _install_error_pages(app)
    _add_routes(app, access)
    return app


def _wants_json() -> bool:
    from flask import request

    return (
        request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"
    )


def _install_error_pages(app: Flask) -> None:
    """Every refusal as a page (or JSON for a client that prefers it), keeping its headers."""
    from flask import jsonify, render_template
    from werkzeug.exceptions import HTTPException

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        if _wants_json():
            body = jsonify(error=exc.code, name=exc.name, message=exc.description)
            return body, exc.code, headers
        page = render_template("error.html", code=exc.code, name=exc.name, message=exc.description)
        return page, exc.code, headers


def _add_routes(app: Flask, access: _StudyAccess) -> None:
    from flask import render_template

    app.add_url_rule("/", "index", lambda: render_template("index.html"))
    app.add_url_rule("/r/<token>", "reader", lambda token: _reader_page(access, token))
    app.add_url_rule(
        "/r/<token>/image/<image_id>",
        "image",
        lambda token, image_id: _image(app, access, token, image_id),
    )
    app.add_url_rule(
        "/r/<token>/answer", "answer", lambda token: _answer(access, token), methods=["POST"]
    )


def _reader_page(access: _StudyAccess, token: str):
    """The reader's next image (phase 1 or 2), or the done page."""
    from flask import render_template, url_for

    r = access.reader_of(token)
    st = _state(access.db(), r["id"])
    total, done = st["total"], st["done"]
    common = dict(reader=r["name"], answered=done[1] + done[2], total=total[1] + total[2])
    nxt = st["next"]
    if nxt is None:
        return render_template("done.html", **common)
    page = dict(
        common,
        item=nxt["item"],
        phase=nxt["phase"],
        image_url=url_for("image", token=token, image_id=nxt["image_id"]),
        action=url_for("answer", token=token),
        keys=SHORTCUTS[nxt["phase"]],
        position=done[nxt["phase"]] + 1,
        phase_total=total[nxt["phase"]],
        phases=2 if total[2] else 1,
        size=int(access.settings.get("image_size", 0)),
    )
    if nxt["phase"] == 1:
        return render_template("phase1.html", realism_labels=REALISM_LABELS, **page)
    exchange, meaning = DIRECTION_WORDS[nxt["direction"]]
    return render_template(
        "phase2.html",
        exchange=exchange,
        meaning=meaning,
        original_url=url_for("image", token=token, image_id=nxt["original_id"]),
        first=done[2] == 0,
        **page,
    )


def _image(app: Flask, access: _StudyAccess, token: str, image_id: str):
    """A PNG of the reader's set (of the phases open to them), never a path."""
    from flask import abort

    r = access.reader_of(token)
    if not ID_RE.match(image_id):
        abort(404, "No such image in your set.")
    con = access.db()
    open_phase = _state(con, r["id"])["open_phase"]
    ok = con.execute(
        "SELECT 1 FROM schedule s JOIN items i ON i.id = s.item_id "
        "WHERE s.reader_id = ? AND i.phase <= ? AND (i.image_id = ? OR i.original_id = ?) "
        "LIMIT 1",
        (r["id"], open_phase, image_id, image_id),
    ).fetchone()
    path = (access.images_dir / f"{image_id}.png").resolve()
    if ok is None or path.parent != access.images_dir or not path.is_file():
        abort(404, "No such image in your set.")
    resp = app.response_class(path.read_bytes(), mimetype="image/png")
    # no ETag / Last-Modified: a file's time stamp must not tell anything about the image
    resp.headers["Cache-Control"] = "private, max-age=3600"
    return resp


def _answer(access: _StudyAccess, token: str):
    """One answer, committed before the reply; 303 to the next image (or JSON)."""
    from flask import abort, jsonify, redirect, request, url_for

    r = access.reader_of(token)
    if request.mimetype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        abort(415, "Send answers as an HTML form (application/x-www-form-urlencoded).")
    item = request.form.get("item", "")
    if not ID_RE.match(item):
        abort(404, "This image is not in your set.")
    con = access.db()
    duplicate, position = _commit_answer(con, r["id"], item, request.form)
    if not duplicate:
        log.info("%s answered item %d", r["name"], position + 1)
    if _wants_json():
        st = _state(con, r["id"])
        return jsonify(
            saved=True,
            duplicate=duplicate,
            answered=st["done"][1] + st["done"][2],
            total=st["total"][1] + st["total"][2],
        )
    return redirect(url_for("reader", token=token), code=303)


def _commit_answer(
    con: sqlite3.Connection, reader_id: int, item: str, form: Any
) -> tuple[bool, int]:
    """Check and store one answer in one ``BEGIN IMMEDIATE ... COMMIT`` (durable before the
    reply); returns (it repeats the stored answer, the item's position in the reader's order).
    Refusals are HTTP errors: 404 not in the set, 400 bad values, 409 changed or out of order."""
    from flask import abort

    con.execute("BEGIN IMMEDIATE")  # one reader's check-then-insert is atomic
    try:
        row = con.execute(
            "SELECT i.phase, s.position FROM schedule s JOIN items i ON i.id = s.item_id "
            "WHERE s.reader_id = ? AND s.item_id = ?",
            (reader_id, item),
        ).fetchone()
        if row is None:
            abort(404, "This image is not in your set.")
        values = _parse_answer(form, row["phase"])
        old = con.execute(
            "SELECT kl_call, realism, match FROM answers WHERE reader_id = ? AND item_id = ?",
            (reader_id, item),
        ).fetchone()
        if old is not None:
            if tuple(old) != (values["kl_call"], values["realism"], values["match"]):
                abort(
                    409,
                    "This image is already answered and answers are final; "
                    "reload the page to see your next image.",
                )
        else:
            st = _state(con, reader_id)
            if st["next"] is None or st["next"]["item"] != item:
                if row["phase"] == 2 and st["open_phase"] == 1:
                    abort(409, "Phase 2 opens when phase 1 is complete.")
                abort(409, "Images are answered in order; reload the page to see your next image.")
            con.execute(
                "INSERT INTO answers (reader_id, item_id, kl_call, realism, match, "
                "elapsed_ms, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    reader_id,
                    item,
                    values["kl_call"],
                    values["realism"],
                    values["match"],
                    values["elapsed_ms"],
                    _now(),
                ),
            )
        con.execute("COMMIT")  # durable (synchronous=FULL) before the reply goes out
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    return old is not None, int(row["position"])
