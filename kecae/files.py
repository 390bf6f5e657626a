"""Files written so that a reader never sees half of one: atomic writes, the temporary files a
killed writer leaves, and the message for a write that fails; SHA-256 of a file."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kecae.errors import KecaeError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Mode of files written by :func:`atomic_path` (mkstemp would leave them private, 0600).
_FILE_MODE = 0o666 & ~_current_umask()


#: A temporary file of :func:`atomic_path`: ``.<target>.<writer pid>.<random><suffix>``.
_TMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]{8}[^/]*\.tmp$")


def output_error(path: str | os.PathLike, exc: OSError) -> KecaeError:
    """A :class:`KecaeError` naming ``path`` and the fix for a failed write (full disk, no
    permission, read-only file system, a file where a folder must be, ...)."""
    what = Path(path)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return KecaeError(
            f"no space left on the device while writing {what}: free some disk "
            "space or choose another output folder"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return KecaeError(
            f"cannot write {what} ({exc.strerror}): choose an output folder you "
            "can write to, or fix its permissions"
        )
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in (what, *what.parents) if p.exists() and not p.is_dir()), what)
        return KecaeError(
            f"cannot write {what}: {blocker} is a file, where a folder is needed; "
            "choose another output folder"
        )
    if exc.errno == errno.EISDIR:
        return KecaeError(f"cannot write {what}: it is a folder; choose another file name")
    return KecaeError(f"cannot write {what} ({exc.strerror or exc}): choose another output folder")


def writable_folder(folder: str | os.PathLike, option: str = "--out") -> Path:
    """Create ``folder`` (or take the existing one) and prove that files can be written in it,
    by writing and removing one: the one check every command makes of where it writes, before it
    reads or computes anything. Permission bits alone would pass a read-only mount, an immutable
    folder or any folder for root. Every failure is a :class:`KecaeError` naming ``option``, the
    folder and the fix."""
    p = Path(folder).expanduser()
    if p.exists() and not p.is_dir():
        raise KecaeError(
            f"{option} {p} is a file, not a folder: choose a folder (new, empty, or "
            "an earlier run of the same command)"
        )
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".kecae-write-test.{os.getpid()}.", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise output_error(p, exc) from exc
    return p


def writable_file(path: str | os.PathLike, option: str) -> Path:
    """A file ``path`` can be written (its folder made and probed by :func:`writable_folder`),
    and is not a folder."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise KecaeError(f"{option} {p} is a folder: give a file name (e.g. {p / 'report.json'})")
    writable_folder(p.parent, option)
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    An interrupted or failed write leaves ``path`` untouched (old content or absent) and removes
    the temporary file, so readers never see a half-written file. The temporary name carries the
    writer's process id, so a file left behind by a killed process is recognised and removed by
    :func:`remove_stale_tmp`. A full disk, a folder without write permission or a file where a
    folder must be becomes a :class:`KecaeError` naming the file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.",
            suffix=suffix or path.suffix + ".tmp",
            dir=path.parent,
        )
    except OSError as exc:
        raise output_error(path, exc) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, _FILE_MODE)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise output_error(path, exc) from exc
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists (this process, or one of another user, included)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but another user's
        return True
    return True


def remove_stale_tmp(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Delete the temporary files that killed kecae processes left under ``folder`` (names of
    :func:`atomic_path` whose writer process is gone); a live writer's files are kept. Returns
    the removed paths."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    walker = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    for dirpath, _dirs, files in walker:
        for name in files:
            m = _TMP_NAME.match(name)
            if m and not pid_alive(int(m.group("pid"))):
                p = Path(dirpath) / name
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p)
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + fsync + rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
