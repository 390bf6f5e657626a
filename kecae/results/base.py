"""The building blocks of the typed metrics.json: :class:`Section` (a dataclass that writes and
reads itself), :class:`Rate` (a share with its Wilson interval), the exchange directions and
the names of the sections without a dataclass.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

S = TypeVar("S", bound="Section")


#: The two exchange directions.
KL0_TO_KL2, KL2_TO_KL0 = "kl0_to_kl2", "kl2_to_kl0"


DIRECTIONS = (KL0_TO_KL2, KL2_TO_KL0)


#: Sections without a dataclass here: the targets (:func:`read_targets`), the pipeline's
#: settings and step times, and the reader study (``kecae.reader_study.analyze``).
TARGETS_SECTION, CONFIG_SECTION, TIMINGS_SECTION = "targets", "config", "timings"

#: The settings and input checksums ``kecae evaluate`` measured with (kecae.evaluation.rerun).
EVALUATION_SECTION = "evaluation"


READER_STUDY_SECTION = "reader_study"


@dataclass(frozen=True)
class Rate:
    """A share of True with its Wilson 95 % interval: ``value`` is NaN (null) for no sample."""

    value: float
    ci_low: float
    ci_high: float
    n: int

    SUFFIXES: ClassVar[tuple[str, ...]] = ("", "_ci_low", "_ci_high", "_n")

    def items(self, key: str) -> dict[str, Any]:
        """The four entries of this rate under ``key``."""
        values = (self.value, self.ci_low, self.ci_high, self.n)
        return {key + s: v for s, v in zip(self.SUFFIXES, values, strict=True)}

    @classmethod
    def read(cls, d: dict[str, Any], key: str) -> Rate:
        """The rate under ``key`` (its entries ``None`` where absent)."""
        values: list[Any] = [d.get(key + s) for s in cls.SUFFIXES]
        return cls(*values)


class Section:
    """A dataclass that is one section (or part) of metrics.json; ``NAME`` is its key there.

    :meth:`to_dict` writes the fields in order: a :class:`Rate` as its four entries, a nested
    section as a dict, lists and dicts element by element. :meth:`from_dict` is its inverse and
    takes what is there.
    """

    NAME: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]  # every subclass is one

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("optional"):
                continue
            if isinstance(value, Rate):
                out.update(value.items(f.name))
            else:
                out[f.name] = _plain(value)
        return out

    @classmethod
    def from_dict(cls: type[S], d: Any) -> S:
        d = d if isinstance(d, dict) else {}
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            reader = f.metadata.get("read")
            if f.type in ("Rate", Rate):
                values[f.name] = Rate.read(d, f.name)
            elif reader is not None:
                values[f.name] = reader(d.get(f.name))
            else:
                values[f.name] = d.get(f.name)
        return cls(**values)

    @classmethod
    def path(cls, key: str) -> str:
        """``section.key``: the address of one of this section's numbers in metrics.json (a
        target's metric, an ablation column); an unknown key is a KeyError."""
        if key not in cls.written_keys():
            raise KeyError(f"{cls.__name__} has no key {key!r}")
        return f"{cls.NAME}.{key}"

    @classmethod
    def written_keys(cls) -> frozenset[str]:
        """Every key this section writes at its top level (a rate's four entries included)."""
        names: set[str] = set()
        for f in dataclasses.fields(cls):
            if f.type in ("Rate", Rate):
                names.update(f.name + s for s in Rate.SUFFIXES)
            else:
                names.add(f.name)
        return frozenset(names)


def _plain(value: Any) -> Any:
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def optional(default: Any = None) -> Any:
    """A field left out of the JSON while it is ``None`` (added by a later step)."""
    return field(default=default, metadata={"optional": True})


def sections_of(cls: type[S]) -> dict[str, Any]:
    """Field metadata: read a list of ``cls`` sections."""
    return {
        "read": lambda v: (
            [cls.from_dict(x) for x in v if isinstance(x, dict)] if isinstance(v, list) else None
        )
    }


def lookup(metrics: dict[str, Any], path: str) -> Any:
    """The value at ``section.key`` in a metrics.json object (None when absent)."""
    d: Any = metrics
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def is_finite(value: Any) -> bool:
    """A real, finite number (not None, NaN, infinity, a bool or a text)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
