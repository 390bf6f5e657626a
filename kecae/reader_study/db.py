"""The study database: one SQLite file in WAL mode, every answer its own durable transaction.

``journal_mode=WAL`` lets readers' page loads run while another reader's answer is written;
``synchronous=FULL`` makes a COMMIT durable before it returns, so an answer that the server has
acknowledged survives the server (or the machine) being killed the next moment.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from kecae.errors import KecaeError

SCHEMA_VERSION = 1
DB_NAME = "study.sqlite"
IMAGES_DIR = "images"
LINKS_NAME = "links.txt"

#: Item kinds. Phase 1: ``exchanged`` (a key-exchanged image X') and ``control`` (a real image).
#: Phase 2: ``exchanged`` (recipient beside X') and ``sham`` (a real image beside itself, with a
#: stated exchange it cannot match: the control of the "matches" rate).
KINDS = ("exchanged", "control", "sham")
#: Exchange directions, as in the generation manifest. X'1 = kl0_to_kl2 (intended KL-2),
#: X'2 = kl2_to_kl0 (intended KL-0).
DIRECTIONS = ("kl0_to_kl2", "kl2_to_kl0")

SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE readers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL UNIQUE   -- the link's token is never stored, only its hash
);
CREATE TABLE images (
    id TEXT PRIMARY KEY,                -- random; the file is images/<id>.png
    source TEXT NOT NULL                -- the file it was made from (never served)
);
CREATE TABLE items (
    id TEXT PRIMARY KEY,                -- random key that forms post back
    phase INTEGER NOT NULL CHECK (phase IN (1, 2)),
    kind TEXT NOT NULL CHECK (kind IN {KINDS}),
    image_id TEXT NOT NULL REFERENCES images(id),
    original_id TEXT REFERENCES images(id),   -- phase 2: shown left of image_id
    grade INTEGER NOT NULL CHECK (grade IN (0, 2)),  -- intended (X') or true (control) KL grade
    direction TEXT CHECK (direction IN {DIRECTIONS}),  -- phase 2: the stated exchange
    pair_index INTEGER                  -- the generation manifest's pair (exchanged items)
);
CREATE TABLE schedule (
    reader_id INTEGER NOT NULL REFERENCES readers(id),
    position INTEGER NOT NULL,          -- all phase-1 items come before all phase-2 items
    item_id TEXT NOT NULL REFERENCES items(id),
    PRIMARY KEY (reader_id, position),
    UNIQUE (reader_id, item_id)
);
CREATE TABLE answers (
    reader_id INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    kl_call INTEGER CHECK (kl_call IN (0, 2)),
    realism INTEGER CHECK (realism BETWEEN 1 AND 5),
    match INTEGER CHECK (match IN (0, 1)),
    elapsed_ms INTEGER CHECK (elapsed_ms >= 0),  -- time on screen, as the browser measured it
    answered_at TEXT NOT NULL,          -- UTC, ISO 8601
    PRIMARY KEY (reader_id, item_id),
    FOREIGN KEY (reader_id, item_id) REFERENCES schedule(reader_id, item_id),
    CHECK ((kl_call IS NOT NULL AND realism IS NOT NULL AND match IS NULL)
           OR (kl_call IS NULL AND realism IS NULL AND match IS NOT NULL))
);
"""


def token_hash(token: str) -> str:
    """What the database keeps of a reader's token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def connect(path: str | Path, *, create: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (writers open ``BEGIN IMMEDIATE`` themselves), with
    foreign keys on, ``synchronous=FULL`` and a busy timeout so concurrent readers wait for
    each other instead of failing."""
    path = Path(path)
    if not create and not path.is_file():
        raise KecaeError(
            f"{path} not found: pass a study folder written by `kecae reader-study prepare`"
        )
    con = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    con.row_factory = sqlite3.Row
    con.execute("PRAGMA foreign_keys = ON")
    con.execute("PRAGMA synchronous = FULL")
    con.execute("PRAGMA busy_timeout = 10000")
    if create:
        con.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
    return con


def open_study(study: str | Path) -> sqlite3.Connection:
    """Connect to ``study``/study.sqlite and check it is a study of this schema version."""
    con = connect(Path(study) / DB_NAME)
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        con.close()
        raise KecaeError(f"{study}/{DB_NAME} is not a reader-study database ({exc})") from exc
    if row is None or int(row["value"]) != SCHEMA_VERSION:
        con.close()
        raise KecaeError(
            f"{study}/{DB_NAME} has schema version "
            f"{row['value'] if row else 'none'}, this kecae reads "
            f"{SCHEMA_VERSION}: use the kecae version that prepared the study"
        )
    return con


def meta(con: sqlite3.Connection) -> dict[str, str]:
    """The study's settings (generated folder, pairs, controls, seed, image size, ...)."""
    return {r["key"]: r["value"] for r in con.execute("SELECT key, value FROM meta")}
