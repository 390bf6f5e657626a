"""The one exception kecae raises for a problem the user can fix."""

from __future__ import annotations


class KecaeError(Exception):
    """An error caused by the user's input or environment.

    The CLI prints its message (which names the file and the fix) and exits with status 2,
    instead of showing a traceback.
    """
