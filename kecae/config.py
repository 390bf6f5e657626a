"""Configurations: one typed dataclass per command, and the one way to fill it.

Every command's settings are a dataclass whose fields carry the defaults and, in a trailing
``# comment``, a one-line help. :func:`kecae.cli.options.add_options` turns the fields into
command-line options and :func:`kecae.cli.options.from_args` builds the configuration, in rising
precedence, from

    the dataclass defaults < ``base`` (e.g. a preset's measured settings) < a YAML file
    (``--config``) < the options given on the command line.

Every value is coerced to its field's type (YAML reads ``lr: 1e-3`` as a string; it becomes the
float 0.001) and every number is checked against its field's range (:func:`check_values`), so a
bad value stops the command with one line naming the option and the fix, before anything is read
or written. Relative paths in a YAML file are relative to the folder of that file, and
:func:`save_yaml` writes them that way, so a run folder's ``config.yaml`` can be given back with
``--config`` from anywhere (see :mod:`kecae.paths`).

A field can say more about its option with :func:`setting`: a positional argument, another flag,
choices (a :class:`kecae.registry.Registry` or a list), a parser for a comma-separated value.
Lists take one or more values and may repeat (``--arch resnet18 vgg11``, ``--row a --row b``);
mappings take ``key=value`` (``--model width=0.5``); booleans get ``--x/--no-x``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from kecae.device import check_device
from kecae.errors import KecaeError
from kecae.files import atomic_write_text
from kecae.paths import load_paths, store_paths

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


#: A configuration dataclass.
T = TypeVar("T", bound="DataclassInstance")


#: A number's allowed range: (lowest, highest, lowest allowed itself, what it is).
Range = tuple[float, float, bool, str]


@dataclass(frozen=True)
class Option:
    """How a field appears on the command line (stored in the field's metadata)."""

    flag: str | None = None  # the option's spelling when not --field-name (e.g. "--sets")
    positional: bool = False  # a positional argument (e.g. `kecae phantoms OUT`)
    required: bool = False  # argparse refuses the command without it
    choices: Iterable[str] | None = None  # allowed values (a Registry lists its names)
    metavar: str | None = None  # the value's name in --help
    parse: Callable[[str], Any] | None = None  # turns the one text value into the field's value
    range: Range | None = None  # the allowed numbers (see check_value); else by the field's name
    hidden: bool = False  # not a command-line option: kecae fills it (e.g. the data version)


def setting(
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    **option: Any,
) -> Any:
    """A dataclass field with command-line details (the keywords of :class:`Option`)."""
    metadata = {"option": Option(**option)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def option_of(f: dataclasses.Field) -> Option:
    return f.metadata.get("option") or Option()


def option_name(name: str) -> str:
    """The command-line spelling of a field: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def to_dict(cfg: Any) -> dict[str, Any]:
    """The configuration as a plain dict (what checkpoints and config.yaml hold)."""
    return dataclasses.asdict(cfg)


def from_dict(
    cls: type[T], values: dict[str, Any], source: str = "configuration", check: bool = False
) -> T:
    """Build ``cls`` from a dict (each value coerced to its field's type), refusing unknown keys
    with the list of valid ones; ``check``: also check every number's range."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        if source == "option":
            raise KecaeError(f"unknown configuration field(s) {unknown}; valid: {sorted(names)}")
        raise KecaeError(f"{source}: unknown field(s) {unknown}; valid fields: {sorted(names)}")
    try:
        cfg = cls(**coerce_values(cls, values, source))
    except ValueError as exc:  # the dataclass's own __post_init__ check
        raise KecaeError(str(exc) if source == "option" else f"{source}: {exc}") from exc
    if check:
        check_values(cfg)
    return cfg


def read_yaml_mapping(path: str | Path, what: str = "--config") -> dict[str, Any]:
    """The mapping in a YAML file, its relative path fields made absolute against the file's
    folder (see :mod:`kecae.paths`)."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise KecaeError(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise KecaeError(f"{what} {path} must hold a mapping of field: value")
    return load_paths(loaded, path.parent, legacy=True)


def load_yaml(cls: type[T], path: str | Path) -> T:
    """A configuration from a YAML file; relative paths in it are relative to the file's folder
    (how :func:`save_yaml` writes them), so a run folder's config.yaml reads the same from any
    working folder and after the run folder was moved."""
    return from_dict(cls, read_yaml_mapping(path, "configuration"), source=str(path))


def save_yaml(cfg: Any, path: str | Path) -> None:
    """Write ``cfg`` as YAML; paths inside the run folder are written relative to the file's
    folder (see :mod:`kecae.paths`)."""
    values = store_paths(to_dict(cfg), Path(path).parent)
    atomic_write_text(path, yaml.safe_dump(values, sort_keys=False))


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
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
        return _coerce_bool(value)
    if kind is int:
        return _coerce_int(value)
    if kind is float:
        return _coerce_float(value)
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


def _coerce_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _Mismatch("true or false", "true")


def _coerce_int(value: Any) -> int:
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


def _coerce_float(value: Any) -> float:
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


def coerce_values(
    cls: type, values: dict[str, Any], source: str = "configuration"
) -> dict[str, Any]:
    """``values`` with each known field coerced to its type in ``cls``; a value that cannot be
    is a :class:`KecaeError` naming the field, the value and an example."""
    hints = field_types(cls)
    out = dict(values)
    for name, value in values.items():
        if name not in hints:
            continue
        try:
            out[name] = _coerce(value, hints[name])
        except _Mismatch as exc:
            if source == "option":
                raise KecaeError(
                    f"{option_name(name)} {value!r} is not {exc.want} (e.g. "
                    f"{option_name(name)} {exc.example})"
                ) from None
            raise KecaeError(
                f"{source}: {name}: {value!r} is not {exc.want} (e.g. {name}: {exc.example})"
            ) from None
    return out


_SEED_MAX = 2**63 - 1


#: field name -> its range. Fields not named here still must be finite numbers.
_RANGES: dict[str, Range] = {
    **dict.fromkeys(
        (
            "batch_size",
            "gen_batch_size",
            "kecae_steps",
            "steps",
            "epochs",
            "classifier_epochs",
            "patience",
            "seeds",
            "num_pairs",
            "pairs",
            "gen_pairs",
            "eval_pairs",
            "examples",
            "log_every",
            "sample_every",
            "ckpt_every",
            "workers",
        ),
        (1, math.inf, True, "a whole number >= 1"),
    ),
    **dict.fromkeys(
        ("max_steps", "max_train"), (0, math.inf, True, "a whole number >= 0 (0: no limit)")
    ),
    **dict.fromkeys(
        ("trials", "best_seeds", "min_steps"), (1, math.inf, True, "a whole number >= 1")
    ),
    **dict.fromkeys(("grades", "real_grades"), (0, 4, True, "a KL grade from 0 to 4")),
    **dict.fromkeys(("startup_trials", "best_rows"), (0, math.inf, True, "a whole number >= 0")),
    "sizes": (0, math.inf, True, "a whole number of pairs >= 0 (0: the real images alone)"),
    **dict.fromkeys(("lambda1", "lambda2"), (0, math.inf, True, "a finite number >= 0")),
    **dict.fromkeys(
        ("seed", "first_seed", "gen_seed"),
        (0, _SEED_MAX, True, f"a whole number from 0 to {_SEED_MAX}"),
    ),
    **dict.fromkeys(
        ("image_size", "size", "phantom_size"), (16, 4096, True, "a side in pixels from 16 to 4096")
    ),
    **dict.fromkeys(("lr", "kecae_lr"), (0, math.inf, False, "a finite number > 0")),
    "weight_decay": (0, math.inf, True, "a finite number >= 0"),
    **dict.fromkeys(
        ("separability_images", "images"), (10, math.inf, True, "a whole number >= 10 (5-fold SVM)")
    ),
    "kl0": (10, math.inf, True, "a whole number >= 10 (patient-level splits need a few)"),
    "kl2": (10, math.inf, True, "a whole number >= 10 (patient-level splits need a few)"),
    "band": (0, 0.5, False, "a fraction of the image side in (0, 0.5)"),
    "plausibility_quantile": (0, 1, False, "a fraction in (0, 1)"),
}


def _range_of(name: str) -> Range | None:
    if name in _RANGES:
        return _RANGES[name]
    if name.startswith("lambda_") or name == "sup_perturb":
        return (0, math.inf, True, "a finite number >= 0")
    if name.endswith("_eps"):
        return (0, math.inf, False, "a finite number > 0")
    if name.endswith("_every"):
        return (1, math.inf, True, "a whole number >= 1")
    return None


def check_value(name: str, value: Any, rule: Range | None = None) -> None:
    """Refuse a number outside its field's range (or not finite) with the option's name."""
    values = value if isinstance(value, (list, tuple)) else [value]
    rule = rule or _range_of(name)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not math.isfinite(v):
            want = rule[3] if rule else "a finite number"
            raise KecaeError(f"{option_name(name)} {v!r}: must be {want}")
        if rule is None:
            continue
        low, high, closed, want = rule
        if v > high or v < low or (v == low and not closed):
            raise KecaeError(f"{option_name(name)} {v!r}: must be {want}")


def check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
    """Refuse a value (or a list item) that is not one of the field's choices: a YAML file or
    a caller of the library can give what the command line's ``choices`` would have refused."""
    allowed = list(choices)
    for v in value if isinstance(value, (list, tuple)) else [value]:
        if v not in allowed:
            raise KecaeError(f"{option_name(name)} {v!r}: choose one of {allowed}")


def field_range(cls: type, f: dataclasses.Field) -> Range | None:
    """The range of a field: the class's ``value_ranges``, else the one declared with the option
    (``setting(..., range=...)``), else the rule for its name (``_RANGES``)."""
    own: dict[str, Range] = getattr(cls, "value_ranges", {})
    return own.get(f.name) or option_of(f).range or _range_of(f.name)


def check_values(cfg: Any) -> None:
    """Every numeric field of a configuration dataclass within its range (:func:`field_range`),
    every field with choices (:func:`setting`) one of them, and its ``device`` (if any) one
    this machine has."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        check_value(f.name, value, field_range(type(cfg), f))
        choices = option_of(f).choices
        if choices is not None and value is not None:
            check_choice(f.name, value, choices)
        if f.name == "device" and isinstance(value, str):
            check_device(value)
