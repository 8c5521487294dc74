"""Durable, failure-aware file and SQLite primitives shared by the store and
the staging journal.

What the store promises (an acknowledged add survives a killed process, a
full disk and a power cut) rests on a few rules kept here in one place:

- :func:`write_all` writes every byte or raises an :class:`OSError` with the
  errno preserved (a short write followed by ``ENOSPC`` raises ``ENOSPC``);
  the caller puts the file back to its previous length (:func:`truncate_to`)
  so later appends never run onto a torn tail.
- :func:`fsync_fd` and :func:`fsync_dir` sync where durability is promised
  (:func:`start_writeback` only gives a later sync a head start):
  a pack before the index commit that points into it, a journal line before
  its call returns, a renamed file and its directory.
  ``HANGAR_FSYNC=0`` in the environment turns the syncs off (what a
  killed process can do stays safe, a power cut may lose the last adds).
- :func:`sqlite_failure` turns a full disk or an I/O error inside SQLite
  into an :class:`OSError` of the same meaning (``ENOSPC``, ``EIO``,
  ``EROFS``), and :func:`rollback` never replaces the first error by
  SQLite's ``cannot rollback - no transaction is active``.
- Files are created with :data:`FILE_MODE` (0o666), so the umask decides
  their permissions, as git does.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: mode files are created with: the umask decides (``0o666 & ~umask``)
FILE_MODE = 0o666
#: False when ``HANGAR_FSYNC=0``: writes are not synced to the disk
FSYNC = os.environ.get("HANGAR_FSYNC", "1").strip().lower() not in ("0", "false", "no", "off")


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd`` (opened for appending).

    Raises
    ------
    OSError
        What the system reported (errno preserved); a write that makes no
        progress raises ``ENOSPC``. Part of ``data`` may have reached the
        file: the caller truncates it back (:func:`truncate_to`).
    """
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


def truncate_to(fd: int, size: int) -> int:
    """Cut the file of ``fd`` back to ``size`` bytes after a failed write;
    returns its length afterwards (``size``, or more if the cut failed)."""
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass
    try:
        return os.fstat(fd).st_size
    except OSError:
        return size


def fsync_fd(fd: int) -> None:
    """Sync ``fd``'s data to the disk (unless :data:`FSYNC` is off)."""
    if FSYNC:
        os.fsync(fd)


#: ``sync_file_range`` of the C library (Linux), once looked up; None where missing
_sync_file_range: Any = False
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Have the system start writing ``nbytes`` of ``fd`` from ``offset`` to
    the disk, without waiting (Linux ``sync_file_range``; elsewhere nothing).

    Only a head start for the :func:`fsync_fd` that follows: the disk writes
    while the caller goes on working, and the sync then waits less. It
    promises nothing by itself (unless :data:`FSYNC` is off, it does nothing).
    """
    global _sync_file_range
    if not FSYNC or nbytes <= 0:
        return
    if _sync_file_range is False:
        _sync_file_range = None
        if sys.platform.startswith("linux"):
            import ctypes

            try:
                fn = ctypes.CDLL(None, use_errno=True).sync_file_range
            except (OSError, AttributeError):
                pass
            else:
                fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
                fn.restype = ctypes.c_int
                _sync_file_range = fn
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)  # a failure: the sync tells


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Sync directory ``path`` (a rename or a new file in it; unless
    :data:`FSYNC` is off)."""
    if not FSYNC:
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_file(path: str | os.PathLike[str]) -> None:
    """Create ``path`` empty with :data:`FILE_MODE` if it does not exist (so a
    file another library creates, e.g. SQLite's, respects the umask)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


# ---- SQLite ------------------------------------------------------------------------
def _code(name: str, default: int) -> int:
    return int(getattr(sqlite3, name, default))


_FULL = _code("SQLITE_FULL", 13)
_IOERR = _code("SQLITE_IOERR", 10)
_READONLY = _code("SQLITE_READONLY", 8)
_CANTOPEN = _code("SQLITE_CANTOPEN", 14)
_PERM = _code("SQLITE_PERM", 3)


def sqlite_failure(exc: sqlite3.Error, path: Path) -> OSError | None:
    """The :class:`OSError` standing for ``exc`` (a full disk, an I/O error,
    a read-only file), or None for other errors (busy, locked, damage...)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        text = str(exc).lower()
        if "full" in text:
            code = _FULL
        elif "disk i/o" in text:
            code = _IOERR
        elif "readonly" in text or "read-only" in text:
            code = _READONLY
        else:
            return None
    primary = code & 0xFF
    if primary == _FULL:
        err = errno.ENOSPC
    elif primary == _IOERR:
        err = errno.EIO
    elif primary in (_READONLY, _PERM):
        err = errno.EROFS if primary == _READONLY else errno.EACCES
    elif primary == _CANTOPEN:
        err = errno.EACCES
    else:
        return None
    out = OSError(err, f"{os.strerror(err)}: payload index {path}: {exc}")
    out.filename = str(path)
    return out


def rollback(con: sqlite3.Connection) -> None:
    """Roll back the open transaction of ``con``, if SQLite has not already
    (it does on a full disk); never raises."""
    try:
        if con.in_transaction:
            con.execute("ROLLBACK")
    except sqlite3.Error:
        pass


@contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; on any failure, :func:`rollback`."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise


def connect_readonly(path: Path) -> sqlite3.Connection:
    """Open the index ``path`` for reading only, for a reader without write
    access to the file or its directory.

    ``mode=ro`` first (sees everything committed, the WAL included, but
    needs the ``-shm`` file to exist or be creatable); failing that
    ``immutable=1``, which reads the main file as it is: complete as long
    as a writer checkpointed it when it last closed (see ``PackWriter.close``).

    Raises
    ------
    OSError
        If neither way can read the file.
    """
    uri = path.resolve().as_uri()
    last: sqlite3.Error | None = None
    for extra in ("?mode=ro", "?mode=ro&immutable=1"):
        try:
            con = sqlite3.connect(
                uri + extra,
                uri=True,
                timeout=60,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            last = exc
            continue
        try:
            con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            con.close()
            last = exc
            continue
        return con
    err = OSError(errno.EACCES, f"cannot read the payload index {path}: {last}")
    err.filename = str(path)
    raise err
