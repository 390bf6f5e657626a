"""Command-line options generated from a configuration dataclass, so the CLI, YAML files and the
Python API share one definition (field names, defaults, one-line help from the field's comment).

Precedence: dataclass default < ``base`` (e.g. a preset's settings) < YAML file (``--config``) <
command-line option. Every value is coerced to its field's type (YAML reads ``lr: 1e-3`` as a
string; it becomes the float 0.001) and every number is checked against its field's range
(:func:`check_values`), so a bad value stops the command with one line naming the option and
the fix, before anything is read or written.

Relative paths in a YAML file are relative to the folder of that file: a run folder's
``config.yaml`` can be given back with ``--config`` from anywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from kecae.utils import KecaeError

T = TypeVar("T")


def _field_help(cls: type) -> dict[str, str]:
    """The trailing ``# comment`` of each field in the class source (base classes included)."""
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for line in source.splitlines():
            m = re.match(r"\s+(\w+):[^#]*#\s*(.*)$", line)
            if m:
                helps[m.group(1)] = m.group(2)
    return helps


def option(name: str) -> str:
    """The command-line spelling of a field: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type,
                       positional: tuple[str, ...] = (), choices: dict[str, list] | None = None,
                       exclude: tuple[str, ...] = ()) -> None:
    """One option per field (but those in ``exclude``): ``--num-pairs``; lists repeat
    (``--augment-dir A --augment-dir B``); dicts take ``key=value`` (``--model width=0.5``);
    booleans get ``--x/--no-x``. Defaults are left as ``None`` so that a YAML value is not
    overwritten by an unset option."""
    helps = _field_help(cls)
    choices = choices or {}
    parser.add_argument("--config", metavar="YAML", help="read field values from a YAML file "
                        "(relative paths in it are relative to the file's folder)")
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        text = helps.get(f.name, "")
        if not (isinstance(default, (list, tuple, dict)) or default is None or default == ""):
            text += f" (default: {default})"
        text = text.replace("%", "%%")
        flag = option(f.name)
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


def read_yaml_mapping(path: str | Path, what: str = "--config") -> dict[str, Any]:
    """The mapping in a YAML file, its relative path fields made absolute against the file's
    folder (see :mod:`kecae.runfolder`)."""
    from kecae.runfolder import load_paths

    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise KecaeError(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise KecaeError(f"{what} {path} must hold a mapping of field: value")
    return load_paths(loaded, path.parent, legacy=True)


def dataclass_from_args(cls: type[T], args: argparse.Namespace,
                        base: dict[str, Any] | None = None) -> T:
    """The dataclass from, in rising precedence: its defaults, ``base`` (e.g. a preset's measured
    settings), the ``--config`` YAML file, and the options given on the command line. Values
    are coerced to their field's type and checked (:func:`check_values`)."""
    values: dict[str, Any] = dict(base or {})
    if getattr(args, "config", None):
        source = f"--config {args.config}"
        values.update(coerce_values(cls, read_yaml_mapping(args.config), source))
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
    try:
        cfg = cls(**coerce_values(cls, values, "option"))
    except ValueError as exc:  # a dataclass's own __post_init__ check
        raise KecaeError(str(exc)) from exc
    check_values(cfg)
    return cfg


