"""How every kecae package exports its names: a table ``name -> module``, imported on first use.

So ``import kecae`` and ``import kecae.data`` stay light (no torch), and each package's
``__init__`` reads as the list of what it offers::

    _EXPORTS = {"load_image_set": "cache", "PairSampler": "pairs"}
    __all__ = sorted(_EXPORTS)
    __getattr__ = lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``package.<module>`` when one of ``exports`` is
    first read."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{exports[name]}"), name)

    return __getattr__
