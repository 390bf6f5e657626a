"""The HTML building blocks of the report -- tables, notes, figures, cards -- rendered from the
macros of ``templates/parts.html``. Text is escaped here (:func:`escape`); what these functions
return is HTML, and what they take as cells or captions is HTML too."""

from __future__ import annotations

import functools
import html
import re
from typing import Any, NamedTuple

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from kecae.report.format import SIBLINGS, fmt, number, sample_size, spread, words


@functools.cache
def environment() -> Environment:
    """The report's Jinja2 environment: templates and CSS are package data."""
    return Environment(
        loader=PackageLoader("kecae.report", "templates"), autoescape=select_autoescape(["html"])
    )


def _macro(name: str) -> Any:
    return getattr(environment().get_template("parts.html").module, name)


def escape(text: Any) -> str:
    """Plain text made safe for HTML."""
    return html.escape(str(text))


def table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    """An HTML table; the header and the cells are HTML."""
    return str(
        _macro("table")(
            [Markup(h) for h in header], [[Markup(c) for c in row] for row in rows], cls
        )
    )


def note(text: str) -> str:
    """A grey note paragraph; ``text`` is HTML."""
    return str(_macro("note")(Markup(text)))


def figure(uri: str, alt: str, caption: str) -> str:
    """An embedded image (a ``data:`` URI) with its alt text and an HTML caption."""
    return str(_macro("figure")(Markup(uri), Markup(escape(alt)), Markup(caption)))


class Card(NamedTuple):
    """One headline number: the value, what it is, and its spread / sample size (plain text)."""

    value: str
    label: str
    sub: str


def cards(items: list[Card]) -> str:
    return str(_macro("cards")([Card(*(Markup(escape(x)) for x in card)) for card in items]))


def metric_rows(
    section: dict[str, Any],
    keys: list[tuple[str, str, str]],
    extra: bool = True,
    skip: frozenset[str] = frozenset(),
) -> list[list[str]]:
    """Rows (label, value, spread, n) for the known keys present, then any other numbers."""
    rows, seen = [], set(skip) | {"n"}
    for key, label, kind in keys:
        seen.add(key)
        if key in section:
            rows.append(
                [
                    escape(label),
                    fmt(section[key], kind),
                    escape(spread(section, key, kind)),
                    sample_size(section, key),
                ]
            )
    if extra:
        for key, v in section.items():
            if key in seen or key.endswith(SIBLINGS) or number(v) is None:
                continue
            kind = "pct" if re.search(r"(rate|accuracy)$", key) else "num"
            rows.append(
                [
                    escape(words(key)),
                    fmt(v, kind),
                    escape(spread(section, key, kind)),
                    sample_size(section, key),
                ]
            )
    return rows


def metric_table(section: dict[str, Any], keys: list[tuple[str, str, str]], **kw: Any) -> str:
    """:func:`metric_rows` as a table (empty when there is no row)."""
    rows = metric_rows(section, keys, **kw)
    return table(["Metric", "Value", "± std / 95 % CI", "n"], rows, "metrics") if rows else ""
