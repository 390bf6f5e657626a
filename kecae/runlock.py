"""One process at a time in a run folder.

Two commands writing one run folder interleave their steps: two ``kecae train --out RUN``
started seconds apart both resume from the same checkpoint, append the same steps to
``log.csv`` and overwrite each other's checkpoints. So every command locks each output folder it
opens (:func:`kecae.reuse.prepare_output` calls :func:`lock_run_folder`), and a second
process is refused at once: ``RUN is in use by process N``.

The lock is ``RUN/.kecae.lock``, holding the owner's process id, locked with ``flock``:

* **Released on exit.** A command releases its locks (and removes the file) when it ends
  (:func:`lock_scope`: the CLI wraps each command in one, and the library's entry points are
  decorated with :func:`releases_locks`). A process that dies any other way, ``kill -9``
  included, loses its lock with its open files: the kernel releases it.
* **Stale locks.** A lock file left by a process that has ended is taken over (its pid is
  checked); where the file system offers no ``flock`` (some network mounts), the pid alone
  decides: a live process other than this one holds the folder.
* **Re-entrant.** A process that holds a folder may open it again (the pipeline's steps).

Nothing is locked for a folder that does not exist yet: there is no state in it to protect,
and the command that creates it locks it then.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from kecae.errors import KecaeError
from kecae.files import output_error, pid_alive

log = logging.getLogger(__name__)

#: The lock file inside a run folder (hidden: data catalogs and folder checks skip it).
LOCK_NAME = ".kecae.lock"

#: Folder (resolved) -> the open lock file's descriptor, for the locks this process holds.
_held: dict[Path, int] = {}
#: Open scopes, innermost last: the folders locked inside each, released when it ends.
_scopes: list[list[Path]] = []

F = TypeVar("F", bound=Callable)


def lock_run_folder(folder: str | os.PathLike) -> None:
    """Lock ``folder`` for this process (nothing when it already holds it, or when the folder
    does not exist); a :class:`KecaeError` when another live process holds it."""
    p = Path(folder).expanduser().resolve()
    if p in _held or not p.is_dir():
        return
    _held[p] = _acquire(p)
    if _scopes:
        _scopes[-1].append(p)


def holder(folder: str | os.PathLike) -> int | None:
    """The process id recorded in ``folder``'s lock file (None when there is none)."""
    try:
        text = (Path(folder) / LOCK_NAME).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def release(folder: str | os.PathLike) -> None:
    """Give up this process's lock of ``folder`` and remove the lock file."""
    p = Path(folder).expanduser().resolve()
    fd = _held.pop(p, None)
    if fd is None:
        return
    lock = p / LOCK_NAME
    with contextlib.suppress(OSError):
        if os.stat(lock).st_ino == os.fstat(fd).st_ino:  # still our file: remove it, then unlock
            lock.unlink()
    os.close(fd)  # closing the descriptor releases the flock


@contextlib.contextmanager
def lock_scope() -> Iterator[None]:
    """The run folders locked inside the block are released when it ends, however it ends."""
    _scopes.append([])
    try:
        yield
    finally:
        for p in reversed(_scopes.pop()):
            release(p)


def releases_locks(fn: F) -> F:
    """Decorate a library entry point: the folders it locks are released when it returns."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with lock_scope():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _in_use(folder: Path, pid: int | None) -> KecaeError:
    who = f"process {pid}" if pid is not None else "another process"
    return KecaeError(
        f"{folder} is in use by {who}: two commands in one run folder would overwrite each "
        f"other's checkpoints and logs; wait for it to finish (or stop it), or choose another "
        "output folder"
    )


def _acquire(folder: Path) -> int:
    """An open, locked descriptor of ``folder/.kecae.lock`` holding this process's id."""
    import fcntl  # POSIX; kecae runs on Linux and macOS

    path = folder / LOCK_NAME
    for _ in range(10):  # a holder may remove the file between our open and our lock: retry
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise output_error(path, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _in_use(folder, holder(folder)) from None
        except OSError as exc:  # no flock here (some network file systems): the pid decides
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                os.close(fd)
                raise output_error(path, exc) from exc
            pid = holder(folder)
            if pid is not None and pid != os.getpid() and pid_alive(pid):
                os.close(fd)
                raise _in_use(folder, pid) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        stale = holder(folder)
        if stale is not None and stale != os.getpid():
            log.debug("%s: taking over the lock of process %d, which has ended", folder, stale)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd
    raise _in_use(folder, holder(folder))
