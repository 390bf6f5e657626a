"""Command-line options generated from a configuration dataclass, so the CLI, YAML files and the
Python API share one definition (field names, defaults, one-line help from the field's comment).

Precedence: dataclass default < YAML file (``--config``) < command-line option.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
from typing import Any, TypeVar

import yaml

from kecae.utils import KecaeError

T = TypeVar("T")


def _field_help(cls: type) -> dict[str, str]:
    """The trailing ``# comment`` of each field in the class source."""
    helps: dict[str, str] = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+):[^#]*#\s*(.*)$", line)
        if m:
            helps[m.group(1)] = m.group(2)
    return helps


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type,
                       positional: tuple[str, ...] = (), choices: dict[str, list] | None = None
                       ) -> None:
    """One option per field: ``--num-pairs``; lists repeat (``--augment-dir A --augment-dir B``);
    dicts take ``key=value`` (``--model width=0.5``); booleans get ``--x/--no-x``. Defaults are
    left as ``None`` so that a YAML value is not overwritten by an unset option."""
    helps = _field_help(cls)
    choices = choices or {}
    parser.add_argument("--config", metavar="YAML", help="read field values from a YAML file")
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        text = helps.get(f.name, "")
        if isinstance(default, (list, tuple, dict)) or default is None:
            pass
        else:
            text += f" (default: {default})"
        text = text.replace("%", "%%")
        flag = "--" + f.name.replace("_", "-")
        if f.name in positional:
            parser.add_argument(flag, dest=f.name, default=None, help=text)
        elif isinstance(default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=text)
        elif isinstance(default, list):
            single = flag[:-1] if flag.endswith("s") else flag
            parser.add_argument(single, dest=f.name, action="append", default=None, help=text,
                                choices=choices.get(f.name))
        elif isinstance(default, dict):
            parser.add_argument(flag, dest=f.name, action="append", default=None,
                                metavar="KEY=VALUE", help=text)
        else:
            kind = type(default) if default is not None else str
            parser.add_argument(flag, dest=f.name, type=kind, default=None,
                                choices=choices.get(f.name), help=text)


def dataclass_from_args(cls: type[T], args: argparse.Namespace,
                        base: dict[str, Any] | None = None) -> T:
    """The dataclass from, in rising precedence: its defaults, ``base`` (e.g. a preset's measured
    settings), the ``--config`` YAML file, and the options given on the command line."""
    values: dict[str, Any] = dict(base or {})
    if getattr(args, "config", None):
        try:
            with open(args.config) as fh:
                loaded = yaml.safe_load(fh) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise KecaeError(f"cannot read --config {args.config}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise KecaeError(f"--config {args.config} must hold a mapping of field: value")
        values.update(loaded)
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if isinstance(f.default_factory() if f.default_factory is not dataclasses.MISSING else None,  # type: ignore[misc]
                      dict):
            value = {**values.get(f.name, {}), **dict(_parse_kv(v) for v in value)}
        values[f.name] = value
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise KecaeError(f"unknown configuration field(s) {unknown}; valid: {sorted(names)}")
    return cls(**values)


def _parse_kv(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise KecaeError(f"expected KEY=VALUE, got {text!r} (e.g. --model width=0.5)")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)
