"""A configuration dataclass on the command line: :func:`add_options` turns its fields into
options (help from each field's trailing comment, choices, ranges in the help text) and
:func:`from_args` builds the configuration from defaults, ``base``, a ``--config`` YAML file and
the options given (:mod:`kecae.config` does the coercion and the range checks).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import io
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable
from typing import Any

import yaml

from kecae.config import (
    Option,
    T,
    coerce_values,
    field_types,
    from_dict,
    option_name,
    option_of,
    read_yaml_mapping,
)
from kecae.errors import KecaeError


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


@functools.cache
def field_help(cls: type) -> dict[str, str]:
    """The trailing ``# comment`` of each field in the class source (base classes included)."""
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        comments = {
            tok.start[0]: tok.string.lstrip("#").strip()
            for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT
        }
        body = ast.parse(source).body[0]
        assert isinstance(body, ast.ClassDef)
        for node in body.body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                end = node.end_lineno or node.lineno
                text = comments.get(end, comments.get(node.lineno))
                if text is not None:
                    helps[node.target.id] = text
    return helps


def _flag(f: dataclasses.Field, hint: Any) -> str:
    opt = option_of(f)
    if opt.flag:
        return opt.flag
    flag = option_name(f.name)
    if typing.get_origin(hint) is list and opt.parse is None and flag.endswith("s"):
        return flag[:-1]  # a repeated option: --augment-dir A --augment-dir B
    return flag


#: Every configuration class that :func:`add_options` turned into options (a test checks that
#: each of their numbers has a range).
OPTION_CLASSES: set[type] = set()


def add_options(
    parser: argparse.ArgumentParser,
    cls: type,
    exclude: tuple[str, ...] = (),
    config_file: bool = True,
) -> None:
    """One option per field of ``cls`` (but those in ``exclude``), and ``--config YAML``.

    Options default to ``None``, so an option that is not given leaves a YAML value or the
    dataclass default in force: every default lives in the dataclass alone.
    """
    helps = field_help(cls)
    OPTION_CLASSES.add(cls)
    if config_file:
        parser.add_argument(
            "--config",
            metavar="YAML",
            help="read field values from a YAML file (relative paths in it are relative to "
            "the file's folder)",
        )
    for f in dataclasses.fields(cls):
        if f.name in exclude or option_of(f).hidden:
            continue
        opt, hint = option_of(f), field_types(cls)[f.name]
        flag, default = _flag(f, hint), _default(f)
        text = helps.get(f.name, "") + _default_text(default, opt)
        text = text.replace("%", "%%")
        choices = list(opt.choices) if opt.choices is not None else None
        kind = _text_type(hint)
        if opt.positional:
            parser.add_argument(
                f.name, metavar=opt.metavar or f.name.upper(), help=text, type=opt.parse or kind
            )
            continue
        common: dict[str, Any] = {"dest": f.name, "default": None, "help": text}
        if opt.required:
            common["required"] = True
        if opt.metavar:
            common["metavar"] = opt.metavar
        if opt.parse is not None:
            parser.add_argument(flag, type=opt.parse, **common)
        elif isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif typing.get_origin(hint) is dict:
            common.setdefault("metavar", "KEY=VALUE")
            parser.add_argument(flag, action="append", **common)
        elif typing.get_origin(hint) is list:
            parser.add_argument(
                flag, action="extend", nargs="+", type=kind, choices=choices, **common
            )
        else:
            parser.add_argument(flag, type=kind, choices=choices, **common)


def _default_text(default: Any, opt: Option) -> str:
    """`` (default: X)`` for the help, or nothing when there is no default to show."""
    if opt.required or opt.positional or default is None or default in ("", [], {}):
        return ""
    if isinstance(default, (list, tuple)):
        sep = "," if opt.parse is not None else " "  # as the option takes it
        return f" (default: {sep.join(map(str, default))})"
    return "" if isinstance(default, dict) else f" (default: {default})"


def _text_type(hint: Any) -> Callable[[str], Any]:
    """The argparse ``type`` of a field's (or a list field's items') text value."""
    if typing.get_origin(hint) is list:
        hint = (typing.get_args(hint) or (str,))[0]
    inner = [p for p in typing.get_args(hint) if p is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(inner) == 1:
        hint = inner[0]
    return hint if hint in (int, float) else str


def from_args(cls: type[T], args: argparse.Namespace, base: dict[str, Any] | None = None) -> T:
    """The configuration from, in rising precedence: its defaults, ``base`` (e.g. a preset's
    measured settings), the ``--config`` YAML file and the options given on the command line.
    Values are coerced to their field's type and checked (:func:`check_values`)."""
    values: dict[str, Any] = dict(base or {})
    if getattr(args, "config", None):
        values.update(coerce_values(cls, read_yaml_mapping(args.config), f"--config {args.config}"))
    hints = field_types(cls)
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if typing.get_origin(hints[f.name]) is dict:
            value = {**values.get(f.name, {}), **dict(_parse_kv(v) for v in value)}
        values[f.name] = value
    return from_dict(cls, values, source="option", check=True)


def given_fields(cls: type, args: argparse.Namespace) -> set[str]:
    """The fields of ``cls`` that the ``--config`` YAML file or the command line sets."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = {f for f in names if getattr(args, f, None) is not None}
    if getattr(args, "config", None):
        given |= names & set(read_yaml_mapping(args.config))
    return given


def _parse_kv(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise KecaeError(f"expected KEY=VALUE, got {text!r} (e.g. --model width=0.5)")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)
