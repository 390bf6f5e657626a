"""The report's grade words: every page word and figure label is written for the default pair
(KL-0, KL-2; ``kl0``/``kl2`` in names) and put in terms of the run's own pair here, so that a run
with ``--grades 0 1`` reads "KL-1 donor" in the text and "X′1 (→ KL-1)" on the figures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: The grade pair of the page being rendered (the figures read it while they are drawn).
_PAIR: ContextVar[tuple[int, int]] = ContextVar("kecae_report_grades", default=(0, 2))


def swap_grades(text: str, grades: tuple[int, int]) -> str:
    """``text`` written for (KL-0, KL-2) in terms of ``grades`` (the lower grade first)."""
    low, high = grades
    if (low, high) == (0, 2):
        return text
    swaps = (
        ("KL-0", f"KL-{low}"),
        ("KL-2", f"KL-{high}"),
        ("kl0", f"kl{low}"),
        ("kl2", f"kl{high}"),
    )
    # through placeholders, so that KL-0 -> KL-2 and KL-2 -> KL-4 do not chain
    for j, (old, _new) in enumerate(swaps):
        text = text.replace(old, f"\0{j}\0")
    for j, (_old, new) in enumerate(swaps):
        text = text.replace(f"\0{j}\0", new)
    return text


@contextmanager
def grade_pair(grades: tuple[int, int]) -> Iterator[None]:
    """Figures drawn inside this block label their panels with ``grades``."""
    token = _PAIR.set((int(grades[0]), int(grades[1])))
    try:
        yield
    finally:
        _PAIR.reset(token)


def label(text: str) -> str:
    """A figure label in terms of the grade pair of the page being drawn."""
    return swap_grades(text, _PAIR.get())
