"""One console log per run folder: what a command printed, kept in ``RUN/console.log``.

:func:`console_log` copies everything written to stdout and stderr, and every log record, into
the file while the command runs (appended, one header line per command). Progress bars are kept
as their last state only: text a carriage return overwrites on the terminal is dropped from the
file, so the log reads as lines.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from kecae.errors import KecaeError
from kecae.runfolder import RunLayout

#: The command line of the ``kecae`` command running (set by :func:`kecae.cli.main`; the
#: process's own arguments when unset).
COMMAND_LINE: list[str] | None = None


class _LineFile:
    """A text sink that writes whole lines to ``fh``, each as the terminal last showed it."""

    def __init__(self, fh: IO[str]) -> None:
        self.fh, self.buffer = fh, ""

    def write(self, text: str) -> int:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            shown = line.split("\r")[-1].rstrip()
            if shown:
                self.fh.write(shown + "\n")
        self.fh.flush()
        return len(text)

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:
        if self.buffer.split("\r")[-1].strip():
            self.write("\n")


class _Tee:
    """A stream that writes to the original stream and to a :class:`_LineFile`."""

    def __init__(self, stream: Any, copy: _LineFile) -> None:
        self.stream, self.copy = stream, copy

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding: the terminal's
        return getattr(self.stream, name)


@contextlib.contextmanager
def console_log(path: str | Path, argv: list[str] | None = None) -> Iterator[Path]:
    """Copy the console into ``path`` (appended) while the block runs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        copy = _LineFile(fh)
        given = argv if argv is not None else COMMAND_LINE
        command = shlex.join(["kecae", *(sys.argv[1:] if given is None else given)])
        copy.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {command}\n")
        handler = logging.StreamHandler(copy)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(out, copy), _Tee(err, copy)
        try:
            yield path
        except KecaeError as exc:  # the one line the command ends with, kept with the rest
            copy.write(f"error: {exc}\n")
            raise
        except KeyboardInterrupt:
            copy.write("interrupted\n")
            raise
        finally:
            sys.stdout, sys.stderr = out, err
            root.removeHandler(handler)
            copy.close()


def run_console(folder: str | Path | None) -> contextlib.AbstractContextManager[Any]:
    """:func:`console_log` into ``FOLDER/console.log`` when ``folder`` is a pipeline run folder
    (it holds run.yaml): ``kecae evaluate``, ``generate`` and ``report`` on a run keep their
    output in the run's one console log. Elsewhere, nothing is copied."""

    layout = RunLayout(folder) if folder else None
    if layout is not None and layout.root.is_dir() and layout.marker.is_file():
        return console_log(layout.console)
    return contextlib.nullcontext()