def _parse_kv(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise KecaeError(f"expected KEY=VALUE, got {text!r} (e.g. --model width=0.5)")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


# ---------------------------------------------------------------------------------------------
# Types: a YAML or command-line value -> the field's type
# ---------------------------------------------------------------------------------------------

@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class _Mismatch(Exception):
    def __init__(self, want: str, example: str) -> None:
        super().__init__(want)
        self.want, self.example = want, example


def _coerce(value: Any, kind: Any) -> Any:
    """``value`` as type ``kind`` (int, float, bool, str, X | None, list[X], dict[..], Any)."""
    origin, params = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in params:
            return None
        inner = [p for p in params if p is not type(None)]
        return _coerce(value, inner[0]) if len(inner) == 1 else value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _Mismatch("true or false", "true")
    if kind is int:
        if isinstance(value, str):
            text = value.strip().replace("_", "")
            try:
                value = int(text)
            except ValueError:
                try:
                    value = float(text)
                except ValueError:
                    raise _Mismatch("a whole number", "100") from None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _Mismatch("a whole number", "100")
    if kind is float:
        if isinstance(value, bool):
            raise _Mismatch("a number", "1e-3")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise _Mismatch("a number", "1e-3") from None
        raise _Mismatch("a number", "1e-3")
    if kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _Mismatch("a text", "cpu")
    if origin is list:
        item = params[0] if params else Any
        if isinstance(value, str) and item is not str:
            value = [v for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            return [_coerce(v, item) for v in value]
        return [_coerce(value, item)]
    if origin is dict:
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        raise _Mismatch("a mapping of key: value", "{width: 0.5}")
    return value


def coerce_values(cls: type, values: dict[str, Any], source: str = "configuration"
                  ) -> dict[str, Any]:
    """``values`` with each known field coerced to its type in ``cls``; a value that cannot be
    is a :class:`KecaeError` naming the field, the value and an example."""
    hints = _hints(cls)
    out = dict(values)
    for name, value in values.items():
        if name not in hints:
            continue
        try:
            out[name] = _coerce(value, hints[name])
        except _Mismatch as exc:
            if source == "option":
                raise KecaeError(f"{option(name)} {value!r} is not {exc.want} (e.g. "
                                 f"{option(name)} {exc.example})") from None
            raise KecaeError(f"{source}: {name}: {value!r} is not {exc.want} (e.g. "
                             f"{name}: {exc.example})") from None
    return out


# ---------------------------------------------------------------------------------------------
# Ranges: every number of every command
# ---------------------------------------------------------------------------------------------

_SEED_MAX = 2**63 - 1

#: field name -> (lowest, highest, lowest allowed itself, what it is). Fields not named here
#: still must be finite numbers.
_RANGES: dict[str, tuple[float, float, bool, str]] = {
    **{n: (1, math.inf, True, "a whole number >= 1") for n in (
        "batch_size", "gen_batch_size", "kecae_steps", "steps", "epochs", "classifier_epochs",
        "patience", "seeds", "num_pairs", "pairs", "gen_pairs", "eval_pairs", "examples",
        "log_every", "sample_every", "ckpt_every", "workers")},
    **{n: (0, math.inf, True, "a whole number >= 0 (0: no limit)") for n in (
        "max_steps", "max_train")},
    **{n: (0, _SEED_MAX, True, f"a whole number from 0 to {_SEED_MAX}") for n in (
        "seed", "first_seed", "gen_seed")},
    **{n: (16, 4096, True, "a side in pixels from 16 to 4096") for n in (
        "image_size", "size", "phantom_size")},
    **{n: (0, math.inf, False, "a finite number > 0") for n in ("lr", "kecae_lr")},
    "weight_decay": (0, math.inf, True, "a finite number >= 0"),
    "separability_images": (10, math.inf, True, "a whole number >= 10 (5-fold SVM)"),
    "kl0": (10, math.inf, True, "a whole number >= 10 (patient-level splits need a few)"),
    "kl2": (10, math.inf, True, "a whole number >= 10 (patient-level splits need a few)"),
    "band": (0, 0.5, False, "a fraction of the image side in (0, 0.5)"),
    "plausibility_quantile": (0, 1, False, "a fraction in (0, 1)"),
}


def _range_of(name: str) -> tuple[float, float, bool, str] | None:
    if name in _RANGES:
        return _RANGES[name]
    if name.startswith("lambda_") or name == "sup_perturb":
        return (0, math.inf, True, "a finite number >= 0")
    if name.endswith("_eps"):
        return (0, math.inf, False, "a finite number > 0")
    if name.endswith("_every"):
        return (1, math.inf, True, "a whole number >= 1")
    return None


def check_value(name: str, value: Any,
                rule: tuple[float, float, bool, str] | None = None) -> None:
    """Refuse a number outside its field's range (or not finite) with the option's name."""
    values = value if isinstance(value, (list, tuple)) else [value]
    rule = rule or _range_of(name)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not math.isfinite(v):
            want = rule[3] if rule else "a finite number"
            raise KecaeError(f"{option(name)} {v!r}: must be {want}")
        if rule is None:
            continue
        low, high, closed, want = rule
        if v > high or v < low or (v == low and not closed):
            raise KecaeError(f"{option(name)} {v!r}: must be {want}")


def check_values(cfg: Any) -> None:
    """Every numeric field of a configuration dataclass within its range (see ``_RANGES``; a
    class may narrow or widen a field's range in its ``value_ranges`` attribute)."""
    own = getattr(type(cfg), "value_ranges", {})
    for f in dataclasses.fields(cfg):
        check_value(f.name, getattr(cfg, f.name), own.get(f.name))
