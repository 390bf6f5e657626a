"""Defence in depth for the reader-study app: response headers, cross-origin refusal, and reader
tokens kept out of every log line.

A reader's token is the key to their answers and travels in the URL path (``/r/<token>``), so:

* **Headers.** Every response forbids framing, sniffing and foreign scripts (CSP), and sends
  ``Referrer-Policy: same-origin``: a link to another site never carries the token in a Referer,
  while the app's own forms send their true ``Origin`` (under ``no-referrer`` a browser sends
  ``Origin: null`` on a same-origin form, which a hostile page can send too).
* **Cross-origin requests.** A state-changing request (POST, PUT, PATCH, DELETE) whose ``Origin``
  (or, without one, ``Referer``) names another host than the one it was sent to is refused with
  403 before it reaches a route: a page elsewhere cannot answer for a reader whose link it has
  learnt. A request with neither header (curl, a script) comes from no browser page and passes.
* **Logs.** :class:`RedactTokens` rewrites every log record (message, arguments and traceback)
  so that ``/r/<token>`` reads ``/r/<redacted>``; :func:`redact_logs` puts it on every handler
  while the server runs.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from flask import Flask

#: Content-Security-Policy of every response: the app's own CSS, scripts and images only.
CSP = (
    "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

#: Methods that change what a study holds.
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: A reader link's token in any text (the app's own pattern of a token, after ``/r/``).
_TOKEN_IN_TEXT = re.compile(r"(/r/)[A-Za-z0-9_-]{16,128}")
REDACTED = r"\1<redacted>"


def redact(text: str) -> str:
    """``text`` with every reader token after ``/r/`` replaced by ``<redacted>``."""
    return _TOKEN_IN_TEXT.sub(REDACTED, text)


def foreign_origin(method: str, host: str, origin: str | None, referer: str | None) -> str | None:
    """The origin a state-changing request came from when it is not ``host`` (the request's
    ``Host``), else None. ``Origin`` decides when present (``null`` counts as foreign); else
    ``Referer``; a request with neither passes."""
    if method.upper() not in STATE_CHANGING:
        return None
    source = origin if origin is not None else referer
    if source is None:
        return None
    netloc = urlsplit(source.strip()).netloc.lower() if source.strip() != "null" else ""
    return None if netloc and netloc == host.lower() else source


def install(app: Flask) -> None:
    """Add the header policy and the cross-origin refusal to ``app``."""
    from flask import abort, request

    @app.before_request
    def _same_origin_only() -> None:
        source = foreign_origin(
            request.method,
            request.host,
            request.headers.get("Origin"),
            request.headers.get("Referer"),
        )
        if source is not None:
            abort(
                403,
                "This request came from another site and was refused: answer from the page "
                "your personal link opens.",
            )

    @app.after_request
    def _headers(resp):
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "same-origin"  # the token never leaves this site
        resp.headers["X-Frame-Options"] = "DENY"
        if resp.mimetype != "image/png" and not request.path.startswith("/static/"):
            resp.headers["Cache-Control"] = "no-store"
        return resp


class RedactTokens(logging.Filter):
    """A handler filter that removes reader tokens from a record before it is written: the
    message with its arguments, and the traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _all_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    handlers = {id(h): h for lg in loggers for h in lg.handlers}
    if logging.lastResort is not None:
        handlers[id(logging.lastResort)] = logging.lastResort
    return list(handlers.values())


@contextlib.contextmanager
def redact_logs() -> Iterator[None]:
    """Within the block, every handler of every logger (and Python's last-resort handler)
    redacts reader tokens; handlers added later (Flask's own) are covered because the app's
    logger is created, with its handler, before the block starts."""
    token_filter = RedactTokens()
    handlers = _all_handlers()
    for h in handlers:
        h.addFilter(token_filter)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(token_filter)
